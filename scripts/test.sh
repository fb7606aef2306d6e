#!/usr/bin/env bash
# `make test`: first lint (ruff, mypy) and the unit stage (tests/unit: no
# Postgres, memcached or network), seconds each, so a broken change fails
# before any server starts; then the whole suite (unit tests included) twice,
# with the compiled hot path and with the extensions disabled, against real
# Postgres and memcached that the test harness starts on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "==> Lint: ruff and mypy"
make --no-print-directory lint

echo "==> Unit stage: no services"
# The hypothesis and anyio plugins cost more start-up CPU than the whole stage
# spends testing, and no unit test uses them.
$PY -m pytest tests/unit -m unit -q -p no:hypothesispytest -p no:anyio

echo "==> Test suite with the compiled extensions"
$PY -m pytest ${PYTEST_ARGS:-}

echo "==> Test suite with PEREGRINE_NO_EXTENSIONS=1 (pure-Python twins)"
PEREGRINE_NO_EXTENSIONS=1 $PY -m pytest ${PYTEST_ARGS:-}
