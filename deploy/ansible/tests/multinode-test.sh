#!/usr/bin/env bash
# Converge site.yml on the multi-node inventory for real: every host (lb-1, app-1, app-2,
# db-1, db-replica-1, cache-1, backup-1) is its own Debian root (bookworm or trixie) in its
# own namespaces, and the hosts reach each other over a bridge this script creates. Then
# start what the roles configured, send traffic through the load balancer, check that the
# streaming standby serves the catalog's cache misses, run rolling_update.yml under a small
# load, and probe the firewall rules between the hosts.
#
#   make deploy-test-multi      (or: bash deploy/ansible/tests/multinode-test.sh)
#   PEREGRINE_DEPLOY_TEST_SUITE=trixie bash deploy/ansible/tests/multinode-test.sh
#
# Phases (each prints its duration):
#   tools       host packages and the Ansible virtualenv (the same as chroot-test.sh's)
#   rootfs      one fresh root per host from the cached debootstrap tarball
#   network     a switch namespace with bridge br0 (10.0.0.1/24); per host private
#               net/pid/mount/uts/ipc namespaces, a veth pair into the bridge with the
#               inventory's private_ip, and slirp4netns for outbound access (apt, PyPI)
#   bootstrap   multinode/bootstrap.yml: policy-rc.d, CA certificates, an SSH server
#   converge    site.yml, first run, all hosts in parallel (forks)
#   idempotence site.yml, second run: fails unless every host reports changed=0
#   services    PostgreSQL (primary and standby), memcached, collectd, the apps (from
#               their unit file), nginx
#   traffic     requests through lb-1 reach both app hosts; pgBackRest between db-1 and
#               backup-1 over SSH (check, full backup, restore drill)
#   replica     db-replica-1 streams from db-1; both app hosts' /readyz list it; cache
#               misses through lb-1 are read from it (its scans of products grow)
#   rolling     rolling_update.yml while a bounded request loop runs through lb-1: no
#               request may fail
#   firewall    each host's nftables rules loaded into its own network namespace, then
#               probed from the other hosts
#
# Traffic stays between the test's namespaces: 10.0.0.0/24 exists only on the test's
# bridge, and outbound access goes through slirp4netns (user-mode, no host routes, no
# access to the host's loopback). The host is changed only by installing packages and
# writing the cache directory. Everything started dies with its namespace (trap on EXIT).
#
# Environment:
#   PEREGRINE_DEPLOY_TEST_CACHE   cache and work directory (default /var/cache/peregrine-deploy-test)
#   PEREGRINE_DEPLOY_TEST_SUITE   Debian release of every host: bookworm (12, default) or
#                                 trixie (13)
#   PEREGRINE_DEPLOY_TEST_MIRROR  Debian mirror for the first debootstrap
#   PEREGRINE_MULTINODE_REUSE_ROOTS=1  keep the previous run's roots (faster; for working
#                                 on this script, not a test of a fresh host)
#   PEREGRINE_MULTINODE_SITE_ARGS  extra ansible-playbook arguments for both site.yml runs
#                                 (e.g. "--skip-tags monitoring" while a tier is unfinished)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ANSIBLE_DIR=$(dirname "$HERE")
CACHE=${PEREGRINE_DEPLOY_TEST_CACHE:-/var/cache/peregrine-deploy-test}
MIRROR=${PEREGRINE_DEPLOY_TEST_MIRROR:-http://deb.debian.org/debian}
REUSE_ROOTS=${PEREGRINE_MULTINODE_REUSE_ROOTS:-0}
read -r -a SITE_ARGS <<<"${PEREGRINE_MULTINODE_SITE_ARGS:-}"
SUITE=${PEREGRINE_DEPLOY_TEST_SUITE:-bookworm}
# The PostgreSQL major version each release ships (what roles/postgresql*/vars/ must pick).
case $SUITE in
    bookworm) PG_MAJOR=15 ;;
    trixie) PG_MAJOR=17 ;;
    *) echo "PEREGRINE_DEPLOY_TEST_SUITE: unknown suite '$SUITE' (bookworm or trixie)" >&2; exit 2 ;;
esac
INCLUDE=python3,python3-apt,systemd,systemd-sysv,procps,ca-certificates,sudo,iproute2
TARBALL=$CACHE/rootfs-$SUITE.tar.zst
# One work directory per suite: a bookworm and a trixie run never share roots.
WORK=$CACHE/multinode-$SUITE
ROOTS=$WORK/roots
NSDIR=$WORK/ns
LOGS=$WORK/logs
VENV=$ANSIBLE_DIR/.cache/venv
INVENTORY=$HERE/multinode/hosts.yml

HOSTS=(lb-1 app-1 app-2 db-1 db-replica-1 cache-1 backup-1)
APPS=(app-1 app-2)
declare -A IP=([lb-1]=10.0.0.10 [app-1]=10.0.0.21 [app-2]=10.0.0.22 [db-1]=10.0.0.30
               [db-replica-1]=10.0.0.31 [cache-1]=10.0.0.41 [backup-1]=10.0.0.60)
ADMIN_IP=10.0.0.1      # the switch namespace's address: the bastion in the firewall rules
LB=${IP[lb-1]}

# shellcheck source=lib/report.sh
. "$HERE/lib/report.sh"

SWITCH_PID=""
declare -A UNSHARE_PID=() NS_PID=() SLIRP_PID=()
BACKGROUND=()

cleanup() {
    local rc=$? pid name
    set +e
    for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null; done
    # SIGKILL to a namespace's init takes every process in it along, and the mount
    # namespace (with that root's mounts) goes when its last process does.
    for name in "${!NS_PID[@]}"; do kill -KILL "${NS_PID[$name]}" 2>/dev/null; done
    for name in "${!UNSHARE_PID[@]}"; do
        kill -KILL "${UNSHARE_PID[$name]}" 2>/dev/null; wait "${UNSHARE_PID[$name]}" 2>/dev/null
    done
    for name in "${!SLIRP_PID[@]}"; do kill "${SLIRP_PID[$name]}" 2>/dev/null; wait "${SLIRP_PID[$name]}" 2>/dev/null; done
    if [ -n "$SWITCH_PID" ]; then kill -KILL "$SWITCH_PID" 2>/dev/null; wait "$SWITCH_PID" 2>/dev/null; fi
    if findmnt -rn -o TARGET 2>/dev/null | grep -qF "$ROOTS"; then
        printf 'WARNING: mounts left under %s\n' "$ROOTS" >&2
    fi
    save_downloads
    report_summary
    printf '\nLogs: %s\n' "$LOGS"
    exit "$rc"
}
# New .deb files from any root go back into the shared download cache (hard links).
save_downloads() {
    local name
    for name in "${HOSTS[@]}"; do
        [ -d "$ROOTS/$name/var/cache/apt/archives" ] || continue
        find "$ROOTS/$name/var/cache/apt/archives" -maxdepth 1 -name '*.deb' \
            -exec cp -n --link -t "$CACHE/apt-archives" {} + 2>/dev/null || true
    done
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
mkdir -p "$CACHE/apt-archives/partial" "$CACHE/pip" "$WORK"
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
export PEREGRINE_MULTINODE_ROOTS=$ROOTS PEREGRINE_MULTINODE_CHROOT_EXE=$WORK/chroot-exe
cd "$ANSIBLE_DIR"
ansible-playbook --syntax-check -i "$INVENTORY" site.yml rolling_update.yml >"$LOGS/syntax-check.log" 2>&1 \
    || die "syntax check failed, see $LOGS/syntax-check.log"

# --- rootfs ---------------------------------------------------------------------------
phase rootfs "a fresh Debian $SUITE root per host (${HOSTS[*]})"
if [ ! -s "$TARBALL" ]; then
    echo "    no cached root: debootstrap $SUITE from $MIRROR (about a minute)"
    rm -rf --one-file-system "$CACHE/base.tmp"
    unshare --mount --propagation private \
        debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$CACHE/base.tmp" "$MIRROR" \
        >"$LOGS/debootstrap.log" 2>&1 || die "debootstrap failed, see $LOGS/debootstrap.log"
    tar -C "$CACHE/base.tmp" --numeric-owner -c . | zstd -q -T0 -o "$TARBALL.tmp"
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf --one-file-system "$CACHE/base.tmp"
fi
rm -rf --one-file-system "$NSDIR"
mkdir -p "$NSDIR"
if [ "$REUSE_ROOTS" = 1 ] && [ -d "$ROOTS/${HOSTS[-1]}/etc" ]; then
    # Development only: the previous run's roots, with what their dead processes left.
    echo "    reusing the roots of the previous run"
    for name in "${HOSTS[@]}"; do
        rm -f "$ROOTS/$name"/run/*.pid "$ROOTS/$name"/run/postgresql/.s.PGSQL.* "$ROOTS/$name"/run/postgresql/*.pid \
            "$ROOTS/$name"/var/lib/postgresql/*/main/postmaster.pid "$ROOTS/$name"/run/peregrine/*
    done
else
    rm -rf --one-file-system "$ROOTS"
    mkdir -p "$ROOTS"
    pids=()
    for name in "${HOSTS[@]}"; do
        mkdir -p "$ROOTS/$name"
        tar -C "$ROOTS/$name" --numeric-owner --zstd -xf "$TARBALL" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || die "extracting a root failed"; done
fi
for name in "${HOSTS[@]}"; do
    echo "nameserver 10.0.2.3" >"$ROOTS/$name/etc/resolv.conf"     # slirp4netns' DNS forwarder
    printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >"$ROOTS/$name/etc/hosts"
    echo "$name" >"$ROOTS/$name/etc/hostname"
    mkdir -p "$ROOTS/$name/root/.cache/pip"
    # Each root gets its own apt archive directory (apt locks it), filled with hard links
    # to the shared download cache; new downloads go back into it at the end.
    find "$CACHE/apt-archives" -maxdepth 1 -name '*.deb' \
        -exec cp --link -t "$ROOTS/$name/var/cache/apt/archives" {} + 2>/dev/null || true
done
echo "    $(du -sh "$ROOTS" | cut -f1) in $ROOTS"

# --- network --------------------------------------------------------------------------
phase network "switch namespace with br0, per-host namespaces, veth pairs, slirp4netns"
# The switch: a network namespace holding only the bridge (and the bastion's address).
unshare --net sleep infinity &
SWITCH_PID=$!
sleep 0.2
on_switch() { nsenter --target "$SWITCH_PID" --net -- "$@"; }
on_switch ip link set lo up
on_switch ip link add br0 type bridge
on_switch ip addr add "$ADMIN_IP/24" dev br0
on_switch ip link set br0 up

cat >"$WORK/ns-init.sh" <<'EOF'
#!/bin/bash
# PID 1 of one test host's namespaces: the root's mounts (private to this mount
# namespace), then reap orphans until killed.   ns-init.sh ROOT NAME PIP_CACHE READY_FILE
set -e
root=$1 name=$2 pip_cache=$3 ready=$4
mount -t proc proc "$root/proc"
mount -t sysfs -o ro sysfs "$root/sys"
mount -t tmpfs -o mode=1777,size=1g tmpfs "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" || true
mount --bind "$pip_cache" "$root/root/.cache/pip"
hostname "$name"
ip link set lo up
touch "$ready"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $! || true; done
EOF
chmod 0755 "$WORK/ns-init.sh"
for name in "${HOSTS[@]}"; do
    unshare --net --pid --mount --uts --ipc --fork --kill-child --propagation private \
        "$WORK/ns-init.sh" "$ROOTS/$name" "$name" "$CACHE/pip" "$NSDIR/$name.ready" \
        >"$LOGS/ns-init-$name.log" 2>&1 &
    UNSHARE_PID[$name]=$!
done
for name in "${HOSTS[@]}"; do
    for _ in $(seq 100); do [ -e "$NSDIR/$name.ready" ] && break; sleep 0.1; done
    [ -e "$NSDIR/$name.ready" ] || die "$name's namespaces did not come up, see $LOGS/ns-init-$name.log"
    NS_PID[$name]=$(pgrep -P "${UNSHARE_PID[$name]}" | head -n1)
    [ -n "${NS_PID[$name]}" ] || die "cannot find $name's namespace init process"
    echo "${NS_PID[$name]}" >"$NSDIR/$name.pid"
    # eth0 in the host's namespace, its peer on the bridge.
    on_switch ip link add "v-$name" type veth peer name eth0 netns "${NS_PID[$name]}"
    on_switch ip link set "v-$name" master br0 up
    nsenter --target "${NS_PID[$name]}" --net ip addr add "${IP[$name]}/24" dev eth0
    nsenter --target "${NS_PID[$name]}" --net ip link set eth0 up
    slirp4netns --configure --mtu=65520 --disable-host-loopback "${NS_PID[$name]}" tap0 \
        >"$LOGS/slirp4netns-$name.log" 2>&1 &
    SLIRP_PID[$name]=$!
done
for name in "${HOSTS[@]}"; do
    for _ in $(seq 50); do
        nsenter --target "${NS_PID[$name]}" --net ip -o -4 addr show tap0 2>/dev/null | grep -q 10.0.2.100 && break
        sleep 0.1
    done
    nsenter --target "${NS_PID[$name]}" --net ip -o -4 addr show tap0 | grep -q 10.0.2.100 \
        || die "slirp4netns did not configure tap0 for $name"
done

in_host() {  # in_host NAME command...  (inside that host's namespaces and root)
    local name=$1; shift
    nsenter --target "${NS_PID[$name]}" --net --pid --mount --uts --ipc -- chroot "$ROOTS/$name" "$@"
}
on_net() {   # on_net NAME command...   (the host's tools on that test host's network)
    local name=$1; shift
    nsenter --target "${NS_PID[$name]}" --net -- "$@"
}
# ansible_chroot_exe: the root's directory name is the host's name, which finds its namespaces.
cat >"$WORK/chroot-exe" <<EOF
#!/bin/sh
# ansible_chroot_exe for the multi-node test: enter the namespaces of the host whose root
# is \$1, then chroot into it.
exec nsenter --target "\$(cat "$NSDIR/\$(basename "\$1").pid")" --net --pid --mount --uts --ipc -- chroot "\$@"
EOF
chmod 0755 "$WORK/chroot-exe"
pings=""
for name in "${HOSTS[@]}"; do
    # A TCP connection to a closed port: "refused" comes back from the host itself.
    on_net lb-1 /usr/bin/python3 -c '
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=2)
except ConnectionRefusedError:
    pass' "${IP[$name]}" 2>/dev/null && pings+="$name "
done
check "lb-1 reaches every host over the bridge (${pings% })" eval '[ "${pings% }" = "${HOSTS[*]}" ]'
[ "$(in_host db-1 hostname)" = db-1 ] || die "db-1's UTS namespace is not its own"

# The chroot connection passes the controller's environment through: keep the CA bundle,
# drop host-only pip paths and any SSH_CLIENT of the operator's shell (the firewall role
# would add it to the admin allow-list). Every run deploys the commit checked out when the
# test started: a commit landing in the checkout half-way would otherwise be a new release
# on the second run (changed != 0).
APP_COMMIT=$(git -C "$ANSIBLE_DIR" rev-parse --verify 'HEAD^{commit}')
playbook() {
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u SSH_CLIENT -u SSH_CONNECTION \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks PROFILE_TASKS_TASK_OUTPUT_LIMIT=6 \
        ansible-playbook -i "$INVENTORY" -e "app_source_version=$APP_COMMIT" "$@"
}
recaps() { grep -E "^($(IFS='|'; echo "${HOSTS[*]}")) +: ok=" "$1" | tr -s ' ' | sed 's/^/      /'; }
changed_total() {
    grep -E "^($(IFS='|'; echo "${HOSTS[*]}")) +: ok=" "$1" | sed -n 's/.* changed=\([0-9]*\).*/\1/p' \
        | awk '{ s += $1 } END { print s + 0 }'
}
slowest() {
    sed -n '/^TASKS RECAP/,$p' "$1" | grep -E ' -+ [0-9.]+s *$' | head -n 5 | sed 's/^/      /' || true
}

# --- bootstrap ------------------------------------------------------------------------
phase bootstrap "multinode/bootstrap.yml (policy-rc.d, CA certificates, SSH server on db/backup)"
playbook "$HERE/multinode/bootstrap.yml" >"$LOGS/bootstrap.log" 2>&1 \
    || { tail -n 30 "$LOGS/bootstrap.log"; die "bootstrap failed"; }
recaps "$LOGS/bootstrap.log"

# Stand-ins for what systemd does on a real VM while site.yml runs (the roles do not start
# services here): sshd on the hosts that talk pgBackRest over SSH, and PostgreSQL on db-1
# once the role wrote its configuration (the app's migrations and the stanza need it).
for name in db-1 backup-1; do
    in_host "$name" /bin/sh -c 'mkdir -p -m 0755 /run/sshd && /usr/sbin/sshd' >"$LOGS/sshd-$name.log" 2>&1 \
        || fail "sshd starts on $name"
done
# db-replica-1's clone (pg_basebackup) needs the primary running with its pg_hba.conf,
# which already names the standby's replication address.
in_host db-1 /bin/sh -c '
    while :; do
        if dpkg-query -W -f="\${Status}" postgresql-$0 2>/dev/null | grep -q "install ok installed" &&
           [ -f /var/lib/postgresql/$0/main/PG_VERSION ] &&
           [ -f /etc/postgresql/$0/main/conf.d/60-peregrine.conf ] &&
           grep -q "^host  *peregrine" /etc/postgresql/$0/main/pg_hba.conf 2>/dev/null &&
           grep -q "^host  *replication" /etc/postgresql/$0/main/pg_hba.conf 2>/dev/null; then
            pg_ctlcluster $0 main start && exit 0
        fi
        sleep 1
    done' "$PG_MAJOR" >"$LOGS/postgresql-standin.log" 2>&1 &
BACKGROUND+=($!)

# --- converge -------------------------------------------------------------------------
phase converge "site.yml, first run on ${#HOSTS[@]} hosts in parallel (log: $LOGS/converge.log)"
if ! playbook site.yml "${SITE_ARGS[@]}" >"$LOGS/converge.log" 2>&1; then
    grep -E -A12 '^(fatal|failed):' "$LOGS/converge.log" | head -n 60
    recaps "$LOGS/converge.log"
    die "first converge failed"
fi
recaps "$LOGS/converge.log"
echo "    slowest tasks:"; slowest "$LOGS/converge.log"

# --- idempotence ----------------------------------------------------------------------
phase idempotence "site.yml, second run must report changed=0 on every host"
if ! playbook site.yml "${SITE_ARGS[@]}" >"$LOGS/idempotence.log" 2>&1; then
    grep -E -A12 '^(fatal|failed):' "$LOGS/idempotence.log" | head -n 60
    die "second converge failed"
fi
recaps "$LOGS/idempotence.log"
changed=$(changed_total "$LOGS/idempotence.log")
if [ "$changed" = 0 ]; then
    pass "second run of site.yml: changed=0 on all ${#HOSTS[@]} hosts"
else
    grep -B1 -E '^changed: ' "$LOGS/idempotence.log" | grep -E 'TASK|^changed' | sed 's/^/      /' || true
    fail "second run of site.yml: changed=$changed in total (expected 0)"
fi

# --- services -------------------------------------------------------------------------
phase services "start what the roles configured, as systemd would, in each host's namespaces"
# PostgreSQL: restart so archiving (role backup) and the private listen address apply.
in_host db-1 pg_ctlcluster "$PG_MAJOR" main restart >"$LOGS/postgresql.log" 2>&1 \
    || { cat "$LOGS/postgresql.log"; fail "PostgreSQL restarts on db-1 with the roles' configuration"; }
# The standby, as postgresql@<version>-main.service would start it (after the primary, so
# the app hosts find it streaming when they start).
in_host db-replica-1 pg_ctlcluster "$PG_MAJOR" main start >"$LOGS/postgresql-replica.log" 2>&1 \
    || { cat "$LOGS/postgresql-replica.log"; fail "the standby starts on db-replica-1"; }
in_host cache-1 /usr/share/memcached/scripts/systemd-memcached-wrapper /etc/memcached.conf \
    >"$LOGS/memcached.log" 2>&1 &
BACKGROUND+=($!)
unit_get() { sed -n "s/^$2=//p" "$ROOTS/$1/etc/systemd/system/peregrine.service" | head -n1; }
start_app() {  # the app from its unit file: User, WorkingDirectory, EnvironmentFile, UMask, ExecStart
    local name=$1
    in_host "$name" install -d -o "$(unit_get "$name" User)" -g "$(unit_get "$name" Group)" \
        -m "$(unit_get "$name" RuntimeDirectoryMode)" /run/peregrine
    in_host "$name" /bin/sh -c "umask $(unit_get "$name" UMask); set -a; . '$(unit_get "$name" EnvironmentFile)'; set +a;
        cd '$(unit_get "$name" WorkingDirectory)' && exec runuser -u '$(unit_get "$name" User)' -- $(unit_get "$name" ExecStart)" \
        >>"$LOGS/app-$name.log" 2>&1 &
    BACKGROUND+=($!)
}
stop_app() {   # SIGTERM to the gunicorn master, as systemd sends; wait until it is gone
    local name=$1 master
    master=$(in_host "$name" pgrep -o -f gunicorn || true)
    [ -n "$master" ] || return 1
    in_host "$name" kill -TERM "$master"
    for _ in $(seq 350); do in_host "$name" kill -0 "$master" 2>/dev/null || return 0; sleep 0.1; done
    return 1
}
for name in "${APPS[@]}"; do
    in_host "$name" /usr/sbin/collectd -C /etc/collectd/collectd.conf >"$LOGS/collectd-$name.log" 2>&1 \
        || fail "collectd starts on $name"
    start_app "$name"
    { in_host "$name" nginx -t && in_host "$name" nginx; } >"$LOGS/nginx-$name.log" 2>&1 || fail "the edge nginx starts on $name"
done
{ in_host lb-1 nginx -t && in_host lb-1 nginx; } >"$LOGS/nginx-lb-1.log" 2>&1 || fail "nginx starts on lb-1"

# The test's client is the switch namespace (the bastion's address, outside every tier).
client() { on_switch curl -sk --max-time 5 "$@"; }
for name in "${APPS[@]}"; do
    ready=""
    for _ in $(seq 90); do
        code=$(on_net lb-1 curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://${IP[$name]}:8080/readyz" || true)
        [ "$code" = 200 ] && { ready=1; break; }
        sleep 1
    done
    check "$name is ready: GET /readyz from lb-1 to its edge nginx = 200 (after $(elapsed "$PHASE_START") s, last ${code:-none})" \
        eval '[ -n "$ready" ]'
    [ -n "$ready" ] || tail -n 20 "$LOGS/app-$name.log" | sed 's/^/      /'
done

# --- traffic --------------------------------------------------------------------------
phase traffic "through lb-1 to both app hosts; the app hosts reach db-1 and cache-1"
code=$(client -o "$WORK/readyz.json" -w '%{http_code}' "https://$LB/readyz" || echo 000)
check "GET /readyz through lb-1 (TLS) = 200 with the database and cache ok (got $code: $(tr -d '\n' <"$WORK/readyz.json" 2>/dev/null | cut -c1-120))" \
    eval '[ "$code" = 200 ] && grep -q "\"cache\": *\"ok\"" "$WORK/readyz.json"'
run_id="mn$RANDOM$RANDOM"
spread_codes=""
for i in $(seq 1 20); do
    spread_codes+="$(client -o /dev/null -w '%{http_code}' "https://$LB/healthz?spread=$run_id-$i" || echo 000) "
done
# nginx buffers its access log (flush=5s); reopening the logs writes the buffer out.
for name in "${APPS[@]}"; do in_host "$name" nginx -s reopen; done
sleep 1
declare -A served=()
for name in "${APPS[@]}"; do
    served[$name]=$(grep -c "spread=$run_id-" "$ROOTS/$name/var/log/nginx/access.log" 2>/dev/null || true)
done
check "20 requests through lb-1 all answer 200 and reach both app hosts (app-1: ${served[app-1]:-0}, app-2: ${served[app-2]:-0})" \
    eval '[ -z "$(tr " " "\n" <<<"$spread_codes" | grep -v -e "^200$" -e "^$")" ] &&
          [ "${served[app-1]:-0}" -ge 1 ] && [ "${served[app-2]:-0}" -ge 1 ] &&
          [ $(( ${served[app-1]:-0} + ${served[app-2]:-0} )) = 20 ]'
check "both app hosts connect to PostgreSQL on db-1 over the bridge" \
    eval '[ "$(in_host db-1 runuser -u postgres -- psql -XAtc "select count(distinct client_addr) from pg_stat_activity where client_addr in ('"'"'${IP[app-1]}'"'"', '"'"'${IP[app-2]}'"'"')")" = 2 ]'
for name in "${APPS[@]}"; do
    code=$(on_net lb-1 curl -s -o "$WORK/readyz-$name.json" -w '%{http_code}' --max-time 5 "http://${IP[$name]}:8080/readyz" || echo 000)
    check "$name's /readyz reports memcached on cache-1 ok (got $code: $(tr -d '\n' <"$WORK/readyz-$name.json" 2>/dev/null | cut -c1-100))" \
        eval '[ "$code" = 200 ] && grep -q "\"cache\": *\"ok\"" "$WORK/readyz-$name.json"'
done
mc_stats=$(on_net app-1 bash -c "exec 3<>/dev/tcp/${IP[cache-1]}/11211; printf 'stats settings\r\nquit\r\n' >&3; timeout 2 cat <&3" 2>/dev/null | tr -d '\r' || true)
check "memcached on cache-1 listens on its private address, UDP off" \
    eval 'grep -qx "STAT inter ${IP[cache-1]}" <<<"$mc_stats" && grep -qx "STAT udpport 0" <<<"$mc_stats"'

# pgBackRest: the repository is on backup-1, archive-push and backups cross over SSH.
as_repo() { in_host backup-1 runuser -u pgbackrest -- "$@"; }
check "pgbackrest check from backup-1 (WAL from db-1 reaches the repository over SSH)" \
    eval 'as_repo pgbackrest --stanza=peregrine check >"$LOGS/pgbackrest-check.log" 2>&1'
backup_exec=$(sed -n 's/^ExecStart=//p' "$ROOTS/backup-1/etc/systemd/system/peregrine-backup@.service")
t0=$(date +%s.%N)
if as_repo ${backup_exec//%i/full} >"$LOGS/backup-full.log" 2>&1; then
    pass "full backup of db-1 on backup-1 through peregrine-backup@full.service's command ($(elapsed "$t0") s)"
else
    tail -n 10 "$LOGS/backup-full.log" | sed 's/^/      /'
    fail "full backup of db-1 on backup-1"
fi
t0=$(date +%s.%N)
if as_repo /usr/local/sbin/peregrine-restore-drill >"$LOGS/restore-drill.log" 2>&1; then
    pass "restore drill on backup-1: $(tail -n1 "$LOGS/restore-drill.log" | sed 's/^drill-[^:]*: //') (whole drill $(elapsed "$t0") s)"
else
    tail -n 15 "$LOGS/restore-drill.log" | sed 's/^/      /'
    fail "restore drill on backup-1 (restore point marked on db-1 over SSH)"
fi

# --- replica --------------------------------------------------------------------------
phase replica "db-replica-1 streams from db-1 and serves the catalog's cache misses"
REPLICA=${IP[db-replica-1]}
sql_on() {  # sql_on HOST SQL -> unaligned rows (as postgres, database peregrine)
    in_host "$1" runuser -u postgres -- psql -XAt -d peregrine -c "$2" 2>>"$LOGS/replica-sql.log"
}
retry() {  # retry SECONDS COMMAND...  (until it succeeds)
    local tries=$(( $1 * 2 )) _; shift
    for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.5; done
    return 1
}
streaming() {
    [ "$(sql_on db-1 "select state from pg_stat_replication where client_addr = '$REPLICA'")" = streaming ]
}
check "db-1 streams to db-replica-1 (pg_stat_replication from $REPLICA: streaming)" retry 30 streaming
check "db-replica-1 is a read-only hot standby of db-1 (pg_is_in_recovery, through its slot)" \
    eval '[ "$(sql_on db-replica-1 "select pg_is_in_recovery()")" = t ] &&
          [ "$(sql_on db-1 "select active from pg_replication_slots where slot_name = '"'"'db_replica_1'"'"'")" = t ]'
# A catalog to read: the app's own seed command on app-1, as its service user.
seed_env=$(unit_get app-1 EnvironmentFile) seed_wd=$(unit_get app-1 WorkingDirectory) seed_user=$(unit_get app-1 User)
if in_host app-1 /bin/sh -c "set -a; . '$seed_env'; set +a; cd '$seed_wd' && runuser -u '$seed_user' -- venv/bin/python -m app seed --products 25 --users 1 --seed 7" \
        >"$LOGS/seed.log" 2>&1; then
    pass "python -m app seed --products 25 on app-1 (as the service user, with the deployed env file)"
else
    tail -n 5 "$LOGS/seed.log" | sed 's/^/      /'
    fail "python -m app seed --products 25 on app-1"
fi
caught_up() {
    local written; written=$(sql_on db-1 "select pg_current_wal_lsn()") || return 1
    [ "$(sql_on db-replica-1 "select pg_last_wal_replay_lsn() >= '$written'::pg_lsn")" = t ]
}
check "db-replica-1 has replayed db-1's current WAL position (the seeded catalog)" retry 20 caught_up
replica_ok() {  # replica_ok APP_HOST: its /readyz = 200 and lists the standby as ok
    local code
    code=$(on_net lb-1 curl -s -o "$WORK/readyz-replica-$1.json" -w '%{http_code}' --max-time 5 "http://${IP[$1]}:8080/readyz" || echo 000)
    [ "$code" = 200 ] && [ "$(/usr/bin/python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print([(r["name"], r["status"]) for r in d.get("replicas", [])])' "$WORK/readyz-replica-$1.json" 2>/dev/null)" = "[('$REPLICA:5432', 'ok')]" ]
}
replica_ok_thrice() { replica_ok "$1" && replica_ok "$1" && replica_ok "$1"; }   # each worker answers for itself
for name in "${APPS[@]}"; do
    check "$name's /readyz lists the standby $REPLICA:5432 as ok" retry 30 replica_ok_thrice "$name"
done
scans() {  # index + sequential scans of products on HOST since its server started
    sql_on "$1" "select coalesce(sum(coalesce(idx_scan, 0) + coalesce(seq_scan, 0)), 0)
                 from pg_stat_user_tables where relname = 'products'"
}
ids=$(client "https://$LB/v1/products?limit=100" | /usr/bin/python3 -c 'import json, sys
print(" ".join(p["id"] for p in json.load(sys.stdin)["items"]))' 2>/dev/null || true)
replica_before=$(scans db-replica-1 || echo 0) primary_before=$(scans db-1 || echo 0)
reads=0 read_errors=0
for id in $ids; do
    if [ "$(client -o /dev/null -w '%{http_code}' "https://$LB/v1/products/$id" || echo 000)" = 200 ]; then
        reads=$((reads + 1))
    else
        read_errors=$((read_errors + 1))
    fi
done
# The statistics are flushed by each backend a little after its transaction.
read_by_replica() {
    replica_after=$(scans db-replica-1 || echo 0)
    [ $((replica_after - replica_before)) -ge $((reads / 2)) ]
}
replica_after=$replica_before
retry 20 read_by_replica || true
primary_after=$(scans db-1 || echo 0)
check "cache misses through lb-1 are read from db-replica-1: $reads GET /v1/products/{id} = 200 ($read_errors errors), products scanned $((replica_after - replica_before)) times on the standby and $((primary_after - primary_before)) on db-1" \
    eval '[ "$reads" -ge 20 ] && [ "$read_errors" = 0 ] && [ $((replica_after - replica_before)) -ge $((reads / 2)) ]'

# --- rolling --------------------------------------------------------------------------
phase rolling "rolling_update.yml under a bounded request loop through lb-1"
# What systemd would do for the steps this test turns off (nginx_manage_services and
# app_manage_services are false): reload lb-1's nginx whenever its upstream files change,
# and restart a drained app host's gunicorn once it is out of the pool, as a new release
# would. A request that fails while a host is drained or restarting fails the phase.
cat >"$WORK/rolling-standin.sh" <<'EOF'
upstreams() { cat "$ROOTS/lb-1"/etc/nginx/peregrine-upstream.d/*.conf 2>/dev/null | md5sum; }
last=$(upstreams)
declare -A restarted=()
while [ ! -e "$WORK/rolling.stop" ]; do
    now=$(upstreams)
    if [ "$now" != "$last" ]; then
        last=$now
        in_host lb-1 nginx -t -q && in_host lb-1 nginx -s reload && echo "$(date +%T.%N) lb-1 nginx reloaded"
        for name in "${APPS[@]}"; do
            if grep -q " down;" "$ROOTS/lb-1/etc/nginx/peregrine-upstream.d/$name.conf" && [ -z "${restarted[$name]:-}" ]; then
                restarted[$name]=1
                sleep 1   # the old nginx workers finish what they had
                stop_app "$name" && echo "$(date +%T.%N) $name stopped" && start_app "$name" && echo "$(date +%T.%N) $name started"
            fi
        done
    fi
    sleep 0.2
done
EOF
rm -f "$WORK/rolling.stop" "$WORK/load.codes"
( . "$WORK/rolling-standin.sh" ) >"$LOGS/rolling-standin.log" 2>&1 &
BACKGROUND+=($!)
STANDIN_PID=$!
# The load: sequential requests from one client, bounded in count (3000) and time (240 s).
(
    deadline=$(( $(date +%s) + 240 ))
    for _ in $(seq 3000); do
        [ -e "$WORK/rolling.stop" ] || [ "$(date +%s)" -ge "$deadline" ] && break
        # curl prints 000 itself when it gets no answer.
        client -o /dev/null -w '%{http_code}\n' "https://$LB/v1/products?limit=1" >>"$WORK/load.codes" || true
        sleep 0.15   # stays under the app's per-client rate limit (600/min): a 429 counts as failed
    done
) &
LOAD_PID=$!
BACKGROUND+=("$LOAD_PID")
sleep 2
t0=$(date +%s.%N)
if playbook rolling_update.yml -e rolling_update_drain_seconds=3 >"$LOGS/rolling-update.log" 2>&1; then
    rolled=1
else
    rolled=""
    tail -n 25 "$LOGS/rolling-update.log" | sed 's/^/      /'
fi
took=$(elapsed "$t0")
sleep 2
touch "$WORK/rolling.stop"
wait "$LOAD_PID" 2>/dev/null || true
wait "$STANDIN_PID" 2>/dev/null || true
sed 's/^/      /' "$LOGS/rolling-standin.log"
total=$(grep -c . "$WORK/load.codes" 2>/dev/null || true)
failed=$(grep -vc '^200$' "$WORK/load.codes" 2>/dev/null || true)
check "rolling_update.yml runs under load (${took} s)" eval '[ -n "$rolled" ]'
check "both app hosts were drained, restarted and put back during the update" \
    eval '[ "$(grep -cE "^[0-9:.]+ app-[0-9]+ stopped$" "$LOGS/rolling-standin.log")" = 2 ] &&
          [ "$(grep -cE "^[0-9:.]+ app-[0-9]+ started$" "$LOGS/rolling-standin.log")" = 2 ] &&
          ! grep -q " down;" "$ROOTS"/lb-1/etc/nginx/peregrine-upstream.d/*.conf'
check "no request through lb-1 failed during the rolling update ($total requests, ${failed:-0} not 200: $(grep -v '^200$' "$WORK/load.codes" 2>/dev/null | sort | uniq -c | tr -s ' ' | tr '\n' ',' ))" \
    eval '[ "$total" -gt 50 ] && [ "${failed:-0}" = 0 ]'

# --- firewall -------------------------------------------------------------------------
phase firewall "each host's nftables rules in its own network namespace, probed from the others"
reach() {  # reach FROM_NAME|switch ADDRESS PORT -> open|closed
    local runner=(on_net "$1")
    [ "$1" = switch ] && runner=(on_switch)
    if "${runner[@]}" timeout 2 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then echo open; else echo closed; fi
}
expect_reach() {  # expect_reach FROM TO PORT open|closed
    local got want=$4; got=$(reach "$1" "${IP[$2]}" "$3")
    check "$1 -> $2:$3 is $want (got $got)" eval '[ "$got" = "$want" ]'
}
# Controls without the rules: what must be closed afterwards answers now.
before="lb-1->db-1:5432 $(reach lb-1 "${IP[db-1]}" 5432), lb-1->cache-1:11211 $(reach lb-1 "${IP[cache-1]}" 11211), app-1->db-1:22 $(reach app-1 "${IP[db-1]}" 22), lb-1->db-replica-1:5432 $(reach lb-1 "$REPLICA" 5432)"
check "control: without the rules those ports answer ($before)" \
    eval '[ "$before" = "lb-1->db-1:5432 open, lb-1->cache-1:11211 open, app-1->db-1:22 open, lb-1->db-replica-1:5432 open" ]'
loaded=""
for name in "${HOSTS[@]}"; do
    in_host "$name" nft -c -f /etc/nftables.conf >>"$LOGS/nft.log" 2>&1 && in_host "$name" nft -f /etc/nftables.conf >>"$LOGS/nft.log" 2>&1 \
        && loaded+="$name "
done
check "every host's /etc/nftables.conf passes nft -c and loads (${loaded% })" eval '[ "${loaded% }" = "${HOSTS[*]}" ]'
for name in "${APPS[@]}"; do
    expect_reach "$name" db-1 5432 open
    expect_reach "$name" cache-1 11211 open
done
expect_reach lb-1 db-1 5432 closed
expect_reach lb-1 cache-1 11211 closed
expect_reach lb-1 app-1 8080 open
expect_reach cache-1 app-1 8080 closed
expect_reach app-1 db-1 22 closed
expect_reach lb-1 backup-1 22 closed
expect_reach backup-1 db-1 22 open
expect_reach db-1 backup-1 22 open
for name in "${APPS[@]}"; do expect_reach "$name" db-replica-1 5432 open; done
expect_reach db-replica-1 db-1 5432 open
expect_reach lb-1 db-replica-1 5432 closed
expect_reach cache-1 db-replica-1 5432 closed
got=$(reach switch "${IP[db-1]}" 22)
check "the bastion ($ADMIN_IP) -> db-1:22 is open (got $got)" eval '[ "$got" = open ]'
got=$(reach switch "$LB" 443)
check "anyone -> lb-1:443 is open (got $got)" eval '[ "$got" = open ]'
code=$(client -o "$WORK/readyz.json" -w '%{http_code}' "https://$LB/readyz" || echo 000)
check "with every firewall loaded, GET /readyz through lb-1 = 200 with the cache ok (got $code)" \
    eval '[ "$code" = 200 ] && grep -q "\"cache\": *\"ok\"" "$WORK/readyz.json"'
check "with every firewall loaded, pgbackrest check still passes between db-1 and backup-1" \
    eval 'as_repo pgbackrest --stanza=peregrine check >>"$LOGS/pgbackrest-check.log" 2>&1'
check "with every firewall loaded, db-1 still streams to db-replica-1 and app-1's /readyz lists it as ok" \
    eval 'streaming && retry 15 replica_ok app-1'
end_phase

[ "$FAILED" = 0 ] || { printf '\nSOME CHECKS FAILED\n'; exit 1; }
printf '\nALL CHECKS PASSED\n'
