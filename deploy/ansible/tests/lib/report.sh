# Output helpers for the deploy tests: phases with their durations, PASS/FAIL lines and a
# summary. Source it, then call `report_summary` from the EXIT trap.
# shellcheck shell=bash

REPORT_START=$(date +%s.%N)
PHASE="" PHASE_START=""
TIMINGS=() RESULTS=() FAILED=0

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
end_phase() {
    [ -n "$PHASE" ] || return 0
    local took; took=$(elapsed "$PHASE_START")
    TIMINGS+=("$(printf '  %-12s %7ss   (load average %s)' "$PHASE" "$took" "$(cut -d' ' -f1 /proc/loadavg)")")
    printf '    done in %ss\n' "$took"
    PHASE=""
}
phase() {
    end_phase
    PHASE=$1 PHASE_START=$(date +%s.%N)
    printf '\n==> [%6ss] %s: %s\n' "$(elapsed "$REPORT_START")" "$1" "$2"
}
pass() { RESULTS+=("PASS  $1"); printf '    PASS  %s\n' "$1"; }
fail() { RESULTS+=("FAIL  $1"); printf '    FAIL  %s\n' "$1"; FAILED=1; }
check() {  # check "description" command...
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

report_summary() {
    end_phase
    if [ ${#TIMINGS[@]} -gt 0 ]; then
        printf '\n==> Timings (total %ss)\n' "$(elapsed "$REPORT_START")"
        printf '%s\n' "${TIMINGS[@]}"
        # CPU time of the processes this script waited for (Ansible, the tools): unlike the
        # wall-clock times above, it hardly depends on how busy the machine is.
        # `times` in this shell (a pipe or $(...) would run it in a subshell with no children).
        local cpu; cpu=$(mktemp)
        { times; } >"$cpu"
        printf '  CPU (user+sys) of finished child processes: %s\n' "$(awk 'NR == 2 { printf "%s + %s", $1, $2 }' "$cpu")"
        rm -f "$cpu"
        printf '  load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    fi
    if [ ${#RESULTS[@]} -gt 0 ]; then
        printf '\n==> Results\n'
        printf '  %s\n' "${RESULTS[@]}"
    fi
}
