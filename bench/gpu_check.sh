#!/usr/bin/env bash
# The prepared GPU check (issue 18): the steps are in bench/gpu_check.py (or run with --help).
#   bench/gpu_check.sh                 # on the GPU machine: its python3 (or $PYTHON), no package index
#   bench/gpu_check.sh --cpu-dry-run   # here: the same steps at tiny sizes on CPU
# Uses python3 with PYTHONPATH=lib (no virtual environment, no `make setup`); missing packages
# come from the wheels in .whl/ (`make gpu-wheels`). The dry run, made for a development
# checkout, uses the project's .venv when there is one and $PYTHON is not set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && [[ " $* " == *" --cpu-dry-run "* ]]; then
    python=.venv/bin/python
fi
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" bench/gpu_check.py "$@"
