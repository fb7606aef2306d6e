#!/usr/bin/env bash
# Install the Debian/Ubuntu packages Peregrine needs, and only those missing.
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

missing=()
have_pg_tool() { command -v "$1" >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null; }

have_pg_tool initdb && have_pg_tool pg_ctl || missing+=(postgresql)
command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || missing+=(memcached)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v curl >/dev/null 2>&1 || missing+=(curl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
python3 - <<'PY' >/dev/null 2>&1 || missing+=(python3-dev)
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
[ -e /usr/include/openssl/hmac.h ] || missing+=(libssl-dev)
# The suite runs the deployed nginx configuration in front of the app.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# Extra tools a target needs, given as command=package (e.g. wrk=wrk for benchmarks).
for wanted in "$@"; do
  command -v "${wanted%%=*}" >/dev/null 2>&1 || missing+=("${wanted#*=}")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

echo "system packages: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The packaged services are not needed (Peregrine and its tests start private
# instances), and a system nginx would take port 80: keep maintainer scripts
# from starting anything while we install (policy-rc.d, as container images do).
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now memcached nginx >/dev/null 2>&1 || true
fi
echo "system packages: done"
