# shellcheck shell=bash
# Read replica: the db_replica standby the roles cloned (second cluster "replica" on port
# 5433 of this root, the single-node layout's opt-in), streaming from the primary; catalog
# cache misses through nginx served by it; then the promotion runbook of
# deploy/ansible/README.md ("Promoting a replica"), its repoint command taken from the
# README itself. At the end the original primary, env file and app state are restored
# (memcached flushed), so later checks find the stack as it was.
phase replica "streaming standby: replication, reads through it, promotion runbook"

replica_readme=$HERE/../README.md
replica_slot=peregrine_test                      # postgresql_replica_slot of peregrine-test
replica_env=/etc/peregrine/peregrine.env
replica_unit=$ROOT/etc/systemd/system/peregrine.service
replica_cluster() {  # replica_cluster NAME FIELD  (pg_lsclusters: 1 version, 3 port)
    in_ns pg_lsclusters -h 2>/dev/null | awk -v c="$1" -v f="$2" '$2 == c { print $f }'
}
replica_ver=$(replica_cluster replica 1 || true)
replica_port=$(replica_cluster replica 3 || true)
replica_primary_port=$(replica_cluster main 3 || true)
replica_sql() {  # replica_sql PORT SQL -> one unaligned value per row
    in_ns runuser -u postgres -- psql -XAt -p "$1" -d peregrine -c "$2" 2>>"$LOGS/replica-sql.log"
}
replica_unit_get() { sed -n "s/^$1=//p" "$replica_unit" | head -n1; }
replica_app_pid() { in_ns pgrep -o -f 'gunicorn' 2>/dev/null || true; }
replica_app_start() {
    in_ns install -d -o "$(replica_unit_get User)" -g "$(replica_unit_get Group)" \
        -m "$(replica_unit_get RuntimeDirectoryMode)" /run/peregrine
    in_ns /bin/sh -c "umask $(replica_unit_get UMask); set -a; . '$(replica_unit_get EnvironmentFile)'; set +a;
        cd '$(replica_unit_get WorkingDirectory)' && exec runuser -u '$(replica_unit_get User)' -- $(replica_unit_get ExecStart)" \
        >>"$LOGS/replica-app.log" 2>&1 &
    local _
    for _ in $(seq 60); do
        [ "$(replica_req GET /readyz)" = 200 ] && return 0
        sleep 1
    done
    tail -n 20 "$LOGS/replica-app.log" | sed 's/^/      /'
    return 1
}
replica_app_stop() {  # SIGTERM to the master, as systemd stops the unit
    local pid _; pid=$(replica_app_pid)
    [ -n "$pid" ] || return 0
    in_ns kill -TERM "$pid"
    for _ in $(seq 350); do in_ns kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    return 1
}
replica_req() {  # replica_req METHOD PATH [JSON [curl args...]] -> status; body in $WORK/replica-body
    local method=$1 path=$2 data=${3:-}
    shift 2; [ $# -gt 0 ] && shift
    on_net curl -sk --max-time 10 -X "$method" -H 'Content-Type: application/json' \
        ${data:+--data-binary "$data"} -o "$WORK/replica-body" -w '%{http_code}' "$@" \
        "https://127.0.0.1$path" || echo 000
}
replica_json() {  # replica_json EXPR  (d = the last body)
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' \
        "$WORK/replica-body" "$1" 2>/dev/null || true
}
replica_wait() {  # replica_wait SECONDS COMMAND...  (until it succeeds)
    local tries=$(( $1 * 2 )) _; shift
    for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.5; done
    return 1
}
replica_scans() {  # index + sequential scans of products on PORT since that server started
    replica_sql "$1" "select coalesce(sum(coalesce(idx_scan, 0) + coalesce(seq_scan, 0)), 0)
                      from pg_stat_user_tables where relname = 'products'"
}

check "the roles cloned a standby: cluster replica ($replica_ver, port $replica_port) with standby.signal, primary_conninfo and hot_standby_feedback" \
    eval '[ -n "$replica_ver" ] && [ "$replica_port" = 5433 ] &&
          [ -e "$ROOT/var/lib/postgresql/$replica_ver/replica/standby.signal" ] &&
          grep -q "^primary_conninfo = .*port=$replica_primary_port" "$ROOT/var/lib/postgresql/$replica_ver/replica/postgresql.auto.conf" &&
          grep -qx "hot_standby_feedback = on" "$ROOT/etc/postgresql/$replica_ver/replica/conf.d/70-replica.conf"'
check "the primary holds the standby's physical replication slot ($replica_slot)" \
    eval '[ "$(replica_sql "$replica_primary_port" "select slot_type from pg_replication_slots where slot_name = '"'$replica_slot'"'")" = physical ]'

# What postgresql@<version>-replica.service runs.
if in_ns pg_ctlcluster "$replica_ver" replica start >"$LOGS/replica-start.log" 2>&1; then
    pass "the standby starts (pg_ctlcluster $replica_ver replica start)"
else
    sed 's/^/      /' "$LOGS/replica-start.log"
    fail "the standby starts (pg_ctlcluster $replica_ver replica start)"
fi
replica_streaming() {  # the WAL sender that holds the standby's slot
    [ "$(replica_sql "$replica_primary_port" "select r.state from pg_stat_replication r
        join pg_replication_slots s on s.active_pid = r.pid where s.slot_name = '$replica_slot'")" = streaming ]
}
check "the primary streams to it through the slot (pg_stat_replication: streaming, slot active)" \
    replica_wait 30 replica_streaming
check "the standby is a hot standby with feedback on, read-only (pg_is_in_recovery, hot_standby_feedback)" \
    eval '[ "$(replica_sql "$replica_port" "select pg_is_in_recovery()::text || '"' '"' || current_setting('"'hot_standby_feedback'"')")" = "true on" ]'
replica_caught_up() {
    local written; written=$(replica_sql "$replica_primary_port" "select pg_current_wal_lsn()") || return 1
    [ "$(replica_sql "$replica_port" "select pg_last_wal_replay_lsn() >= '$written'::pg_lsn")" = t ]
}
check "the standby has replayed the primary's current WAL position" replica_wait 20 replica_caught_up
check "the app's environment names the standby (PEREGRINE_DATABASE_REPLICA_URLS, PEREGRINE_REPLICA_MAX_LAG)" \
    eval 'grep -q "^PEREGRINE_DATABASE_REPLICA_URLS=\"postgresql://peregrine:.*@127.0.0.1:5433/peregrine\"$" "$ROOT$replica_env" &&
          grep -qx "PEREGRINE_REPLICA_MAX_LAG=\"5\"" "$ROOT$replica_env"'
check "the firewall rules let the app reach the standby and the standby reach the primary" \
    eval 'grep -A1 -F "# app -> PostgreSQL standby" "$ROOT/etc/nftables.conf" | grep -q "ip saddr { 127.0.0.1 } tcp dport { 5433 } accept" &&
          grep -A1 -F "# standbys -> primary (streaming replication)" "$ROOT/etc/nftables.conf" | grep -q "tcp dport { 5432 } accept"'

# The app: started here if the earlier phases left it stopped (they end with a SIGTERM).
replica_app_was_running=$(replica_app_pid)
cp -p "$ROOT$replica_env" "$WORK/replica-env.orig"
if [ -z "$replica_app_was_running" ]; then
    check "the app starts again from its unit's command (GET /readyz = 200)" replica_app_start
fi
replica_ok_on_readyz() {
    [ "$(replica_req GET /readyz)" = 200 ] &&
        [ "$(replica_json '[(r["name"], r["status"]) for r in d["replicas"]]')" = "[('127.0.0.1:5433', 'ok')]" ]
}
replica_ok_everywhere() {  # ok on three answers in a row (each worker answers for itself)
    replica_ok_on_readyz && replica_ok_on_readyz && replica_ok_on_readyz
}
check "/readyz (200) lists the standby 127.0.0.1:5433 as ok" replica_wait 30 replica_ok_everywhere
replica_req GET /readyz >/dev/null
echo "      $(replica_json 'd["replicas"]')"

# Catalog cache misses: every product once by id (only the first was read before), through
# nginx. The products table's scans on each server count where they ran.
replica_ids=""
[ "$(replica_req GET '/v1/products?limit=100')" = 200 ] && replica_ids=$(replica_json '" ".join(p["id"] for p in d["items"])')
replica_before=$(replica_scans "$replica_port" || echo 0)
replica_primary_before=$(replica_scans "$replica_primary_port" || echo 0)
replica_reads=0 replica_read_errors=0
for id in $replica_ids; do
    if [ "$(replica_req GET "/v1/products/$id")" = 200 ]; then
        replica_reads=$((replica_reads + 1))
    else
        replica_read_errors=$((replica_read_errors + 1))
    fi
done
replica_served() {
    replica_after=$(replica_scans "$replica_port" || echo 0)
    [ $((replica_after - replica_before)) -ge $((replica_reads / 2)) ]
}
replica_wait 20 replica_served || true
replica_primary_after=$(replica_scans "$replica_primary_port" || echo 0)
check "cache misses through nginx are read from the standby: $replica_reads GET /v1/products/{id} = 200 ($replica_read_errors errors), products scanned $((replica_after - replica_before)) times on the standby and $((replica_primary_after - replica_primary_before)) on the primary" \
    eval '[ "$replica_reads" -ge 20 ] && [ "$replica_read_errors" = 0 ] &&
          [ $((replica_after - replica_before)) -ge $((replica_reads / 2)) ]'

# A write, then the next anonymous read: never older, whoever answers it.
replica_admin="replica-admin-$RANDOM$RANDOM@example.com"
replica_token=""
if printf '%s\n' deploy-test-password-1 | in_ns /bin/sh -c "set -a; . '$replica_env'; set +a; cd '$(replica_unit_get WorkingDirectory)' &&
        runuser -u '$(replica_unit_get User)' -- venv/bin/python -m app create-user --email '$replica_admin' --role admin --password-stdin" \
        >"$LOGS/replica-admin.log" 2>&1 &&
   [ "$(replica_req POST /v1/auth/login "{\"email\":\"$replica_admin\",\"password\":\"deploy-test-password-1\"}")" = 200 ]; then
    replica_token=$(replica_json 'd["access_token"]')
fi
check "an admin created with python -m app create-user logs in" eval '[ -n "$replica_token" ]'
replica_product=${replica_ids%% *}
replica_rename() {  # replica_rename NAME -> the PATCH status, then the next anonymous read's name
    local code; code=$(replica_req PATCH "/v1/products/$replica_product" "{\"name\":\"$1\"}" -H "Authorization: Bearer $replica_token")
    replica_req GET "/v1/products/$replica_product" >/dev/null
    echo "$code $(replica_json 'd["name"]')"
}
replica_seen=$(replica_rename "Renamed before the failover")
check "PATCH /v1/products/{id} = 200 and the next anonymous read returns the new name ($replica_seen)" \
    eval '[ "$replica_seen" = "200 Renamed before the failover" ]'

# --- the promotion runbook (deploy/ansible/README.md, "Promoting a replica") -----------
# 1. Fence the old primary: here it is lost the hard way.
check "runbook 1: the primary is stopped hard (pg_ctlcluster -m immediate $replica_ver main stop)" \
    eval 'in_ns pg_ctlcluster -m immediate "$replica_ver" main stop >"$LOGS/replica-runbook.log" 2>&1'
# 2. What the standby received and replayed.
replica_replayed_all() {
    replica_positions=$(replica_sql "$replica_port" "select pg_last_wal_receive_lsn() || ' ' || pg_last_wal_replay_lsn()" || true)
    [ "$(replica_sql "$replica_port" "select pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()")" = t ]
}
replica_positions=""
replica_wait 10 replica_replayed_all || true
check "runbook 2: the standby has replayed all it received (received, replayed: $replica_positions)" replica_replayed_all
# 3. Promote.
check "runbook 3: SELECT pg_promote(wait => true) = t, then pg_is_in_recovery() = f" \
    eval '[ "$(replica_sql "$replica_port" "select pg_promote(wait => true)")" = t ] &&
          [ "$(replica_sql "$replica_port" "select pg_is_in_recovery()")" = f ]'
# 4. Repoint the app hosts: the README's own command, then the restart.
replica_repoint=$(grep -m1 -F 'sudo sed -i -e "s#@$OLD/#@$NEW/#"' "$replica_readme" | sed 's/^ *sudo //' || true)
if [ -n "$replica_repoint" ] &&
   in_ns /bin/sh -c "OLD=127.0.0.1:$replica_primary_port NEW=127.0.0.1:$replica_port; $replica_repoint" >>"$LOGS/replica-runbook.log" 2>&1; then
    pass "runbook 4: the README's repoint command ran on the env file: $replica_repoint"
else
    fail "runbook 4: the README's repoint command (sudo sed -i ... /etc/peregrine/peregrine.env) is in the README and runs"
fi
check "the env file now names the promoted standby as the database and no replicas" \
    eval 'grep -q "^PEREGRINE_DATABASE_URL=\"postgresql://peregrine:.*@127.0.0.1:$replica_port/peregrine\"$" "$ROOT$replica_env" &&
          ! grep -q "^PEREGRINE_DATABASE_REPLICA_URLS=\|^PEREGRINE_REPLICA_" "$ROOT$replica_env"'
check "runbook 4: the app restarts on it (systemctl restart peregrine: SIGTERM, then its unit's command) and /readyz = 200 with no replicas" \
    eval 'replica_app_stop && replica_app_start && [ "$(replica_req GET /readyz)" = 200 ] && [ "$(replica_json "d.get(\"replicas\", [])")" = "[]" ]'

# The API keeps answering writes, now on the promoted standby.
replica_seen=$(replica_rename "Renamed after the failover")
check "after the promotion PATCH /v1/products/{id} = 200 and the next read returns it ($replica_seen)" \
    eval '[ "$replica_seen" = "200 Renamed after the failover" ]'
replica_code=$(replica_req POST /v1/products '{"sku":"replica-failover-1","name":"Written after the failover","price":"9.99","stock":3}' \
    -H "Authorization: Bearer $replica_token")
check "after the promotion POST /v1/products = 201 (got $replica_code)" eval '[ "$replica_code" = 201 ]'
replica_code=$(replica_req POST /v1/auth/register "{\"email\":\"after-failover-$RANDOM$RANDOM@example.com\",\"password\":\"deploy-test-password-1\",\"name\":\"After\"}")
check "after the promotion POST /v1/auth/register = 201 (got $replica_code)" eval '[ "$replica_code" = 201 ]'
check "the writes are in the promoted standby's database" \
    eval '[ "$(replica_sql "$replica_port" "select count(*) from products where sku = '"'replica-failover-1'"' or name = '"'Renamed after the failover'"'")" = 2 ]'

# --- put the stack back as it was for the later checks ---------------------------------
replica_app_stop || true
in_ns pg_ctlcluster -m fast "$replica_ver" replica stop >>"$LOGS/replica-runbook.log" 2>&1 || true
cp -p "$WORK/replica-env.orig" "$ROOT$replica_env"
replica_restored=""
if in_ns pg_ctlcluster "$replica_ver" main start >>"$LOGS/replica-runbook.log" 2>&1; then
    # The cache holds what was written on the promoted standby: forget it.
    on_net bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211; printf "flush_all\r\nquit\r\n" >&3; timeout 2 cat <&3' \
        >>"$LOGS/replica-runbook.log" 2>&1 || true
    replica_restored=1
    if [ -n "$replica_app_was_running" ]; then replica_app_start || replica_restored=""; fi
fi
check "the original primary runs again with the original env file (memcached flushed)" \
    eval '[ -n "$replica_restored" ] && [ "$(replica_sql "$replica_primary_port" "select pg_is_in_recovery()")" = f ] &&
          cmp -s "$WORK/replica-env.orig" "$ROOT$replica_env"'
