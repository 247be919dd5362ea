"""Shared set-up of the workflow scripts (imported by them; not a rule script).

Every script calls :func:`start` first: it makes ``vis4mer`` importable (from the
checkout when the rule's environment does not have the package installed), sends
Python logging, warnings, tqdm bars and anything written to stdout/stderr by
compiled code (FFmpeg, HDF5) to the rule's log file, and returns a logger.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

REPO_LIB = Path(__file__).resolve().parents[2] / "lib"


def _ensure_vis4mer() -> None:
    try:
        import vis4mer  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO_LIB))


def start(snakemake, name: str) -> logging.Logger:
    """Redirect the process's output to ``snakemake.log[0]`` and configure logging."""
    _ensure_vis4mer()
    if snakemake.log:
        log_path = Path(str(snakemake.log[0]))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log_path, "a", buffering=1)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(handle.fileno(), 1)  # compiled code writing to fd 1/2 ends up in the log too
        os.dup2(handle.fileno(), 2)
        sys.stdout = sys.stderr = handle
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)
    logger = logging.getLogger(f"workflow.{name}")
    logger.info("rule %s, wildcards %s", snakemake.rule, dict(snakemake.wildcards))
    return logger


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


def runtime(snakemake) -> dict:
    """Speed-only settings (config 'runtime'): read from the config, not params, so
    changing them never re-runs finished jobs."""
    return snakemake.config["runtime"]


def run_logged(logger: logging.Logger, main) -> None:
    """Run `main()`; log a time-stamped line for a failure (its traceback follows in the log)."""
    try:
        main()
    except Exception as error:
        logger.error("failed: %s: %s", type(error).__name__, error)
        raise
