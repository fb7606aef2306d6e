#!/usr/bin/env bash
# `make dr-test`: a point-in-time restore drill with pgBackRest against a
# private, throw-away Postgres (nothing outside a temporary directory is used).
#
#   initdb -> WAL archiving to an encrypted pgBackRest repository -> full backup
#   -> rows "before" -> restore point -> rows "after" -> restore into a scratch
#   directory at the restore point -> start it on a spare port -> the "before"
#   rows are there and the "after" rows are not -> `pgbackrest verify` passes, and
#   fails once an archived WAL file is damaged.
#
# Each phase prints its duration; the summary gives the RTO measured here
# (restore + start until the cluster accepts writes) and the RPO that
# archive_timeout bounds. Runs as root, with postgres as the service user.
#
# Knobs (for showing the drill can fail, or for digging into a failure):
#   DR_RESTORE_TARGET=name   restore to another restore point (e.g. one that
#                            does not exist: the restored cluster must refuse
#                            to start and the drill must fail)
#   DR_RESTORE_TYPE=default  replay all archived WAL instead (the "after" rows
#                            come back and the drill must fail)
#   DR_KEEP=1                keep the temporary directory and its logs
set -euo pipefail
cd "$(dirname "$0")/.."

STANZA=peregrine
RESTORE_POINT=peregrine-drill
ARCHIVE_TIMEOUT=60
RESTORE_TYPE=${DR_RESTORE_TYPE:-name}
RESTORE_TARGET=${DR_RESTORE_TARGET:-$RESTORE_POINT}
SERVICE_USER=postgres

[ "$(id -u)" -eq 0 ] || { echo "dr-test: run as root (the clusters run as $SERVICE_USER)" >&2; exit 1; }
bash scripts/system-deps.sh pgbackrest=pgbackrest >/dev/null

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/peregrine-dr.XXXXXX)
chown "$SERVICE_USER": "$WORK"
chmod 700 "$WORK"
PRIMARY=$WORK/primary
RESTORED=$WORK/restored
CONF=$WORK/pgbackrest.conf

as_pg() { runuser -u "$SERVICE_USER" -- "$@"; }
pgbr() { as_pg pgbackrest --config="$CONF" --stanza="$STANZA" "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cleanup() {
  local rc=$?
  for data in "$RESTORED" "$PRIMARY"; do
    [ -f "$data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  done
  if [ $rc -ne 0 ]; then
    echo "dr-test: FAILED (rc=$rc); last lines of the logs:" >&2
    tail -n 8 "$WORK"/primary.log "$WORK"/restored.log >&2 2>/dev/null || true
  fi
  if [ "${DR_KEEP:-0}" = 1 ]; then echo "dr-test: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v start="$1" -v end="$(now)" 'BEGIN { print end - start }'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }
phase_start=0
phase() { phase_name=$1; phase_start=$(now); printf '  %-62s' "$phase_name"; }
done_phase() { printf '%6.2f s\n' "$(since "$phase_start")"; }

PRIMARY_PORT=$(free_port)
RESTORED_PORT=$(free_port)
while [ "$RESTORED_PORT" = "$PRIMARY_PORT" ]; do RESTORED_PORT=$(free_port); done
psql_at() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -At -c "$2"; }

echo "==> Restore drill (pgBackRest $(pgbackrest version | awk '{print $2}'), Postgres $("$PG_BIN/postgres" -V | awk '{print $3}'), work dir $WORK)"
drill_start=$(now)

phase "initdb + WAL archiving config"
mkdir -p "$WORK/repo" "$WORK/log" "$WORK/lock" "$WORK/spool" "$WORK/sock"
chown -R "$SERVICE_USER": "$WORK"
# The repository is encrypted as in production; the passphrase only lives as
# long as this directory.
cat >"$CONF" <<EOF
[global]
repo1-path=$WORK/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
repo1-retention-full=2
log-path=$WORK/log
lock-path=$WORK/lock
spool-path=$WORK/spool
log-level-console=warn
log-level-file=info
start-fast=y
# A failing archive_command must not fill the disk: past this much unarchived
# WAL, archive-push drops it (the backups before that point lose PITR, the
# primary keeps running) instead of letting pg_wal grow without bound.
archive-push-queue-max=1GiB

[$STANZA]
pg1-path=$PRIMARY
pg1-port=$PRIMARY_PORT
pg1-socket-path=$WORK/sock
EOF
chown "$SERVICE_USER": "$CONF"
chmod 600 "$CONF"
as_pg "$PG_BIN/initdb" -D "$PRIMARY" -U postgres -A trust --no-sync >"$WORK/initdb.log"
cat >>"$PRIMARY/postgresql.conf" <<EOF
port = $PRIMARY_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/sock'
shared_buffers = 32MB
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --config=$CONF --stanza=$STANZA archive-push %p'
# RPO bound: a quiet primary still ships its current WAL segment this often.
archive_timeout = $ARCHIVE_TIMEOUT
EOF
done_phase

phase "start primary on :$PRIMARY_PORT"
as_pg "$PG_BIN/pg_ctl" -D "$PRIMARY" -l "$WORK/primary.log" -w -t 30 start >/dev/null
done_phase

phase "stanza-create + check (archiving works)"
pgbr stanza-create
pgbr check
done_phase

phase "full backup"
pgbr --type=full backup
done_phase

phase "write rows before the restore point"
psql_at "$PRIMARY_PORT" "CREATE TABLE drill (id int PRIMARY KEY, phase text NOT NULL, written_at timestamptz NOT NULL DEFAULT now());
  INSERT INTO drill (id, phase) SELECT g, 'before' FROM generate_series(1, 1000) g;"
done_phase

phase "pg_create_restore_point('$RESTORE_POINT')"
point_lsn=$(psql_at "$PRIMARY_PORT" "SELECT pg_create_restore_point('$RESTORE_POINT')")
done_phase

phase "write rows after the restore point"
psql_at "$PRIMARY_PORT" "INSERT INTO drill (id, phase) SELECT g, 'after' FROM generate_series(1001, 1500) g;"
done_phase

phase "switch WAL, wait until it is archived"
# Without the switch the segment holding the restore point would only be
# archived after archive_timeout; this is what a real restore would wait for.
switched=$(psql_at "$PRIMARY_PORT" "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 300); do
  archived=$(psql_at "$PRIMARY_PORT" "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
  [[ -n "$archived" && ! "$archived" < "$switched" ]] && break
  sleep 0.1
done
[[ -n "$archived" && ! "$archived" < "$switched" ]] || { echo; echo "dr-test: $switched was not archived (pg_stat_archiver: $archived)" >&2; exit 1; }
failed=$(psql_at "$PRIMARY_PORT" "SELECT failed_count FROM pg_stat_archiver")
[ "$failed" = 0 ] || { echo; echo "dr-test: pg_stat_archiver reports $failed failed archive attempts" >&2; exit 1; }
archive_wait=$(since "$phase_start")
done_phase

restore_args=(--type="$RESTORE_TYPE")
[ "$RESTORE_TYPE" = default ] || restore_args+=(--target="$RESTORE_TARGET" --target-action=promote)
restore_label="--type=$RESTORE_TYPE"
[ "$RESTORE_TYPE" = default ] || restore_label+=" --target=$RESTORE_TARGET"
phase "restore to scratch dir ($restore_label)"
pgbr --pg1-path="$RESTORED" "${restore_args[@]}" restore
restore_took=$(since "$phase_start")
done_phase

phase "start restored cluster on :$RESTORED_PORT"
# The copy must not push WAL into the repository the primary archives to.
if ! as_pg "$PG_BIN/pg_ctl" -D "$RESTORED" -l "$WORK/restored.log" -w -t 60 \
     -o "-p $RESTORED_PORT -c archive_mode=off -c unix_socket_directories=$WORK/sock" start >/dev/null; then
  echo; echo "dr-test: the restored cluster did not start (wrong restore target?)" >&2; exit 1
fi
# Promotion at the target ends recovery; until then it is not a usable primary.
in_recovery=unknown
for _ in $(seq 1 300); do
  # Recovery that cannot reach its target stops the server: no point waiting.
  as_pg "$PG_BIN/pg_ctl" -D "$RESTORED" status >/dev/null 2>&1 || break
  in_recovery=$(psql_at "$RESTORED_PORT" "SELECT pg_is_in_recovery()" 2>/dev/null) || in_recovery=unknown
  [ "$in_recovery" = f ] && break
  sleep 0.1
done
if [ "$in_recovery" != f ]; then
  echo; echo "dr-test: the restored cluster did not finish recovery at the target (pg_is_in_recovery: $in_recovery)" >&2
  grep -E 'FATAL|recovery target' "$WORK/restored.log" >&2 || true
  exit 1
fi
start_took=$(since "$phase_start")
done_phase

phase "check rows: before present, after absent"
counts=$(psql_at "$RESTORED_PORT" "SELECT count(*) FILTER (WHERE phase = 'before') || ' ' || count(*) FILTER (WHERE phase = 'after') FROM drill")
read -r before after <<<"$counts"
if [ "$before" != 1000 ] || [ "$after" != 0 ]; then
  echo; echo "dr-test: restored cluster has $before 'before' rows (want 1000) and $after 'after' rows (want 0)" >&2; exit 1
fi
psql_at "$RESTORED_PORT" "CREATE EXTENSION IF NOT EXISTS amcheck; SELECT bt_index_check('drill_pkey'::regclass)" >/dev/null
psql_at "$RESTORED_PORT" "INSERT INTO drill (id, phase) VALUES (0, 'written after restore')"
done_phase

phase "pgbackrest verify"
pgbr verify
done_phase

phase "verify catches a corrupted WAL file in the repository"
# The drill is only worth something if verify can fail: damage one archived segment of
# this throw-away repository and expect an error.
victim=$(find "$WORK/repo/archive" -type f -name '0000*' | sort | head -n1)
printf 'corrupt' | dd of="$victim" bs=1 seek=64 conv=notrunc status=none
if pgbr verify >"$WORK/verify-corrupt.log" 2>&1; then
  echo; echo "dr-test: pgbackrest verify passed a corrupted repository ($victim)" >&2; exit 1
fi
done_phase

rto=$(add "$restore_took" "$start_took")
total=$(since "$drill_start")
echo "==> Restore drill passed in $(printf '%.1f' "$total") s"
printf '  RTO measured: %.1f s (restore %.1f s + start and replay to the restore point %.1f s) for a %s repository\n' \
  "$rto" "$restore_took" "$start_took" "$(du -sh "$WORK/repo" | cut -f1)"
printf '  RPO: at most archive_timeout = %d s of committed writes (the WAL switch here was archived %.1f s after it was asked for)\n' \
  "$ARCHIVE_TIMEOUT" "$archive_wait"
echo "  restore point '$RESTORE_POINT' at LSN $point_lsn; 1000 rows before it restored, 500 after it absent"
