"""Shared set-up of the workflow scripts (imported by them; not a rule script).

Every script calls :func:`start` first: it makes ``vis4mer`` importable (from the
checkout when the rule's environment does not have the package installed), sends
Python logging, warnings, tqdm bars and anything written to stdout/stderr by
compiled code (FFmpeg, HDF5) to the rule's log file, and returns a logger.

GPU jobs (a rule with ``resources: gpu=K``, K > 0) also get their GPU lease there
(:mod:`vis4mer.gpu_lease`): K devices of their own, exported as ``CUDA_VISIBLE_DEVICES``
before anything initialises CUDA, held until the job's process exits. This is the one
place that does it, so every GPU rule's script gets it by calling :func:`start`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

REPO_LIB = Path(__file__).resolve().parents[2] / "lib"

# The job's GPU lease: module-global so its lock descriptors stay open (and the devices
# leased) for the life of the process; the kernel drops the locks when the process ends.
LEASE = None


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
    lease_gpus(snakemake, logger)
    return logger


def gpus_requested(snakemake) -> int:
    """The job's ``gpu`` resource (0 when the rule asks for none)."""
    try:
        return int(getattr(snakemake.resources, "gpu", 0) or 0)
    except (TypeError, ValueError):
        return 0


def lease_gpus(snakemake, logger: logging.Logger):
    """Lease the job's GPUs (config ``runtime.gpus``, ``gpu_lease_dir``, ``gpu_lease_timeout_s``).

    No-op for jobs without a ``gpu`` resource, for ``runtime.device: cpu``, and for an
    explicit ``cuda:N`` (the user pinned the device). Returns the lease (or None).
    """
    global LEASE
    n_gpus = gpus_requested(snakemake)
    if n_gpus <= 0 or LEASE is not None:
        return LEASE
    rt = runtime(snakemake)
    device = str(rt.get("device", "auto"))
    if device == "cpu" or device.startswith("cuda:"):
        logger.info("runtime.device is %s: no GPU lease", device)
        return None
    from vis4mer.gpu_lease import DEFAULT_LEASE_DIR, lease_for_job

    description = f"rule {snakemake.rule} {dict(snakemake.wildcards)}"
    LEASE = lease_for_job(
        n_gpus,
        lease_dir=rt.get("gpu_lease_dir") or DEFAULT_LEASE_DIR,
        configured=rt.get("gpus"),
        timeout_s=rt.get("gpu_lease_timeout_s"),
        description=description,
    )
    if LEASE is not None:
        logger.info("GPU lease: CUDA_VISIBLE_DEVICES=%s (%d device(s))", LEASE.visible_devices, n_gpus)
    return LEASE


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
