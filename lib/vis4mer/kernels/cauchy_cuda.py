"""Loader for the optional CUDA Cauchy extension (sources in ``cuda/cauchy/``).

The extension computes the conjugate-symmetric Cauchy sum of S4 and its fused backward::

    r[k, b, l] = sum_m v[k,b,m] / (z[l] - w[b,m]) + conj(v[k,b,m]) / (z[l] - conj(w[b,m]))

    v: (K, B, M), z: (L,), w: (B, M) complex64 CUDA tensors -> r: (K, B, L)
    1 <= K <= 8, 1 <= M <= 512

It is built just in time with ``torch.utils.cpp_extension.load`` on first use and cached in
``$VIS4MER_EXT_DIR`` or ``~/.cache/vis4mer/ext/<torch version>-<cuda version>-<source hash>``,
so a change to the sources (or flags) builds into a new directory. ``make cuda`` runs
``python -m vis4mer.kernels.cauchy_cuda --build`` to build it ahead of time.

With ``$VIS4MER_EXT_NO_BUILD`` set (to anything but empty), ``load()`` only loads a cached
build and never compiles: a caller whose build already failed (``bench/gpu_check.py``) sets
it so that each benchmark process falls back at once instead of retrying the compile.

``load()`` never raises: without a GPU, with a CPU build of torch or when the build fails it
returns ``(None, reason)``, and the caller (the autograd Function in ``cauchy.py``) falls back
to another backend. ``forward`` / ``backward`` are thin wrappers over the compiled functions.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import torch

from vis4mer._logging import logger

EXT_NAME = "vis4mer_cauchy"

# One source of truth: the repository's cuda/cauchy/ (lib/vis4mer/kernels/ -> repo root).
SOURCE_DIR = Path(__file__).resolve().parents[3] / "cuda" / "cauchy"
SOURCES = ("cauchy_kernel.cu", "cauchy_binding.cpp")  # compiled
HEADERS = ("cauchy_kernel.h", "cauchy_math.cuh")  # included; part of the source hash

# No --use_fast_math: the kernels call the approximate reciprocal explicitly (1 ulp) where it
# pays, everything else stays IEEE; accuracy target is 1e-5 relative vs float64.
EXTRA_CFLAGS = ["-O3"]
EXTRA_CUDA_CFLAGS = ["-O3"]

REASON_NO_DEVICE = "no CUDA device visible"
REASON_CPU_TORCH = "torch is a CPU build (torch.version.cuda is None)"
REASON_NOT_BUILT = "not built (run `make cuda`)"
NO_BUILD_ENV = "VIS4MER_EXT_NO_BUILD"

# (module, reason) once final; "not built" is not memoized, so a later load() may build.
_result: tuple[ModuleType | None, str] | None = None
# Full compiler output of the last failed build (for `--build` to print).
_last_build_log: str = ""


def source_paths() -> list[Path]:
    """The files the extension is built from (compiled sources, then headers)."""
    return [SOURCE_DIR / name for name in (*SOURCES, *HEADERS)]


def source_hash() -> str:
    """Short hash of the source files' contents and the compile flags."""
    h = hashlib.sha256()
    for path in source_paths():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(repr((EXTRA_CFLAGS, EXTRA_CUDA_CFLAGS)).encode())
    return h.hexdigest()[:12]


def build_directory() -> Path:
    """Where the extension is (or would be) built: ``$VIS4MER_EXT_DIR`` if set, else
    ``~/.cache/vis4mer/ext/<torch version>-<cuda version>-<source hash>``."""
    override = os.environ.get("VIS4MER_EXT_DIR")
    if override:
        return Path(override).expanduser()
    tag = f"{torch.__version__}-{torch.version.cuda}-{source_hash()}"
    return Path.home() / ".cache" / "vis4mer" / "ext" / tag


def _has_built_library(directory: Path) -> bool:
    # torch names the library <name>.so, or <name>_v<N>.so after an in-process rebuild.
    return directory.is_dir() and any(
        p.suffix in (".so", ".pyd") for p in directory.glob(f"{EXT_NAME}*")
    )


# "error:" (gcc, clang, nvcc), "fatal error:", "error C2065:" (MSVC), "error LNK2019:".
_COMPILER_ERROR = re.compile(r"\berror\b(?:\s+[A-Z]+\d+)?\s*:", re.IGNORECASE)
# torch's wrapper line around the ninja output: "Error building extension 'x': [1/3] ..."
_TORCH_PREFIX = re.compile(r"^Error building extension '[^']*':?\s*")


def first_error_line(text: str, limit: int = 300) -> str:
    """The most informative single line of a build failure.

    Prefers the first compiler diagnostic (``...: error: ...``), then any line mentioning
    "error" other than torch's own "Error building extension" wrapper, then the first line.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    stripped = [_TORCH_PREFIX.sub("", ln) for ln in lines]
    candidates = (
        [ln for ln in stripped if _COMPILER_ERROR.search(ln)]
        or [ln for ln, raw in zip(stripped, lines) if "error" in ln.lower() and ln == raw]
        or [lines[0]]
    )
    line = candidates[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _build(directory: Path, *, verbose: bool = False) -> ModuleType:
    from torch.utils import cpp_extension  # heavy-ish import, only when building

    directory.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=EXT_NAME,
        sources=[str(SOURCE_DIR / name) for name in SOURCES],
        extra_cflags=EXTRA_CFLAGS,
        extra_cuda_cflags=EXTRA_CUDA_CFLAGS,
        build_directory=str(directory),
        verbose=verbose,
    )


def _load_uncached(build_if_missing: bool, verbose: bool) -> tuple[tuple[ModuleType | None, str], bool]:
    """((module or None, reason), whether the outcome is final for this process)."""
    global _last_build_log
    if not torch.cuda.is_available():
        return (None, REASON_NO_DEVICE), True
    if torch.version.cuda is None:
        if getattr(torch.version, "hip", None):
            return (None, "torch is a ROCm build (torch.version.cuda is None)"), True
        return (None, REASON_CPU_TORCH), True
    missing = [str(p) for p in source_paths() if not p.is_file()]
    if missing:
        return (None, f"CUDA sources not found: {', '.join(missing)} (needs a source checkout)"), True
    directory = build_directory()
    if (not build_if_missing or os.environ.get(NO_BUILD_ENV)) and not _has_built_library(directory):
        return (None, REASON_NOT_BUILT), False
    try:
        # With a library already there, ninja finds it up to date and this only imports it.
        module = _build(directory, verbose=verbose)
    except Exception as exc:  # compiler errors, missing ninja / CUDA_HOME, import errors
        _last_build_log = f"{type(exc).__name__}: {exc}"
        logger.debug("building %s in %s failed:\n%s", EXT_NAME, directory, _last_build_log)
        return (None, f"build failed: {first_error_line(str(exc) or type(exc).__name__)}"), True
    return (module, f"loaded from {directory}"), True


def load(build_if_missing: bool = True, *, verbose: bool = False) -> tuple[ModuleType | None, str]:
    """The compiled extension, or None and a human-readable reason. Never raises.

    Memoized per process (except "not built", so that a later call may still build).
    ``build_if_missing=False`` only loads a cached build (checking it is up to date).
    """
    global _result
    if _result is not None:
        return _result
    try:
        result, final = _load_uncached(build_if_missing, verbose)
    except Exception as exc:  # anything unforeseen must not break the caller's fallback
        result, final = (None, f"unexpected error while loading: {type(exc).__name__}: {exc}"), True
    if final:
        _result = result
    return result


def _module() -> ModuleType:
    module, reason = load()
    if module is None:
        raise RuntimeError(f"vis4mer CUDA Cauchy extension unavailable: {reason}")
    return module


def forward(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """r (K, B, L) from v (K, B, M), z (L,), w (B, M); complex64 CUDA tensors."""
    return _module().forward(v, z, w)


def backward(
    g: torch.Tensor, v: torch.Tensor, z: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_v (K, B, M), grad_w (B, M)) from g = dLoss/d conj(r) (K, B, L) and the inputs."""
    return _module().backward(g, v, z, w)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vis4mer.kernels.cauchy_cuda",
        description="Build (or report on) the vis4mer CUDA Cauchy extension.",
    )
    parser.add_argument(
        "--build", action="store_true", help="build it now (cached; rebuilt when sources change)"
    )
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands")
    args = parser.parse_args(argv)

    if not args.build:
        module, reason = load(build_if_missing=False)
        print(f"{EXT_NAME}: {'available' if module is not None else 'unavailable'}: {reason}")
        return 0 if module is not None else 1

    if torch.cuda.is_available() and torch.version.cuda is not None:
        print(f"building {EXT_NAME} in {build_directory()} ...", flush=True)
    module, reason = load(build_if_missing=True, verbose=args.verbose)
    if module is None:
        print(f"{EXT_NAME} was not built: {reason}", file=sys.stderr)
        if _last_build_log:
            print(_last_build_log, file=sys.stderr)
        return 1
    print(f"{EXT_NAME} built: {reason}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
