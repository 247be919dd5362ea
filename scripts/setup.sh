#!/usr/bin/env bash
# Reproducible, idempotent set-up of the project environment:
#   1. system FFmpeg (torchcodec links against it), via apt only when missing;
#   2. .venv with Python >= 3.11;
#   3. torch first (held by requirements/constraints.txt), then the pinned
#      requirements/base.txt, then vis4mer itself (editable, no deps).
# A stamp (.venv/.setup-stamp) records a sha256 of requirements/*.txt and
# pyproject.toml; when it matches, all pip work is skipped.
# Safe to run non-interactively (CI=true, no stdin).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.setup-stamp"
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[setup] %s\n' "$*"; }

# --- 1. FFmpeg ---------------------------------------------------------------
if ! command -v ffmpeg >/dev/null 2>&1; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "[setup] error: ffmpeg is missing and neither root nor sudo is available" >&2
            exit 1
        fi
        SUDO=(sudo -n)  # -n: fail instead of prompting (CI has no stdin)
    fi
    log "ffmpeg not found: installing it with apt-get"
    ${SUDO[@]+"${SUDO[@]}"} apt-get update -q
    ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends ffmpeg
fi

# --- 2. Virtual environment --------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    PYTHON=""
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            PYTHON="$cand"
            break
        fi
    done
    if [ -z "$PYTHON" ]; then
        echo "[setup] error: need python3.11 (or a python3 >= 3.11) on PATH" >&2
        exit 1
    fi
    log "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

# --- 3. Python packages ------------------------------------------------------
want=$(LC_ALL=C sha256sum requirements/*.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    log "set-up is up to date ($VENV matches requirements/*.txt and pyproject.toml)"
    exit 0
fi

PIP=("$VENV/bin/python" -m pip install)
# torch first, on its own: a resolve that sees torch unpinned pulls the CUDA build.
# numpy at base.txt's pin (base.txt itself cannot be a constraints file: it names extras).
numpy_pin=$(grep -E '^numpy==' requirements/base.txt)
log "installing torch and $numpy_pin"
"${PIP[@]}" -c requirements/constraints.txt torch==2.13.0 "$numpy_pin"
log "installing pinned requirements (requirements/base.txt)"
"${PIP[@]}" -c requirements/constraints.txt -r requirements/base.txt
log "installing vis4mer (editable)"
"${PIP[@]}" -e . --no-deps

printf '%s\n' "$want" >"$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
log "done"
