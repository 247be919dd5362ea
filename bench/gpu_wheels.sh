#!/usr/bin/env bash
# `make gpu-wheels`: the wheels bench/gpu_check.sh installs on a GPU machine that has no package
# index (its python3 3.12 already holds torch, triton, timm, h5py, scipy, ...; pykeops and
# keopscore are missing). They go to .whl/ (ignored by git), which travels with the working tree.
# pykeops and keopscore are published as sdists only: built here into wheels (pure Python, so
# one wheel serves cp312 manylinux x86-64 too) with `pip wheel --no-deps`, at the versions
# requirements/base.txt pins. Their other requirements (numpy, pybind11) are on that machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${GPU_WHEELS_DIR:-.whl}
mkdir -p "$OUT"
for name in pykeops keopscore; do
    pin=$(grep -E "^${name}==" requirements/base.txt) || { echo "no pin of $name in requirements/base.txt" >&2; exit 1; }
    rm -f "$OUT/${name}"-*.whl  # one version of each: two would stop the install there
    "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$OUT" "$pin"
done
for wheel in "$OUT"/*.whl; do
    case "$(basename "$wheel")" in
        *-py3-none-any.whl | *-cp312-*manylinux*x86_64.whl) ;;
        *) echo "$wheel cannot be installed by python 3.12 on x86-64 Linux" >&2; exit 1 ;;
    esac
done
du -ch "$OUT"/*.whl | tail -1 | sed "s|total|in $OUT (the device tool carries at most 64 MiB)|"
