#!/usr/bin/env bash
# Create (or refresh) .venv with the project and its dev extras, from PyPI only; no sudo, no manual step.
# Called by the Makefile when .venv is missing or older than pyproject.toml / the pip constraints.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c scripts/pip-constraints.txt torch
.venv/bin/python -m pip install --quiet -c scripts/pip-constraints.txt -e '.[dev]'
touch .venv/.stamp
echo "sparsegate: .venv ready ($(.venv/bin/python --version))"
