# One traceparent sent by a client, followed through nginx, the app and PostgreSQL.
phase tracing "a client's traceparent in nginx's log, the app's log, the answer and pg_stat_activity"

# The checks phase ended with a graceful stop: start the app again from its unit's
# command, as the services phase did, with its own log.
if [ "$(req GET /readyz)" != 200 ]; then
    in_ns install -d -o "$app_user" -g "$(unit_get Group)" -m "$(unit_get RuntimeDirectoryMode)" /run/peregrine
    in_ns /bin/sh -c "umask $app_umask; set -a; . '$app_env'; set +a; cd '$app_wd' && exec runuser -u '$app_user' -- $app_exec" \
        >"$LOGS/tracing-app.log" 2>&1 &
    for _ in $(seq 60); do [ "$(req GET /readyz)" = 200 ] && break; sleep 1; done
fi
check "the app answers /readyz through nginx for the tracing checks" eval '[ "$(req GET /readyz)" = 200 ]'

trace=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
client_tp="00-$trace-00f067aa0ba902b7-01"

code=$(req POST /v1/auth/login "{\"email\":\"$email\",\"password\":\"deploy-test-password-1\"}")
trace_token=$(json 'd["access_token"]' || true)
code=$(req GET /v1/users/me "" ${trace_token:+-H "Authorization: Bearer $trace_token"} -H "traceparent: $client_tp")
check "GET /v1/users/me with the client's traceparent = 200, answered in the same trace (got $code)" \
    eval '[ "$code" = 200 ] && grep -qi "^traceparent: 00-$trace-[0-9a-f]\{16\}-01" "$WORK/headers"'

code=$(req GET /v1/products/not-a-product-id "" -H "traceparent: $client_tp")
check "an error envelope carries the trace id next to request_id (got $code)" \
    eval '[ "$(json "d[\"trace_id\"]")" = "$trace" ] && [ -n "$(json "d[\"request_id\"]")" ]'

trace_wait() {  # trace_wait SECONDS command...: until it succeeds
    local tries=$(( $1 * 2 )) _; shift
    for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.5; done
    return 1
}
# The slow-query log leads back to the request: the role logs statements over 500 ms;
# with the threshold at 0 for a moment, /me's primary-key query is logged with the
# traceparent comment the app puts in front of every statement.
pg_logs="$ROOT/var/log/postgresql/postgresql-$PG_MAJOR-main.log"
slow_trace=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
in_ns runuser -u postgres -- psql -XAtq -c "alter system set log_min_duration_statement = 0" \
    -c "select pg_reload_conf()" >/dev/null || fail "log_min_duration_statement lowered for the check"
sleep 1
req GET /v1/users/me "" ${trace_token:+-H "Authorization: Bearer $trace_token"} \
    -H "traceparent: 00-$slow_trace-00f067aa0ba902b7-01" >/dev/null
check "PostgreSQL's statement log shows the request's query with its trace id" \
    trace_wait 10 eval 'grep -q "traceparent=.00-$slow_trace-" "$pg_logs"'
in_ns runuser -u postgres -- psql -XAtq -c "alter system reset log_min_duration_statement" \
    -c "select pg_reload_conf()" >/dev/null || fail "log_min_duration_statement put back"

# The app buffers its lines and flushes them about once a second.
check "the app's request lines for both requests carry the trace id" \
    trace_wait 10 eval '[ "$(cat "$LOGS"/app.log "$LOGS"/tracing-app.log 2>/dev/null | grep -c "\"trace_id\":\"$trace\"")" -ge 2 ]'
# nginx buffers its access log (buffer=64k flush=5s): reopening the logs flushes it.
in_ns nginx -s reopen 2>/dev/null || true
check "nginx's access log has the client's traceparent and the app's answer in that trace" \
    trace_wait 10 eval 'grep -q "tp=\"$client_tp\" atp=\"00-$trace-" "$ROOT/var/log/nginx/access.log"'
