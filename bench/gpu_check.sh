#!/usr/bin/env bash
# The prepared GPU check (issue 18): see bench/gpu_check.py for the steps, or run with --help.
#   bench/gpu_check.sh                 # on the GPU machine: its python3 (or $PYTHON), no package index
#   bench/gpu_check.sh --cpu-dry-run   # here: the same steps at tiny sizes on CPU
# Uses the system python3 with PYTHONPATH=lib (no virtual environment, no `make setup`);
# missing packages come from the wheels in .whl/ (`make gpu-wheels`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
