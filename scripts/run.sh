#!/usr/bin/env bash
# `make run`: start the private Postgres and memcached, migrate, seed a small
# demo catalog, print how to call the API, and serve on PEREGRINE_BIND.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

step() { printf '\n==> %s\n' "$*"; }

step "Starting Postgres and memcached (data in ${PEREGRINE_RUN_DIR:-.run})"
eval "$($PY -m app services up)"
$PY -m app services status

step "Migrating the schema"
$PY -m app migrate

step "Seeding a demo catalog"
$PY -m app seed --products "${PEREGRINE_DEMO_PRODUCTS:-1000}" --users 10

export PEREGRINE_BIND="${PEREGRINE_BIND:-127.0.0.1:8000}"
export PEREGRINE_WORKERS="${PEREGRINE_WORKERS:-2}"
base="http://${PEREGRINE_BIND}"
cat <<MSG

==> Serving on ${base}  (Ctrl-C stops the server; \`make services-down\` stops Postgres and memcached)

  curl -s ${base}/readyz
  curl -s '${base}/v1/products?limit=3'
  open ${base}/docs for the API reference

MSG
exec $PY -m app serve
