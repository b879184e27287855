#!/usr/bin/env bash
# make demo / make demo-down. See scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${CERNIQ_VENV:-.venv}/bin/python" scripts/demo.py "$@"
