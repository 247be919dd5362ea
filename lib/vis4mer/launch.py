"""Launching a training run on K processes with torchrun (DistributedDataParallel).

:func:`train_with_torchrun` writes the run's :func:`vis4mer.training.train_model` arguments
as JSON (:func:`write_spec`), starts ``torchrun --standalone --nproc-per-node K -m
vis4mer.launch SPEC RESULT ERROR`` and waits; each worker (:func:`worker_main`) joins the
process group (NCCL on GPUs, gloo on CPU), trains, and rank 0 reports the result or its
error back through a file. How K processes give the single-process result is
:mod:`vis4mer.distributed`'s part.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist

from vis4mer.distributed import DistContext
from vis4mer.sources.splits import SplitRow
from vis4mer.training import ModelSpec, NonFiniteLossError, RunOptions, TrainOutputs, TrainResult, TrainSettings, train_model

logger = logging.getLogger("vis4mer.launch")

# Rank 0 validates while the others wait in a collective: give it time (LVU validation
# with stride 1 takes minutes, a big test set longer).
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def _row_to_json(row) -> list:
    return [row.video_id, row.label, row.label_name]


def _row_from_json(item) -> SplitRow:
    return SplitRow(item[0], item[1], item[2])


def write_spec(path: Path, **train_kwargs) -> Path:
    """The keyword arguments of :func:`vis4mer.training.train_model` as JSON for the workers."""
    outputs, settings, model_spec = train_kwargs.pop("outputs"), train_kwargs.pop("settings"), train_kwargs.pop("model_spec")
    options = train_kwargs.pop("options", None) or RunOptions()
    if train_kwargs.get("model_factory") is not None:
        raise ValueError("a custom model_factory cannot be passed to torchrun workers")
    train_kwargs.pop("model_factory", None)
    spec = {
        **{k: v for k, v in train_kwargs.items() if k not in ("train_rows", "val_rows", "label_rows", "feature_shards")},
        "feature_shards": [str(p) for p in train_kwargs["feature_shards"]],
        "train_rows": [_row_to_json(r) for r in train_kwargs["train_rows"]],
        "val_rows": [_row_to_json(r) for r in train_kwargs["val_rows"]],
        "label_rows": [[_row_to_json(r) for r in rows] for rows in train_kwargs.get("label_rows", ())],
        "outputs": {k: (None if v is None else str(v)) for k, v in vars(outputs).items()},
        "settings": asdict(settings),
        "options": asdict(options),
        "model_spec": asdict(model_spec),
    }
    path = Path(path)
    path.write_text(json.dumps(spec))
    return path


def read_spec(path) -> dict[str, Any]:
    """The keyword arguments of :func:`vis4mer.training.train_model` written by :func:`write_spec`."""
    spec = json.loads(Path(path).read_text())
    spec["train_rows"] = [_row_from_json(r) for r in spec["train_rows"]]
    spec["val_rows"] = [_row_from_json(r) for r in spec["val_rows"]]
    spec["label_rows"] = [[_row_from_json(r) for r in rows] for rows in spec["label_rows"]]
    spec["outputs"] = TrainOutputs(**spec["outputs"])
    spec["settings"] = TrainSettings.from_dict(spec["settings"])
    spec["options"] = RunOptions(**spec["options"])
    spec["model_spec"] = ModelSpec(**spec["model_spec"])
    return spec


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def train_with_torchrun(
    nproc: int,
    *,
    threads_per_rank: int = 1,
    pass_fds: Sequence[int] = (),
    env: dict[str, str] | None = None,
    **train_kwargs,
):
    """Run :func:`vis4mer.training.train_model` in `nproc` DDP processes under torchrun.

    `nproc` = 1 is a real DDP run too (one process group of one rank: the model DDP-wrapped,
    the sharded sampler, the collectives; NCCL on a GPU), which checks the multi-GPU path on
    a machine with one device; it gives the single-process result.
    Blocks until they finish and returns rank 0's :class:`vis4mer.training.TrainResult`.
    A :class:`vis4mer.training.NonFiniteLossError` of the workers is raised again here.
    `pass_fds` (e.g. the GPU lease's lock descriptors) stay open in torchrun, so the
    devices stay leased as long as it lives; torchrun gets SIGTERM if this process dies.
    """
    if nproc < 1:
        raise ValueError(f"train_with_torchrun needs at least 1 process, got {nproc}")
    with tempfile.TemporaryDirectory(prefix="vis4mer-ddp-") as scratch:
        spec_path = write_spec(Path(scratch) / "spec.json", **train_kwargs)
        result_path, error_path = Path(scratch) / "result.json", Path(scratch) / "error.json"
        child_env = dict(os.environ if env is None else env)
        lib = str(Path(__file__).resolve().parents[1])
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (lib, child_env.get("PYTHONPATH", "")) if p)
        child_env["OMP_NUM_THREADS"] = str(max(1, threads_per_rank))
        child_env["VIS4MER_THREADS_PER_RANK"] = str(max(1, threads_per_rank))
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "vis4mer.launch", str(spec_path), str(result_path), str(error_path),
        ]
        logger.info("training on %d processes: %s", nproc, " ".join(command))
        completed = subprocess.run(command, env=child_env, pass_fds=tuple(pass_fds), preexec_fn=_die_with_parent)
        if error_path.exists():
            error = json.loads(error_path.read_text())
            if error["type"] == "NonFiniteLossError":
                raise NonFiniteLossError(error["message"])
            raise RuntimeError(f"distributed training failed on rank 0: {error['type']}: {error['message']}")
        if completed.returncode != 0 or not result_path.exists():
            raise RuntimeError(f"torchrun exited with status {completed.returncode} (the workers' errors are above in the log)")
        return TrainResult(**json.loads(result_path.read_text()))


def worker_main(argv: Sequence[str]) -> int:
    """One torchrun worker: join the process group, train, report (rank 0) and leave."""
    spec_path, result_path, error_path = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    spec = read_spec(spec_path)
    use_nccl = spec["options"].device != "cpu" and torch.cuda.is_available()
    if use_nccl:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_nccl else "gloo", timeout=COLLECTIVE_TIMEOUT)
    ctx = DistContext.current()
    logger.info("rank %d of %d joined the process group (backend %s)", ctx.rank, ctx.world_size, dist.get_backend())
    torch.set_num_threads(int(os.environ.get("VIS4MER_THREADS_PER_RANK", "1")))
    if not ctx.is_main:  # one copy of the run's log, from rank 0
        logging.getLogger("vis4mer").setLevel(logging.WARNING)
        spec["options"].progress = False
    try:
        result = train_model(**spec)
        if ctx.is_main:
            Path(result_path).write_text(json.dumps(asdict(result), allow_nan=True))
        return 0
    except Exception as error:
        if ctx.is_main:
            Path(error_path).write_text(json.dumps({"type": type(error).__name__, "message": str(error)}))
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
