#!/usr/bin/env bash
# `make run`: start the private Postgres and memcached, migrate, seed a small
# demo catalog, print how to call the API, and serve on PEREGRINE_BIND.
# Each step stops the script at its first failure, with the cause on screen.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PEREGRINE_PYTHON:-.venv/bin/python}

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nmake run: %s\n' "$*" >&2; exit 1; }
# Ctrl-C before the server starts: one line, not a traceback per step.
trap 'printf "\nmake run: interrupted\n" >&2; exit 130' INT

step "Starting Postgres and memcached (run directory ${PEREGRINE_RUN_DIR:-.run})"
# Not `eval "$(...)"` alone: that would hide a failed `services up` and go on
# to migrate with no database.
exports=$($PY -m app services up) || fail "could not start Postgres and memcached (see above)"
eval "$exports"
$PY -m app services status

step "Migrating the schema"
$PY -m app migrate || fail "migration failed (see above)"

step "Seeding a demo catalog"
$PY -m app seed --products "${PEREGRINE_DEMO_PRODUCTS:-1000}" --users 10 \
  || fail "seeding failed (see above)"

export PEREGRINE_BIND="${PEREGRINE_BIND:-127.0.0.1:8000}"
export PEREGRINE_WORKERS="${PEREGRINE_WORKERS:-2}"
base="http://${PEREGRINE_BIND}"
cat <<MSG

==> Serving on ${base}  (Ctrl-C stops the server; \`make services-down\` stops Postgres and memcached)

  curl -s ${base}/readyz
  curl -s '${base}/v1/products?limit=3'
  open ${base}/docs for the API reference

  Mail (email verification, password reset) is caught in ${PEREGRINE_RUN_DIR:-.run}/mail/
  as .eml files, once the delivery worker sends it; in another shell:
  eval "\$($PY -m app services env)" && $PY -m app deliver

MSG
trap - INT
exec $PY -m app serve
