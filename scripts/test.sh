#!/usr/bin/env bash
# `make test`: the whole suite twice, with the compiled hot path and with the
# extensions disabled, against real Postgres and memcached that the test
# harness starts on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "==> Test suite with the compiled extensions"
$PY -m pytest ${PYTEST_ARGS:-}

echo "==> Test suite with PEREGRINE_NO_EXTENSIONS=1 (pure-Python twins)"
PEREGRINE_NO_EXTENSIONS=1 $PY -m pytest ${PYTEST_ARGS:-}
