#!/usr/bin/env bash
# `make test`: first lint (ruff, mypy) and the unit stage (tests/unit: no
# Postgres, memcached or network), seconds each, so a broken change fails
# before any server starts; then the whole suite (unit tests included) twice,
# with the compiled hot path and with the extensions disabled, against real
# Postgres and memcached that the test harness starts on free ports.
#
# The two builds run side by side: each pytest session starts its own
# services on free ports and spends most of its time waiting on them, so on
# two cores both finish in little more than the time of one (measured: 10 min
# 56 s wall for the whole target against ~26 min one after the other).
# PEREGRINE_TEST_SERIAL=1, or a one-core machine, runs them one after the other.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "==> Lint: ruff and mypy"
make --no-print-directory lint

echo "==> Unit stage: no services"
# The hypothesis and anyio plugins cost more start-up CPU than the whole stage
# spends testing, and no unit test uses them.
$PY -m pytest tests/unit -m unit -q -p no:hypothesispytest -p no:anyio

compiled() { $PY -m pytest ${PYTEST_ARGS:-} "$@"; }
# The pure run leaves pytest's cache to the compiled one: two sessions
# writing .pytest_cache at once could leave it torn.
pure() { PEREGRINE_NO_EXTENSIONS=1 $PY -m pytest -p no:cacheprovider ${PYTEST_ARGS:-} "$@"; }

if [ "${PEREGRINE_TEST_SERIAL:-0}" = 1 ] || [ "$(nproc)" -lt 2 ]; then
  echo "==> Test suite with the compiled extensions"
  compiled
  echo "==> Test suite with PEREGRINE_NO_EXTENSIONS=1 (pure-Python twins)"
  pure
  exit 0
fi

logs=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$logs"' EXIT
echo "==> Test suite, compiled and with PEREGRINE_NO_EXTENSIONS=1, side by side"
compiled > "$logs/compiled.log" 2>&1 &
compiled_pid=$!
pure > "$logs/pure.log" 2>&1 &
pure_pid=$!

# pytest ends each line of dots with "[ NN%]": the last one is how far a build is.
progress() { grep -o '\[ *[0-9]*%\]' "$logs/$1.log" | tail -n 1 | tr -d '[] ' || true; }
# A line a minute, so a long run shows it is alive and how far each build is.
started=$SECONDS
next_line=$((started + 60))
while kill -0 "$compiled_pid" 2>/dev/null || kill -0 "$pure_pid" 2>/dev/null; do
  sleep 5
  if (( SECONDS >= next_line )); then
    echo "    $(( (SECONDS - started) / 60 )) min: compiled $(progress compiled), pure $(progress pure)"
    next_line=$((next_line + 60))
  fi
done

status=0
wait "$compiled_pid" || status=1
compiled_status=$status
wait "$pure_pid" || status=1
echo "==> Test suite with the compiled extensions"
cat "$logs/compiled.log"
echo "==> Test suite with PEREGRINE_NO_EXTENSIONS=1 (pure-Python twins)"
cat "$logs/pure.log"
[ "$compiled_status" = 0 ] || echo "the compiled suite failed (log above)" >&2
[ "$status" = 0 ] || [ "$compiled_status" != 0 ] || echo "the pure-Python suite failed (log above)" >&2
exit "$status"
