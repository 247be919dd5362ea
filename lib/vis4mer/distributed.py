"""Multi-GPU training: DistributedDataParallel under torchrun, with the single-process result.

One training run on K devices (config ``training.gpus_per_run``) is K processes started by
``torchrun --standalone --nproc-per-node K -m vis4mer.distributed SPEC.json``; each runs
:func:`vis4mer.training.train_model`, which sees the initialised process group and trains
the DDP-wrapped model. Rank 0 validates, writes the checkpoints, the log and the curve;
the other ranks wait for its validation metric (broadcast) so every rank steps the
learning-rate scheduler the same way.

Why it gives the single-process result
--------------------------------------
Every rank draws the SAME global order as one process would: the batches of a
``BatchSampler(RandomSampler(generator=g))`` with the same seeded generator ``g``, consumed
exactly as the single-process DataLoader consumes it. Each global batch of ``batch_size``
clips is cut into K contiguous parts (``numpy.array_split``), rank r trains on part r.
Window starts depend only on (seed, epoch, clip), not on the process.

Each rank's loss is ``K * sum(w_i * loss_i) / n`` over its clips, with ``n`` the size of
the GLOBAL batch; DDP averages gradients over the K ranks, so the update is the gradient
of ``sum(loss_i) / n``, the single-process mean loss, even when ``n`` does not divide
evenly. A rank whose part is empty (the last batch of an epoch may hold fewer clips than
ranks) runs one clip of the batch with weight 0, so it still joins the gradient
all-reduce. The logged train loss is the all-reduced mean; the non-finite guard decides
on the all-reduced loss and the (synchronised) gradient norm, so all ranks skip together.

What differs: floating-point summation order (a different grouping of the same terms),
so results agree to rounding, not bit for bit; and dropout masks, drawn per rank from
each rank's own RNG stream, so with dropout > 0 two runs are equally good but not
numerically equal. torch's ``DistributedSampler`` is not used: it pads the epoch with
repeated clips and interleaves ranks, which changes the last batch.

Backends: NCCL with one device per rank (``cuda:LOCAL_RANK`` of the job's
``CUDA_VISIBLE_DEVICES``, i.e. its GPU lease), gloo on CPU (tests, and CPU-only machines).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, Dataset, RandomSampler

from vis4mer.devices import resolve_device

logger = logging.getLogger("vis4mer.distributed")

# Rank 0 validates while the others wait in a collective: give it time (LVU validation
# with stride 1 takes minutes, a big test set longer).
COLLECTIVE_TIMEOUT = timedelta(hours=2)


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def current(cls) -> DistContext:
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank()
            return cls(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
        return cls()

    def device(self, setting: str) -> torch.device:
        """The device of this rank for the ``device`` setting (auto | cpu | cuda | cuda:N)."""
        return resolve_device(setting, self.local_rank if self.distributed else None)

    # -- collectives (no-ops in one process)
    def all_reduce_sum(self, value: float | int) -> float:
        if not self.distributed:
            return value
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return float(tensor.item())

    def broadcast(self, values: Sequence[Any]) -> list[Any]:
        """Rank 0's `values` on every rank (picklable objects)."""
        values = list(values)
        if self.distributed:
            dist.broadcast_object_list(values, src=0)
        return values

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order (on every rank)."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def wrap_model(model: torch.nn.Module, device: torch.device, ctx: DistContext) -> torch.nn.Module:
    """The model DDP-wrapped for a distributed run (unchanged in one process)."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(model)


# --------------------------------------------------------------------------- data


class ShardedBatchSampler:
    """This rank's part of every global batch, as ``(index, weight, global_batch_size)`` items.

    The global batches are those of ``BatchSampler(RandomSampler(range(n), generator),
    batch_size, drop_last=False)``, iterated to exhaustion each epoch, so the generator
    advances exactly as under a single-process ``DataLoader(shuffle=True, generator=...)``.
    """

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, generator: torch.Generator):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        batches = BatchSampler(RandomSampler(range(self.n), generator=self.generator), self.batch_size, drop_last=False)
        for batch in batches:
            part = np.array_split(np.asarray(batch), self.world_size)[self.rank].tolist()
            if part:
                yield [(index, 1.0, len(batch)) for index in part]
            else:  # fewer clips than ranks: run one with weight 0 to join the all-reduce
                yield [(batch[0], 0.0, len(batch))]


class WeightedItems(Dataset):
    """``dataset[(index, weight, n)]`` -> the dataset's item followed by ``weight, n``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key):
        index, weight, n = key
        return (*self.dataset[index], weight, n)


def rank_loss(losses: torch.Tensor, weight: torch.Tensor, n_global: torch.Tensor, ctx: DistContext):
    """``(loss to back-propagate, global mean loss)`` from this rank's per-clip losses.

    The back-propagated loss is ``K * sum(w * loss) / n``: DDP's gradient average over K
    ranks then equals the gradient of the global batch's mean loss.
    """
    weight = weight.to(losses.device, losses.dtype)
    n = float(n_global[0])
    local = (weight * losses).sum() / n
    return local * ctx.world_size, ctx.all_reduce_sum(float(local.detach()))


# --------------------------------------------------------------------------- launching


def _row_to_json(row) -> list:
    return [row.video_id, row.label, row.label_name]


def _row_from_json(item):
    from vis4mer.sources.splits import SplitRow

    return SplitRow(item[0], item[1], item[2])


def write_spec(path: Path, **train_kwargs) -> Path:
    """The keyword arguments of :func:`vis4mer.training.train_model` as JSON for the workers."""
    outputs, settings, model_spec = train_kwargs.pop("outputs"), train_kwargs.pop("settings"), train_kwargs.pop("model_spec")
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
        "model_spec": asdict(model_spec),
    }
    path = Path(path)
    path.write_text(json.dumps(spec))
    return path


def read_spec(path) -> dict[str, Any]:
    from vis4mer.training import ModelSpec, TrainOutputs, TrainSettings

    spec = json.loads(Path(path).read_text())
    spec["train_rows"] = [_row_from_json(r) for r in spec["train_rows"]]
    spec["val_rows"] = [_row_from_json(r) for r in spec["val_rows"]]
    spec["label_rows"] = [[_row_from_json(r) for r in rows] for rows in spec["label_rows"]]
    spec["outputs"] = TrainOutputs(**spec["outputs"])
    spec["settings"] = TrainSettings.from_dict(spec["settings"])
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

    Blocks until they finish and returns rank 0's :class:`vis4mer.training.TrainResult`.
    A :class:`vis4mer.training.NonFiniteLossError` of the workers is raised again here.
    `pass_fds` (e.g. the GPU lease's lock descriptors) stay open in torchrun, so the
    devices stay leased as long as it lives; torchrun gets SIGTERM if this process dies.
    """
    from vis4mer.training import NonFiniteLossError, TrainResult

    if nproc < 2:
        raise ValueError(f"train_with_torchrun needs at least 2 processes, got {nproc}")
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
            "-m", "vis4mer.distributed", str(spec_path), str(result_path), str(error_path),
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
    from vis4mer.training import train_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    spec = read_spec(spec_path)
    use_nccl = spec["settings"].device != "cpu" and torch.cuda.is_available()
    if use_nccl:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_nccl else "gloo", timeout=COLLECTIVE_TIMEOUT)
    ctx = DistContext.current()
    torch.set_num_threads(int(os.environ.get("VIS4MER_THREADS_PER_RANK", "1")))
    if not ctx.is_main:  # one copy of the run's log, from rank 0
        logging.getLogger("vis4mer").setLevel(logging.WARNING)
        spec["settings"].progress = False
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
