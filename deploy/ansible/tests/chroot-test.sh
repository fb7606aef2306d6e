#!/usr/bin/env bash
# Converge site.yml on a debootstrap'd Debian root (bookworm or trixie), twice, then start
# the services it configured inside private namespaces and talk to the API through nginx.
#
#   make deploy-test            (bookworm; then multinode-test.sh on trixie)
#   PEREGRINE_DEPLOY_TEST_SUITE=trixie bash deploy/ansible/tests/chroot-test.sh
#
# Phases (each prints its duration):
#   tools      host packages (debootstrap, slirp4netns, zstd) and the Ansible venv
#   lint       ansible-playbook --syntax-check and ansible-lint (runs in the background)
#   rootfs     debootstrap once, cached as a tarball; every run extracts a fresh root
#   namespaces private net/pid/mount/uts/ipc namespaces; slirp4netns gives the net ns
#              outbound access (apt, PyPI) without touching the host's network config
#   bootstrap  tests/bootstrap.yml: policy-rc.d, the controller's CA certificates
#   converge   site.yml, first run
#   idempotence site.yml, second run: fails unless changed=0
#   check-diff site.yml --check --diff on the converged root: fails unless it reports
#              no failure and changed=0 (what an operator previewing a change relies on)
#   services   PostgreSQL, memcached, collectd, the app (from its unit file) and nginx
#   checks     config values, /readyz through nginx, slow-client cut-off, the API chain
#   backup     pgbackrest check, full + diff backup, the restore drill (and that it fails
#              when aimed at a restore point that does not exist), metrics, units
#   maintenance prune unit and timer, journald limits, collectd CSV ageing
#   firewall   the role's nftables rules loaded into the test's network namespace and
#              probed over a veth pair from a second namespace the test creates
#
# The host is never changed beyond installing those packages and the cache directory:
# no sysctl, no hostname, no service, no mount outside the private mount namespace.
# Everything started runs in the test's PID namespace and dies with it (trap on EXIT).
#
# Environment:
#   PEREGRINE_DEPLOY_TEST_CACHE   cache and work directory (default /var/cache/peregrine-deploy-test)
#   PEREGRINE_DEPLOY_TEST_SUITE   Debian release to build the root from: bookworm (12,
#                                 default) or trixie (13)
#   PEREGRINE_DEPLOY_TEST_MIRROR  Debian mirror (default: http://deb.debian.org/debian)
#   PEREGRINE_DEPLOY_TEST_LINT    0 skips ansible-lint (default 1)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ANSIBLE_DIR=$(dirname "$HERE")
CACHE=${PEREGRINE_DEPLOY_TEST_CACHE:-/var/cache/peregrine-deploy-test}
MIRROR=${PEREGRINE_DEPLOY_TEST_MIRROR:-http://deb.debian.org/debian}
RUN_LINT=${PEREGRINE_DEPLOY_TEST_LINT:-1}
SUITE=${PEREGRINE_DEPLOY_TEST_SUITE:-bookworm}
# The PostgreSQL major version each release ships (what roles/postgresql/vars/ must pick).
case $SUITE in
    bookworm) PG_MAJOR=15 ;;
    trixie) PG_MAJOR=17 ;;
    *) echo "PEREGRINE_DEPLOY_TEST_SUITE: unknown suite '$SUITE' (bookworm or trixie)" >&2; exit 2 ;;
esac
INCLUDE=python3,python3-apt,systemd,systemd-sysv,procps,ca-certificates,sudo,iproute2
TARBALL=$CACHE/rootfs-$SUITE.tar.zst
WORK=$CACHE/run-$SUITE
ROOT=$WORK/root
LOGS=$WORK/logs
VENV=$ANSIBLE_DIR/.cache/venv
INVENTORY=$HERE/inventory/hosts.yml

UNSHARE_PID="" NS_PID="" SLIRP_PID="" LINT_PID="" PROBE_PID="" FW_LISTEN_PID=""
# shellcheck source=lib/report.sh
. "$HERE/lib/report.sh"

# --- cleanup: kill the namespace (and so every process in it), then slirp4netns --------
cleanup() {
    local rc=$?
    set +e
    end_phase
    [ -n "$LINT_PID" ] && kill "$LINT_PID" 2>/dev/null
    # SIGKILL to the namespace's init takes every process in the namespace with it, and the
    # mount namespace (with all the root's mounts) goes away with its last process.
    # (unshare --fork ignores SIGTERM itself, so kill its child, not unshare.)
    [ -n "$PROBE_PID" ] && kill -KILL "$PROBE_PID" 2>/dev/null
    [ -n "$FW_LISTEN_PID" ] && kill -KILL "$FW_LISTEN_PID" 2>/dev/null
    [ -n "$NS_PID" ] && kill -KILL "$NS_PID" 2>/dev/null
    [ -n "$UNSHARE_PID" ] && { kill -KILL "$UNSHARE_PID" 2>/dev/null; wait "$UNSHARE_PID" 2>/dev/null; }
    [ -n "$SLIRP_PID" ] && { kill "$SLIRP_PID" 2>/dev/null; wait "$SLIRP_PID" 2>/dev/null; }
    if findmnt -rn -o TARGET 2>/dev/null | grep -qF "$ROOT"; then
        printf 'WARNING: mounts left under %s\n' "$ROOT" >&2
    fi
    report_summary
    printf '\nLogs: %s\n' "$LOGS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || die "run as root: the chroot connection and namespaces need it"

# --- tools ----------------------------------------------------------------------------
phase tools "host packages and the Ansible virtualenv"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
command -v zstd >/dev/null || missing+=(zstd)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
command -v git >/dev/null || missing+=(git)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    echo "    apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$CACHE" "$WORK"
rm -rf "$LOGS" && mkdir -p "$LOGS"
want=$(sha256sum "$ANSIBLE_DIR/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    echo "    pip install -r requirements.txt into $VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$ANSIBLE_DIR/requirements.txt" >"$LOGS/pip-controller.log" 2>&1 \
        || die "pip install failed, see $LOGS/pip-controller.log"
    echo "$want" >"$VENV/.requirements.sha256"
fi
export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$ANSIBLE_DIR/ansible.cfg" ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1 ANSIBLE_NOCOWS=1
cd "$ANSIBLE_DIR"

# --- syntax check now, lint in the background ----------------------------------------
phase lint "syntax-check (ansible-lint continues in the background)"
for inv in inventories/single-node/hosts.yml inventories/multi-node/hosts.yml "$INVENTORY"; do
    PEREGRINE_TEST_ROOT=/nonexistent PEREGRINE_TEST_CHROOT_EXE=chroot \
        ansible-playbook --syntax-check -i "$inv" site.yml rolling_update.yml >>"$LOGS/syntax-check.log" 2>&1 \
        || die "syntax check failed for $inv, see $LOGS/syntax-check.log"
done
pass "ansible-playbook --syntax-check (3 inventories, site.yml + rolling_update.yml)"
if [ "$RUN_LINT" = 1 ]; then
    ansible-lint >"$LOGS/ansible-lint.log" 2>&1 &
    LINT_PID=$!
fi

# --- rootfs ---------------------------------------------------------------------------
phase rootfs "fresh Debian $SUITE root from the cached tarball"
if [ ! -s "$TARBALL" ]; then
    echo "    no cached root: debootstrap $SUITE from $MIRROR (about a minute)"
    rm -rf --one-file-system "$CACHE/base.tmp"
    # Own mount namespace: debootstrap's /proc and /sys mounts vanish with it, whatever happens.
    unshare --mount --propagation private \
        debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$CACHE/base.tmp" "$MIRROR" \
        >"$LOGS/debootstrap.log" 2>&1 || die "debootstrap failed, see $LOGS/debootstrap.log"
    tar -C "$CACHE/base.tmp" --numeric-owner -c . | zstd -q -T0 -o "$TARBALL.tmp"
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf --one-file-system "$CACHE/base.tmp"
fi
rm -rf --one-file-system "$ROOT"
mkdir -p "$ROOT"
tar -C "$ROOT" --numeric-owner --zstd -xf "$TARBALL"
echo "nameserver 10.0.2.3" >"$ROOT/etc/resolv.conf"     # slirp4netns' DNS forwarder
mkdir -p "$CACHE/apt-archives/partial" "$CACHE/pip" "$ROOT/root/.cache/pip"

# --- namespaces -----------------------------------------------------------------------
phase namespaces "private net/pid/mount/uts/ipc namespaces for the root"
cat >"$WORK/ns-init.sh" <<EOF
#!/bin/bash
# PID 1 of the test's namespaces: mounts for the root (private to this mount namespace),
# then reaps orphans until killed.
set -e
mount -t proc proc "$ROOT/proc"
mount -t sysfs -o ro sysfs "$ROOT/sys"
mount -t tmpfs -o mode=1777,size=2g tmpfs "$ROOT/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOT/dev/pts" || true
# Download caches shared between runs (warm runs skip most of apt's and pip's downloads).
mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"
mount --bind "$CACHE/pip" "$ROOT/root/.cache/pip"
hostname peregrine-test
ip link set lo up
touch "$WORK/ns-ready"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait \$! || true; done
EOF
chmod 0755 "$WORK/ns-init.sh"
rm -f "$WORK/ns-ready"
unshare --net --pid --mount --uts --ipc --fork --kill-child --propagation private \
    "$WORK/ns-init.sh" >"$LOGS/ns-init.log" 2>&1 &
UNSHARE_PID=$!
for _ in $(seq 100); do [ -e "$WORK/ns-ready" ] && break; sleep 0.1; done
[ -e "$WORK/ns-ready" ] || die "namespaces did not come up, see $LOGS/ns-init.log"
NS_PID=$(pgrep -P "$UNSHARE_PID" | head -n1)
[ -n "$NS_PID" ] || die "cannot find the namespace's init process"
slirp4netns --configure --mtu=65520 --disable-host-loopback "$NS_PID" tap0 >"$LOGS/slirp4netns.log" 2>&1 &
SLIRP_PID=$!
for _ in $(seq 50); do
    nsenter --target "$NS_PID" --net ip -o -4 addr show tap0 2>/dev/null | grep -q 10.0.2.100 && break
    sleep 0.1
done
nsenter --target "$NS_PID" --net ip -o -4 addr show tap0 | grep -q 10.0.2.100 || die "slirp4netns did not configure tap0"

in_ns() { nsenter --target "$NS_PID" --net --pid --mount --uts --ipc -- chroot "$ROOT" "$@"; }
on_net() { nsenter --target "$NS_PID" --net -- "$@"; }   # host tools, test network
cat >"$WORK/chroot-exe" <<EOF
#!/bin/sh
# ansible_chroot_exe: enter the test's namespaces, then chroot.
exec nsenter --target $NS_PID --net --pid --mount --uts --ipc -- chroot "\$@"
EOF
chmod 0755 "$WORK/chroot-exe"
export PEREGRINE_TEST_ROOT=$ROOT PEREGRINE_TEST_CHROOT_EXE=$WORK/chroot-exe
echo "    namespace init pid $NS_PID, hostname $(in_ns hostname), host hostname $(hostname)"

# Stand-in for systemd starting PostgreSQL after its package is installed (the roles do not
# start services in this test). It exits once the cluster runs.
in_ns /bin/sh -c '
    while :; do
        if dpkg-query -W -f="\${Status}" postgresql-$0 2>/dev/null | grep -q "install ok installed" &&
           [ -f /var/lib/postgresql/$0/main/PG_VERSION ] &&
           [ -f /etc/postgresql/$0/main/postgresql.conf ]; then
            pg_ctlcluster $0 main start && exit 0
        fi
        sleep 1
    done' "$PG_MAJOR" >"$LOGS/postgresql-standin.log" 2>&1 &

# The chroot connection passes the controller's environment through: keep the CA bundle
# (same path inside the root once bootstrap.yml copied the CAs), drop host-only pip paths.
# Every run deploys the commit checked out when the test started: a commit landing in the
# checkout half-way would otherwise be a new release on the second run (changed != 0).
APP_COMMIT=$(git -C "$ANSIBLE_DIR" rev-parse --verify 'HEAD^{commit}')
playbook() {
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks PROFILE_TASKS_TASK_OUTPUT_LIMIT=6 \
        ansible-playbook -i "$INVENTORY" -e "app_source_version=$APP_COMMIT" "$@"
}
recap() {  # recap <log> <field>  -> the number from PLAY RECAP
    sed -n "s/^peregrine-test *:.* $2=\([0-9]*\).*/\1/p" "$1" | tail -n1
}

# --- bootstrap ------------------------------------------------------------------------
phase bootstrap "tests/bootstrap.yml (policy-rc.d, CA certificates)"
playbook "$HERE/bootstrap.yml" >"$LOGS/bootstrap.log" 2>&1 || { tail -n 30 "$LOGS/bootstrap.log"; die "bootstrap failed"; }
echo "    $(grep -E '^peregrine-test' "$LOGS/bootstrap.log" | tr -s ' ')"

# --- converge -------------------------------------------------------------------------
phase converge "site.yml, first run (log: $LOGS/converge.log)"
if ! playbook site.yml >"$LOGS/converge.log" 2>&1; then
    tail -n 40 "$LOGS/converge.log"
    die "first converge failed"
fi
echo "    $(grep -E '^peregrine-test' "$LOGS/converge.log" | tr -s ' ')"
slowest() {  # the slowest tasks, from profile_tasks' summary at the end of the log
    sed -n '/^TASKS RECAP/,$p' "$1" | grep -E ' -+ [0-9.]+s *$' | head -n 5 | sed 's/^/      /' || true
}
echo "    slowest tasks:"; slowest "$LOGS/converge.log"

# --- idempotence ----------------------------------------------------------------------
phase idempotence "site.yml, second run must report changed=0"
if ! playbook site.yml >"$LOGS/idempotence.log" 2>&1; then
    tail -n 40 "$LOGS/idempotence.log"
    die "second converge failed"
fi
echo "    $(grep -E '^peregrine-test' "$LOGS/idempotence.log" | tr -s ' ')"
echo "    slowest tasks:"; slowest "$LOGS/idempotence.log"
changed=$(recap "$LOGS/idempotence.log" changed)
if [ "$changed" = 0 ]; then
    pass "second run of site.yml: changed=0"
else
    grep -E '^changed: ' "$LOGS/idempotence.log" | sed 's/^/      /' || true
    grep -B1 -E '^changed: ' "$LOGS/idempotence.log" | grep TASK | sed 's/^/      /' || true
    fail "second run of site.yml: changed=$changed (expected 0)"
fi

# --- check-diff -----------------------------------------------------------------------
# What an operator runs before a change: on a converged host it must neither fail nor
# predict a change that a real run would not make.
phase check-diff "site.yml --check --diff on the converged root must report changed=0"
if playbook site.yml --check --diff >"$LOGS/check-diff.log" 2>&1; then
    echo "    $(grep -E '^peregrine-test' "$LOGS/check-diff.log" | tr -s ' ')"
    changed=$(recap "$LOGS/check-diff.log" changed)
    if [ "$changed" = 0 ]; then
        pass "site.yml --check --diff on the converged root: no failure, changed=0"
    else
        grep -B1 -E '^changed: ' "$LOGS/check-diff.log" | grep TASK | sed 's/^/      /' || true
        fail "site.yml --check --diff on the converged root: changed=$changed (expected 0)"
    fi
else
    grep -B2 -A6 -E '^(fatal|failed): ' "$LOGS/check-diff.log" | head -n 40 | sed 's/^/      /' || true
    fail "site.yml --check --diff on the converged root runs without failure (see $LOGS/check-diff.log)"
fi

# --- services -------------------------------------------------------------------------
phase services "start what the roles configured, as systemd would, inside the namespaces"
# PostgreSQL: restart so the role's conf.d drop-in and pg_hba.conf take effect.
in_ns pg_ctlcluster "$PG_MAJOR" main restart >"$LOGS/postgresql.log" 2>&1 || { cat "$LOGS/postgresql.log"; fail "PostgreSQL restarts with the role's configuration"; }
# memcached with /etc/memcached.conf, through Debian's own wrapper (what the unit runs).
in_ns /usr/share/memcached/scripts/systemd-memcached-wrapper /etc/memcached.conf >"$LOGS/memcached.log" 2>&1 &
# collectd (statsd receiver).
in_ns /usr/sbin/collectd -C /etc/collectd/collectd.conf >"$LOGS/collectd.log" 2>&1 || fail "collectd starts"
# The app, from its unit file: User, WorkingDirectory, EnvironmentFile, UMask, ExecStart.
unit=$ROOT/etc/systemd/system/peregrine.service
unit_get() { sed -n "s/^$1=//p" "$unit" | head -n1; }
app_user=$(unit_get User) app_wd=$(unit_get WorkingDirectory) app_env=$(unit_get EnvironmentFile)
app_exec=$(unit_get ExecStart) app_umask=$(unit_get UMask)
in_ns install -d -o "$app_user" -g "$(unit_get Group)" -m "$(unit_get RuntimeDirectoryMode)" /run/peregrine
in_ns /bin/sh -c "umask $app_umask; set -a; . '$app_env'; set +a; cd '$app_wd' && exec runuser -u '$app_user' -- $app_exec" \
    >"$LOGS/app.log" 2>&1 &
APP_SHELL_PID=$!
in_ns nginx -t >"$LOGS/nginx.log" 2>&1 && in_ns nginx >>"$LOGS/nginx.log" 2>&1 || fail "nginx starts"
ready=""
for _ in $(seq 60); do
    code=$(on_net curl -sk -o /dev/null -w '%{http_code}' --max-time 2 https://127.0.0.1/readyz || true)
    [ "$code" = 200 ] && { ready=1; break; }
    kill -0 "$APP_SHELL_PID" 2>/dev/null || break
    sleep 1
done
[ -n "$ready" ] || { tail -n 30 "$LOGS/app.log"; fail "the app became ready (GET /readyz through nginx = 200), last code ${code:-none}"; }
echo "    ready after $(elapsed "$PHASE_START")s"

# --- checks ---------------------------------------------------------------------------
phase checks "configuration and behaviour"
# Start the slow-client probe first: it takes client_header_timeout (10 s) to resolve.
on_net timeout 30 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/80
    printf "GET /healthz HTTP/1.1\r\nHost: x\r\n" >&3     # never finishes the headers
    start=$(date +%s); cat <&3 >/dev/null; echo $(( $(date +%s) - start ))' >"$WORK/slowloris.out" 2>/dev/null &
SLOW_PID=$!

psql_show() { in_ns runuser -u postgres -- psql -XAtc "show $1"; }
expect_eq() { [ "$2" = "$3" ] || { echo "      $1: got '$2', expected '$3'"; return 1; }; }
check "PostgreSQL tuned for 16 GB / 4 vCPU all-in-one (shared_buffers 3GB, effective_cache_size 9GB, work_mem 30247kB)" \
    eval 'expect_eq shared_buffers "$(psql_show shared_buffers)" 3GB &&
          expect_eq effective_cache_size "$(psql_show effective_cache_size)" 9GB &&
          expect_eq work_mem "$(psql_show work_mem)" 30247kB &&
          expect_eq maintenance_work_mem "$(psql_show maintenance_work_mem)" 768MB &&
          expect_eq max_parallel_workers_per_gather "$(psql_show max_parallel_workers_per_gather)" 2'
check "PostgreSQL $PG_MAJOR, the version Debian $SUITE ships, is the one installed and running" \
    eval '[ "$(psql_show server_version_num | cut -c1-2)" = "$PG_MAJOR" ] && [ -d "$ROOT/etc/postgresql/$PG_MAJOR/main" ] &&
          [ "$(ls "$ROOT/etc/postgresql")" = "$PG_MAJOR" ]'
check "PostgreSQL listens on loopback only here (listen_addresses)" \
    eval 'expect_eq listen_addresses "$(psql_show listen_addresses)" "localhost,127.0.0.1"'
check "the app's role and database exist (peregrine owns peregrine)" \
    eval '[ "$(in_ns runuser -u postgres -- psql -XAtc "select pg_get_userbyid(datdba) from pg_database where datname = '"'"'peregrine'"'"'")" = peregrine ]'
mc_stats=$(on_net bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211; printf "stats settings\r\nquit\r\n" >&3; timeout 2 cat <&3' 2>/dev/null | tr -d '\r' || true)
check "memcached runs with -m 1638 -c 4096 -t 4 on 127.0.0.1, UDP off" \
    eval 'grep -qx "STAT maxbytes $((1638 * 1024 * 1024))" <<<"$mc_stats" &&
          grep -qx "STAT maxconns 4096" <<<"$mc_stats" && grep -qx "STAT num_threads 4" <<<"$mc_stats" &&
          grep -qx "STAT udpport 0" <<<"$mc_stats" && grep -qx "STAT inter 127.0.0.1" <<<"$mc_stats"'
check "collectd's statsd plugin listens on 127.0.0.1:8125/udp" \
    eval 'on_net ss -Hlun "sport = :8125" | grep -q 127.0.0.1:8125'
check "systemd-analyze verify accepts peregrine.service, peregrine-deliver.service and locust-worker.service" \
    in_ns systemd-analyze verify /etc/systemd/system/peregrine.service /etc/systemd/system/peregrine-deliver.service \
        /etc/systemd/system/locust-worker.service
check "peregrine.service stops gracefully (TimeoutStopSec > graceful_timeout) with LimitNOFILE" \
    eval 'grep -qx "TimeoutStopSec=35" "$unit" && grep -qx "KillMode=mixed" "$unit" && grep -qx "LimitNOFILE=65536" "$unit" &&
          grep -q "graceful-timeout 25" "$ROOT/etc/peregrine/peregrine.env"'
check "the env file is mode 0600 root:root" \
    eval '[ "$(stat -c %a:%U:%G "$ROOT/etc/peregrine/peregrine.env")" = 600:root:root ]'
check "gunicorn listens on its unix socket only (no TCP listener but nginx, postgres, memcached, collectd)" \
    eval '[ -S "$ROOT/run/peregrine/gunicorn.sock" ] && ! on_net ss -Hltnp | grep -v -e nginx -e postgres -e memcached -e collectd | grep -q .'
check "the release's hot path is compiled" \
    eval 'in_ns /bin/sh -c "cd /opt/peregrine/current && venv/bin/python -B -c \"import hotpath.status as s; print(s.describe())\"" | tee "$WORK/hotpath.out" | grep -qv pure-python'
sed 's/^/      /' "$WORK/hotpath.out" 2>/dev/null || true

req() {  # req METHOD PATH [JSON] [curl args...]
    local method=$1 path=$2 data=${3:-}
    shift 2; [ $# -gt 0 ] && shift
    on_net curl -sk --max-time 10 -X "$method" -H 'Content-Type: application/json' \
        ${data:+--data-binary "$data"} -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "$@" \
        "https://127.0.0.1$path" || echo 000
}
json() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$WORK/body" "$1" 2>/dev/null; }

check "HTTP on :80 redirects to HTTPS (308)" \
    eval '[ "$(on_net curl -s -o /dev/null -w "%{http_code}" --max-time 5 http://127.0.0.1/v1/products)" = 308 ]'
check "GET /healthz through nginx (TLS) = 200" eval '[ "$(req GET /healthz)" = 200 ]'
check "GET /readyz through nginx = 200 with \"cache\": \"ok\"" \
    eval '[ "$(req GET /readyz)" = 200 ] && [ "$(json "d.get(\"cache\")")" = ok ]'
check "nginx passes X-Request-ID through (client value echoed)" \
    eval 'req GET /healthz "" -H "X-Request-ID: deploy-test-1" >/dev/null && grep -qi "^x-request-id: deploy-test-1" "$WORK/headers"'
big=$(head -c 70000 /dev/zero | tr '\0' 'a')
check "a 70 kB body is refused by nginx with a JSON 413 (client_max_body_size 64k)" \
    eval '[ "$(req POST /v1/auth/register "{\"pad\":\"$big\"}")" = 413 ] && [ "$(json "d[\"error\"][\"code\"]")" = payload_too_large ]'

# The API chain: seed a catalog, register, log in, read a product.
if in_ns /bin/sh -c "set -a; . '$app_env'; set +a; cd '$app_wd' && runuser -u '$app_user' -- venv/bin/python -m app seed --products 25 --users 1 --seed 7" >"$LOGS/seed.log" 2>&1; then
    pass "python -m app seed --products 25 (as the service user, with the deployed env file)"
else
    sed 's/^/      /' "$LOGS/seed.log" | tail -n 5
    fail "python -m app seed --products 25"
fi
email="deploy-test-$RANDOM$RANDOM@example.com"
code=$(req POST /v1/auth/register "{\"email\":\"$email\",\"password\":\"deploy-test-password-1\",\"name\":\"Deploy Test\"}")
check "POST /v1/auth/register = 201 (got $code)" eval '[ "$code" = 201 ]'
code=$(req POST /v1/auth/login "{\"email\":\"$email\",\"password\":\"deploy-test-password-1\"}")
token=$(json 'd["access_token"]' || true)
check "POST /v1/auth/login = 200 with an access_token (got $code)" eval '[ "$code" = 200 ] && [ -n "$token" ]'
code=$(req GET '/v1/products?limit=5' "" ${token:+-H "Authorization: Bearer $token"})
product=$(json 'd["items"][0]["id"]' || true)
check "GET /v1/products = 200 with items (got $code)" eval '[ "$code" = 200 ] && [ -n "$product" ]'
code=$(req GET "/v1/products/${product:-missing}" "" ${token:+-H "Authorization: Bearer $token"})
check "GET /v1/products/{id} = 200 with an ETag (got $code)" \
    eval '[ "$code" = 200 ] && grep -qi "^etag:" "$WORK/headers"'

wait "$SLOW_PID" 2>/dev/null || true
slow=$(cat "$WORK/slowloris.out" 2>/dev/null || true)
check "a client that never finishes its headers is cut off by nginx in ~10 s (took ${slow:-?} s)" \
    eval '[ -n "$slow" ] && [ "$slow" -ge 9 ] && [ "$slow" -le 15 ]'

# rolling_update.yml against the running stack: drain (upstream file marked down, nginx -t),
# app role (same release: nothing to do), /readyz through the socket, put back.
if playbook rolling_update.yml -e rolling_update_drain_seconds=1 >"$LOGS/rolling-update.log" 2>&1; then
    pass "rolling_update.yml runs (drain + nginx -t, app role, /readyz, undrain): $(grep -E '^peregrine-test' "$LOGS/rolling-update.log" | tr -s ' ' | cut -d' ' -f3-4)"
else
    tail -n 25 "$LOGS/rolling-update.log" | sed 's/^/      /'
    fail "rolling_update.yml runs"
fi
check "after the rolling update the upstream server is back (not down)" \
    eval '! grep -q " down;" "$ROOT/etc/nginx/peregrine-upstream.d/peregrine-test.conf" && [ "$(req GET /readyz)" = 200 ]'

# Graceful stop: SIGTERM to the gunicorn master (what systemd sends) ends it well within
# TimeoutStopSec.
master=$(in_ns pgrep -o -f gunicorn || true)
if [ -n "$master" ]; then
    t0=$(date +%s.%N)
    in_ns kill -TERM "$master"
    for _ in $(seq 350); do in_ns kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
    took=$(elapsed "$t0")
    check "SIGTERM stops gunicorn in ${took}s (< TimeoutStopSec 35 s)" \
        eval '! in_ns kill -0 "$master" 2>/dev/null'
else
    fail "find the gunicorn master to stop it"
fi

# --- backup ---------------------------------------------------------------------------
phase backup "pgBackRest: archiving, full + diff backup, restore drill at a named restore point"
as_pg() { in_ns runuser -u postgres -- "$@"; }
timers_enabled() {
    local t
    for t in "$@"; do [ -L "$ROOT/etc/systemd/system/timers.target.wants/$t.timer" ] || return 1; done
}
backup_unit=$ROOT/etc/systemd/system/peregrine-backup@.service
check "PostgreSQL archives WAL through pgBackRest (archive_mode on, archive_timeout 60 s)" \
    eval 'expect_eq archive_mode "$(psql_show archive_mode)" on && expect_eq archive_timeout "$(psql_show archive_timeout)" 1min &&
          psql_show archive_command | grep -q "pgbackrest --stanza=peregrine archive-push"'
check "the repository is encrypted (repo1-cipher-type aes-256-cbc, config 0640 root:postgres)" \
    eval 'grep -qx "repo1-cipher-type=aes-256-cbc" "$ROOT/etc/pgbackrest.conf" &&
          [ "$(in_ns stat -c %a:%U:%G /etc/pgbackrest.conf)" = 640:root:postgres ]'
check "pgbackrest check (WAL reaches the repository)" \
    eval 'as_pg pgbackrest --stanza=peregrine check >"$LOGS/pgbackrest-check.log" 2>&1'
# What the timers' unit runs (ExecStart=... %i), then its ExecStopPost as root.
backup_exec=$(sed -n 's/^ExecStart=//p' "$backup_unit")
for kind in full diff; do
    t0=$(date +%s.%N)
    if as_pg ${backup_exec//%i/$kind} >"$LOGS/backup-$kind.log" 2>&1 &&
       in_ns /usr/local/sbin/peregrine-backup-publish "peregrine_backup_$kind"; then
        pass "$kind backup through peregrine-backup@$kind.service's command ($(elapsed "$t0") s)"
    else
        tail -n 10 "$LOGS/backup-$kind.log" | sed 's/^/      /'
        fail "$kind backup"
    fi
done
check "the backups' last-success metrics are published for the textfile collector" \
    eval 'grep -q "^peregrine_backup_last_success_timestamp_seconds{type=\"full\"} [0-9]" "$ROOT/var/lib/prometheus/node-exporter/peregrine_backup_full.prom" &&
          grep -q "{type=\"diff\"}" "$ROOT/var/lib/prometheus/node-exporter/peregrine_backup_diff.prom"'
check "pgbackrest info lists the full and the diff backup" \
    eval 'as_pg pgbackrest --stanza=peregrine info >"$LOGS/pgbackrest-info.log" 2>&1 &&
          grep -q "full backup" "$LOGS/pgbackrest-info.log" && grep -q "diff backup" "$LOGS/pgbackrest-info.log"'
drill_metrics=$ROOT/var/lib/prometheus/node-exporter/peregrine_backup_drill.prom
# A drill aimed at a restore point that does not exist must fail and record no success.
if as_pg env PEREGRINE_DRILL_RESTORE_TARGET=no-such-restore-point /usr/local/sbin/peregrine-restore-drill \
        >"$LOGS/restore-drill-wrong-target.log" 2>&1; then
    fail "the restore drill fails when restoring to a restore point that does not exist"
else
    in_ns /usr/local/sbin/peregrine-backup-publish peregrine_backup_drill
    check "the restore drill fails when restoring to a restore point that does not exist (and records no success)" \
        eval '[ ! -e "$drill_metrics" ] && grep -q "FAIL: the restored copy did not reach the restore point" "$LOGS/restore-drill-wrong-target.log"'
fi
t0=$(date +%s.%N)
if as_pg /usr/local/sbin/peregrine-restore-drill >"$LOGS/restore-drill.log" 2>&1 &&
   in_ns /usr/local/sbin/peregrine-backup-publish peregrine_backup_drill; then
    pass "restore drill: $(tail -n1 "$LOGS/restore-drill.log" | sed 's/^drill-[^:]*: //') (whole drill $(elapsed "$t0") s)"
else
    tail -n 20 "$LOGS/restore-drill.log" | sed 's/^/      /'
    fail "restore drill (restore at a named restore point, start on a spare port, rows before/after, verify)"
fi
check "the restored copy held the app's database and the drill records its last success and RTO" \
    eval 'grep -q "databases restored: .*peregrine" "$LOGS/restore-drill.log" &&
          grep -q "^peregrine_backup_drill_last_success_timestamp_seconds [0-9]" "$drill_metrics" &&
          grep -q "^peregrine_backup_drill_rto_seconds [0-9]" "$drill_metrics"'
check "the archiver watch reports no failed archive_command (peregrine_pg_archiver_failed_total 0)" \
    eval 'as_pg /usr/local/sbin/peregrine-archiver-metrics && in_ns /usr/local/sbin/peregrine-backup-publish peregrine_pg_archiver &&
          grep -qx "peregrine_pg_archiver_failed_total 0" "$ROOT/var/lib/prometheus/node-exporter/peregrine_pg_archiver.prom"'
check "systemd-analyze verify accepts the backup, drill and archiver units; their timers are enabled" \
    eval 'in_ns systemd-analyze verify /etc/systemd/system/peregrine-backup@full.service \
            /etc/systemd/system/peregrine-backup-full.timer /etc/systemd/system/peregrine-backup-diff.timer \
            /etc/systemd/system/peregrine-restore-drill.service /etc/systemd/system/peregrine-restore-drill.timer \
            /etc/systemd/system/peregrine-archiver-metrics.service /etc/systemd/system/peregrine-archiver-metrics.timer \
            >"$LOGS/systemd-analyze-backup.log" 2>&1 &&
          timers_enabled peregrine-backup-full peregrine-backup-diff peregrine-restore-drill peregrine-archiver-metrics'

# --- maintenance ----------------------------------------------------------------------
phase maintenance "prune timer, journald limits, collectd CSV ageing"
prune_unit=$ROOT/etc/systemd/system/peregrine-prune.service
prune_get() { sed -n "s/^$1=//p" "$prune_unit" | head -n1; }
check "systemd-analyze verify accepts peregrine-prune.service/.timer; the timer is enabled" \
    eval 'in_ns systemd-analyze verify /etc/systemd/system/peregrine-prune.service /etc/systemd/system/peregrine-prune.timer \
            >"$LOGS/systemd-analyze-prune.log" 2>&1 &&
          [ -L "$ROOT/etc/systemd/system/timers.target.wants/peregrine-prune.timer" ] &&
          grep -qx "OnCalendar=\*-\*-\* 03:17:00" "$ROOT/etc/systemd/system/peregrine-prune.timer"'
if in_ns /bin/sh -c "set -a; . '$(prune_get EnvironmentFile)'; set +a; cd '$(prune_get WorkingDirectory)' && exec runuser -u '$(prune_get User)' -- $(prune_get ExecStart)" \
        >"$LOGS/prune.log" 2>&1; then
    pass "peregrine-prune.service's command runs as $(prune_get User) with the deployed env file: $(tail -n1 "$LOGS/prune.log")"
else
    tail -n 10 "$LOGS/prune.log" | sed 's/^/      /'
    fail "peregrine-prune.service's command"
fi
check "journald is bounded (SystemMaxUse=1G, SystemKeepFree=2G, MaxRetentionSec=1month)" \
    eval 'grep -qx SystemMaxUse=1G "$ROOT/etc/systemd/journald.conf.d/60-peregrine.conf" &&
          grep -qx SystemKeepFree=2G "$ROOT/etc/systemd/journald.conf.d/60-peregrine.conf" &&
          grep -qx MaxRetentionSec=1month "$ROOT/etc/systemd/journald.conf.d/60-peregrine.conf"'
csv=$ROOT/var/lib/collectd/csv/deploy-test
mkdir -p "$csv"
touch -d '20 days ago' "$csv/gauge-old-2026-01-01"
touch "$csv/gauge-new-$(date +%F)"
check "systemd-tmpfiles --clean removes collectd CSV files older than 14 days and keeps today's" \
    eval 'in_ns systemd-tmpfiles --clean /etc/tmpfiles.d/peregrine-collectd-csv.conf >"$LOGS/tmpfiles.log" 2>&1 &&
          [ ! -e "$csv/gauge-old-2026-01-01" ] && [ -e "$csv/gauge-new-$(date +%F)" ]'

# --- extra check files ------------------------------------------------------------------
# Each tests/checks.d/*.sh is sourced here, in name order, with this script's helpers
# (phase, check, pass, fail, in_ns, on_net) and the stack running. One file per concern.
for checks_file in "$HERE"/checks.d/*.sh; do
    [ -e "$checks_file" ] || continue
    # shellcheck source=/dev/null
    . "$checks_file"
done

# --- firewall -------------------------------------------------------------------------
# The rules are loaded into the test's own network namespace only (nsenter --net into it),
# never the host's. A second namespace, joined to it by a veth pair made here, plays the
# other machines: 10.250.0.2 is the admin/monitoring address, 10.250.0.3 a stranger.
phase firewall "nftables rules in the test's network namespace, probed from another one"
unshare --net sleep 3600 &
PROBE_PID=$!
sleep 0.2
on_probe() { nsenter --target "$PROBE_PID" --net -- "$@"; }
on_net ip link add fw-host type veth peer name fw-probe
on_net ip link set fw-probe netns "$PROBE_PID"
on_net ip addr add 10.250.0.1/24 dev fw-host
on_net ip link set fw-host up
on_probe ip addr add 10.250.0.2/24 dev fw-probe
on_probe ip addr add 10.250.0.3/24 dev fw-probe
on_probe ip link set fw-probe up
on_probe ip link set lo up
# Stand-ins for sshd, PostgreSQL, memcached and node-exporter on the host's private
# address (the real daemons listen on loopback here): echo servers, so a port is "open"
# exactly when the firewall lets a connection through.
cat >"$WORK/fw-listen.py" <<'PY'
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.250.0.1", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(64), b"")], daemon=True).start()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait(600)
PY
# nsenter itself (not the on_net function's subshell) so $! is the listener's own pid.
nsenter --target "$NS_PID" --net -- /usr/bin/python3 "$WORK/fw-listen.py" 22 5432 11211 9100 8080 \
    >"$LOGS/fw-listen.log" 2>&1 &
FW_LISTEN_PID=$!
cat >"$WORK/fw-probe.py" <<'PY'
# fw-probe.py SRC PORT... -> "PORT:open|closed" for each, connecting from SRC to 10.250.0.1
import socket, sys
src, ports = sys.argv[1], sys.argv[2:]
out = []
for p in ports:
    s = socket.socket(); s.settimeout(1.5); s.bind((src, 0))
    try:
        s.connect(("10.250.0.1", int(p))); out.append(f"{p}:open")
    except OSError:
        out.append(f"{p}:closed")
    finally:
        s.close()
print(" ".join(out))
PY
probe() { on_probe /usr/bin/python3 "$WORK/fw-probe.py" "$@"; }
sleep 0.5
before=$(probe 10.250.0.3 5432 11211 22)
check "control: without the rules a stranger reaches the stand-ins ($before)" \
    eval '[ "$before" = "5432:open 11211:open 22:open" ]'
# The operator's SSH session (admin address -> 22), open before the first load, must
# survive it and a reload after it.
rm -f "$WORK"/fw-session.*
on_probe /usr/bin/python3 -c '
import os, socket, sys, time
s = socket.socket(); s.settimeout(3); s.bind(("10.250.0.2", 0)); s.connect(("10.250.0.1", 22))
def echo(step):
    s.sendall(step.encode() + b"\n")
    ok = s.recv(64) == step.encode() + b"\n"
    open(os.path.join(sys.argv[1], "fw-session." + step), "w").write("ok" if ok else "lost")
    return ok
echo("before")
deadline = time.monotonic() + 30   # never outlive a test that stopped half-way
for step in ("loaded", "reloaded"):
    while not os.path.exists(os.path.join(sys.argv[1], "fw-go." + step)):
        if time.monotonic() > deadline:
            sys.exit("no go for " + step)
        time.sleep(0.05)
    if not echo(step):
        break
' "$WORK" >"$WORK/fw-session.out" 2>&1 &
EST_PID=$!
for _ in $(seq 30); do [ -e "$WORK/fw-session.before" ] && break; sleep 0.1; done
cp "$ROOT/etc/nftables.conf" "$WORK/nftables.broken"
echo "this is not nft syntax" >>"$WORK/nftables.broken"
cp "$WORK/nftables.broken" "$ROOT/tmp/nftables.broken"
check "nft -c rejects a broken rules file (what the role's validate step relies on)" \
    eval '! in_ns nft -c -f /tmp/nftables.broken >/dev/null 2>&1'
check "nft -c accepts the role's /etc/nftables.conf, then it loads into the test namespace" \
    eval 'in_ns nft -c -f /etc/nftables.conf && in_ns nft -f /etc/nftables.conf && in_ns nft list table inet peregrine >"$LOGS/nft-ruleset.txt"'
touch "$WORK/fw-go.loaded"
for _ in $(seq 50); do [ -e "$WORK/fw-session.loaded" ] && break; sleep 0.1; done
in_ns nft -f /etc/nftables.conf || fail "reload the rules"
touch "$WORK/fw-go.reloaded"
wait "$EST_PID" 2>/dev/null || true
session="$(cat "$WORK/fw-session.loaded" 2>/dev/null || echo none) / $(cat "$WORK/fw-session.reloaded" 2>/dev/null || echo none)"
check "the operator's SSH session open before the rules survives the first load and a reload ($session)" \
    eval '[ "$session" = "ok / ok" ]'
[ "$session" = "ok / ok" ] || sed 's/^/      /' "$WORK/fw-session.out"
admin=$(probe 10.250.0.2 22 443 80 9100 5432 11211 8080)
stranger=$(probe 10.250.0.3 22 443 9100 5432 11211)
check "admin address: SSH, 80/443 and the monitoring port open; PostgreSQL, memcached, 8080 closed ($admin)" \
    eval '[ "$admin" = "22:open 443:open 80:open 9100:open 5432:closed 11211:closed 8080:closed" ]'
check "stranger: only 443 open; SSH, monitoring, PostgreSQL, memcached closed ($stranger)" \
    eval '[ "$stranger" = "22:closed 443:open 9100:closed 5432:closed 11211:closed" ]'
check "loopback is untouched by the rules (nginx on 127.0.0.1:80 still answers 308)" \
    eval '[ "$(on_net curl -s -o /dev/null -w "%{http_code}" --max-time 5 http://127.0.0.1/v1/products)" = 308 ]'
kill "$FW_LISTEN_PID" 2>/dev/null || true
in_ns nft delete table inet peregrine 2>/dev/null || true

if [ -n "$LINT_PID" ]; then
    phase lint-wait "waiting for ansible-lint"
    if wait "$LINT_PID"; then
        LINT_PID=""
        pass "ansible-lint (profile production): $(grep -E 'Passed|Failed' "$LOGS/ansible-lint.log" | tail -n1)"
    else
        LINT_PID=""
        tail -n 20 "$LOGS/ansible-lint.log"
        fail "ansible-lint (profile production), see $LOGS/ansible-lint.log"
    fi
fi
end_phase

[ "$FAILED" = 0 ] || { printf '\nSOME CHECKS FAILED\n'; exit 1; }
printf '\nALL CHECKS PASSED\n'
