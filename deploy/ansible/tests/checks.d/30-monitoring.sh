# shellcheck shell=bash
# Monitoring: the exporters, Prometheus, Alertmanager and the blackbox exporter the
# monitoring role configured, started as their units would (User=prometheus, the ARGS of
# /etc/default/<package>). A request through nginx becomes a labelled Prometheus series,
# the API-down alert fires when the app stops and resolves when it is back, and the
# dashboard renders with data in headless Chromium (screenshot in the logs directory).
phase monitoring "exporters, Prometheus, alerts, dashboards"

mon_start() {  # mon_start PACKAGE: /usr/bin/PACKAGE $ARGS as prometheus, env from /etc/default/PACKAGE
    in_ns /bin/sh -c 'set -a; . "/etc/default/$0"; set +a; exec runuser -u prometheus -- "/usr/bin/$0" $ARGS' "$1" \
        >"$LOGS/$1.log" 2>&1 &
}
mon_get() { on_net curl -s --max-time 5 "$@"; }
mon_prom() { mon_get "http://127.0.0.1:9090$1"; }
mon_query() {  # mon_query PROMQL -> the first result's value, or nothing
    on_net curl -s --max-time 5 --get --data-urlencode "query=$1" http://127.0.0.1:9090/api/v1/query |
        /usr/bin/python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
}
mon_wait() {  # mon_wait SECONDS COMMAND...  (until it succeeds)
    local tries=$(( $1 * 2 )) _; shift
    for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.5; done
    return 1
}
mon_alert_state() {  # mon_alert_state ALERTNAME -> firing / pending / nothing, from Prometheus
    mon_prom /api/v1/alerts | /usr/bin/python3 -c '
import json, sys
alerts = [a for a in json.load(sys.stdin)["data"]["alerts"] if a["labels"]["alertname"] == sys.argv[1]]
print(alerts[0]["state"] if alerts else "")' "$1" 2>/dev/null
}
mon_unit_get() { sed -n "s/^$1=//p" "$ROOT/etc/systemd/system/peregrine.service" | head -n1; }
mon_app_start() {  # the app, from its unit file (as the services phase starts it)
    in_ns install -d -o "$(mon_unit_get User)" -g "$(mon_unit_get Group)" -m "$(mon_unit_get RuntimeDirectoryMode)" /run/peregrine
    in_ns /bin/sh -c "umask $(mon_unit_get UMask); set -a; . '$(mon_unit_get EnvironmentFile)'; set +a;
        cd '$(mon_unit_get WorkingDirectory)' && exec runuser -u '$(mon_unit_get User)' -- $(mon_unit_get ExecStart)" \
        >>"$LOGS/monitoring-app.log" 2>&1 &
    mon_wait 60 eval '[ "$(on_net curl -sk -o /dev/null -w "%{http_code}" --max-time 2 https://127.0.0.1/readyz)" = 200 ]'
}
mon_app_stop() {  # SIGTERM to the gunicorn master, as systemd stops the unit
    local pid; pid=$(in_ns pgrep -o -f gunicorn || true)
    [ -n "$pid" ] || return 0
    in_ns kill -TERM "$pid"
    mon_wait 35 eval '! in_ns kill -0 "$pid" 2>/dev/null'
}

for pkg in prometheus-node-exporter prometheus-postgres-exporter prometheus-nginx-exporter \
           prometheus-blackbox-exporter prometheus-alertmanager prometheus; do
    mon_start "$pkg"
done
in_ns pgrep -f gunicorn >/dev/null 2>&1 || mon_app_start || fail "the app starts again for the monitoring checks"

check "Prometheus and Alertmanager are ready, and promtool accepts the deployed configuration and rules" \
    eval 'mon_wait 30 eval "mon_prom /-/ready | grep -q Ready" &&
          mon_wait 30 eval "mon_get http://127.0.0.1:9093/-/ready | grep -qi ok" &&
          in_ns promtool check config /etc/prometheus/prometheus.yml >"$LOGS/promtool-check.log" 2>&1'
# grep -c, not -q, after a pipe from curl: -q exits at the first match and curl, still
# writing a large exposition, fails with a broken pipe, which pipefail reports.
check "collectd serves write_prometheus on 127.0.0.1:9103 (libmicrohttpd and libprotobuf-c present)" \
    eval 'mon_get http://127.0.0.1:9103/metrics | grep -c "^collectd_" >/dev/null'
check "node-exporter exposes the backup role's textfile metrics (drill last success)" \
    eval 'mon_wait 20 eval "mon_get http://127.0.0.1:9100/metrics | grep -c ^peregrine_backup_drill_last_success_timestamp_seconds >/dev/null"'
mon_wait 20 eval 'mon_get http://127.0.0.1:9187/metrics >"$WORK/pg-exporter.txt" && grep -qx "pg_up 1" "$WORK/pg-exporter.txt"' || true
check "postgres-exporter reads the primary as role prometheus (pg_up 1, pg_stat_archiver, the replication lag query)" \
    eval 'grep -qx "pg_up 1" "$WORK/pg-exporter.txt" && grep -q "^pg_stat_archiver_failed_count" "$WORK/pg-exporter.txt" &&
          grep -q "^peregrine_replication_lag_seconds" "$WORK/pg-exporter.txt"'
check "the nginx exporter reads stub_status on loopback (nginx_up 1), which is not served publicly" \
    eval 'mon_wait 20 eval "mon_get http://127.0.0.1:9113/metrics | grep -c \"^nginx_up 1\" >/dev/null" &&
          [ "$(on_net curl -sk -o /dev/null -w "%{http_code}" --max-time 5 https://127.0.0.1/stub_status)" != 200 ]'

mon_targets() {  # "job=health ..." for every active target
    mon_prom /api/v1/targets | /usr/bin/python3 -c '
import json, sys
print(" ".join(sorted(t["labels"]["job"] + "=" + t["health"] for t in json.load(sys.stdin)["data"]["activeTargets"])))' 2>/dev/null
}
# Prometheus lists no target for its first seconds (discovery's initial delay), then
# "unknown" until each one's first scrape.
mon_wait 40 eval 'mon_targets | grep -q "=" && ! mon_targets | grep -qE "=(down|unknown)"' || true
targets=$(mon_targets)
check "every scrape target from the inventory is up ($targets)" \
    eval '[ "$targets" = "alertmanager=up nginx=up node=up peregrine-readyz=up peregrine=up postgres=up prometheus=up" ]'
rules=$(mon_prom /api/v1/rules | /usr/bin/python3 -c '
import json, sys
print(sum(r["type"] == "alerting" for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]))' 2>/dev/null || true)
check "Prometheus loaded the alert rules ($rules alerting rules)" eval '[ "${rules:-0}" -ge 13 ]'

# A request through nginx -> the app's statsd counter -> collectd -> a labelled series.
for _ in 1 2 3; do on_net curl -sk -o /dev/null --max-time 5 https://127.0.0.1/v1/categories; done
series='peregrine_http_requests_total{route="v1.categories", method="get", status="200"}'
mon_wait 45 eval '[ -n "$(mon_query "$series")" ]' || true
seen=$(mon_query "$series")
check "requests through nginx are the series $series (value ${seen:-none})" eval '[ "${seen%.*}" -ge 3 ] 2>/dev/null'
buckets=$(mon_query 'count(peregrine_http_request_duration_ms_bucket{route="v1.categories", method="get"})')
p99=$(mon_query 'histogram_quantile(0.99, sum by (le) (peregrine_http_request_duration_ms_bucket{route="v1.categories"}))')
check "its latency is a histogram with an le label per bucket ($buckets buckets, p99 ${p99:-none} ms)" \
    eval '[ "${buckets:-0}" -ge 2 ] && [ -n "$p99" ] && [ "$p99" != NaN ]'
check "the per-route labels replace the statsd name (no series named after a route)" \
    eval '[ -z "$(mon_query "count({__name__=~\".*categories.*\"})")" ] &&
          [ -z "$(mon_query "count(peregrine_http_requests_total{statsd!=\"\"})")" ]'

# The API-down alert: the app stops, the /readyz probe fails for the rule's `for:` (1m),
# the alert fires and reaches Alertmanager; the app comes back and it resolves.
if mon_app_stop; then
    t0=$(date +%s)
    mon_wait 150 eval '[ "$(mon_alert_state PeregrineApiDown)" = firing ]' || true
    state=$(mon_alert_state PeregrineApiDown)
    check "with the app stopped PeregrineApiDown fires (state ${state:-none} after $(( $(date +%s) - t0 )) s)" \
        eval '[ "$state" = firing ]'
    check "Alertmanager received it" \
        eval 'mon_wait 30 eval "mon_get http://127.0.0.1:9093/api/v2/alerts | grep -c PeregrineApiDown >/dev/null"'
else
    fail "stop the app (SIGTERM to the gunicorn master)"
fi
if mon_app_start; then
    t0=$(date +%s)
    mon_wait 60 eval '[ -z "$(mon_alert_state PeregrineApiDown)" ]' || true
    state=$(mon_alert_state PeregrineApiDown)
    check "with the app back PeregrineApiDown resolves (state ${state:-resolved} after $(( $(date +%s) - t0 )) s)" \
        eval '[ -z "$state" ]'
else
    fail "the app starts again after the alert"
fi

# The dashboard: served by Prometheus from the role's console templates, rendered by a
# real browser. Traffic first, so the per-route table has rows.
for _ in $(seq 20); do on_net curl -sk -o /dev/null --max-time 5 https://127.0.0.1/v1/categories; done
mon_wait 30 eval '[ -n "$(mon_query "sum(rate(peregrine_http_requests_total{route=\"v1.categories\"}[5m])) > 0")" ]' || true
console=http://127.0.0.1:9090/consoles/peregrine.html
pages=""
for page in index.html peregrine.html peregrine-health.html peregrine-db.html; do
    pages+="$page=$(mon_get -o "$WORK/console-$page" -w '%{http_code}' "http://127.0.0.1:9090/consoles/$page") "
done
check "every console page renders on the server ($pages)" \
    eval '[ "$pages" = "index.html=200 peregrine.html=200 peregrine-health.html=200 peregrine-db.html=200 " ] &&
          ! grep -l "error executing template" "$WORK"/console-*.html'
chrome=$(command -v chromium || command -v chromium-browser || true)
chrome_args=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars
             --window-size=1280,1600 --virtual-time-budget=8000 --user-data-dir="$WORK/chromium-profile")
if [ -n "$chrome" ]; then
    on_net "$chrome" "${chrome_args[@]}" --screenshot="$LOGS/monitoring-dashboard.png" "$console" \
        >"$LOGS/chromium.log" 2>&1 || true
    on_net "$chrome" "${chrome_args[@]}" --dump-dom "$console" >"$WORK/dashboard-dom.html" 2>>"$LOGS/chromium.log" || true
    cat >"$WORK/png-stats.py" <<'PY'
# png-stats.py FILE -> "WIDTHxHEIGHT COLOURS SHARE": distinct colours and the share of
# pixels that differ from the most common one (a blank page: 1 colour, share 0).
import collections, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat = 8, b""
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
assert depth == 8 and colour in (2, 6), (depth, colour)
bpp = 3 if colour == 2 else 4
raw, stride = zlib.decompress(idat), width * bpp
prev, counts = bytearray(stride), collections.Counter()
for y in range(height):
    kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if kind == 1: line[i] = (line[i] + a) & 255
        elif kind == 2: line[i] = (line[i] + b) & 255
        elif kind == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif kind == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    counts.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp))
    prev = line
print(f"{width}x{height} {len(counts)} {1 - counts.most_common(1)[0][1] / (width * height):.3f}")
PY
    png=$(/usr/bin/python3 "$WORK/png-stats.py" "$LOGS/monitoring-dashboard.png" 2>>"$LOGS/chromium.log" || true)
    read -r png_size png_colours png_share <<<"${png:-? 0 0}"
    check "headless Chromium screenshots the dashboard, not blank ($png_size, $png_colours colours, ${png_share} of pixels off the background): $LOGS/monitoring-dashboard.png" \
        eval '[ "$png_colours" -ge 50 ] && awk -v s="$png_share" "BEGIN { exit !(s >= 0.02) }"'
    # The rendered page: the per-route table row for v1.categories with its request rate.
    row=$(/usr/bin/python3 -c '
import html, re, sys
dom = open(sys.argv[1]).read()
for row in re.findall(r"<tr>(.*?)</tr>", dom, re.S):
    cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    if cells[:2] == ["v1.categories", "get"]:
        print(" ".join(cells))' "$WORK/dashboard-dom.html" 2>/dev/null || true)
    graphs=$(grep -c '<svg' "$WORK/dashboard-dom.html" 2>/dev/null || true)
    check "the rendered dashboard shows v1.categories with a request rate ($row) and draws its request graph (${graphs:-0} svg)" \
        eval '[[ "$row" =~ ^v1\.categories\ get\ [0-9]+\.[0-9]+ ]] && ! [[ "$row" =~ ^v1\.categories\ get\ 0\.00\  ]] &&
              [ "${graphs:-0}" -ge 1 ]'
else
    fail "chromium is installed on the host (apt-get install chromium) for the dashboard screenshot"
fi

# Leave the stack as the later phases expect it: app stopped, monitoring daemons gone
# (those started above: every process of the prometheus user in the test's namespace).
mon_app_stop || true
for pid in $(in_ns pgrep -u prometheus 2>/dev/null); do in_ns kill "$pid" 2>/dev/null || true; done
