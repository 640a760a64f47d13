#!/usr/bin/env bash
# Creates the virtualenv of the Python peers (bench/requirements.txt, pinned) at $1.
# A Debian python3 without the venv module gets python3-venv installed first.
set -euo pipefail
venv=$1
py=${PYTHON:-python3}
if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "bench: installing python3-venv"
    SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  else
    echo "bench: $py has no venv module" >&2; exit 1
  fi
fi
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$(dirname "$0")/requirements.txt"
