"""Multi-GPU training: DistributedDataParallel under torchrun, with the single-process result.

One training run on K devices (config ``training.gpus_per_run``) is K processes started by
torchrun (:func:`vis4mer.launch.train_with_torchrun`); each runs
:func:`vis4mer.training.train_model`, which sees the initialised process group and trains
the DDP-wrapped model with the pieces of this module. Rank 0 validates, writes the checkpoints, the log and the curve;
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

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, Dataset, RandomSampler

from vis4mer.devices import resolve_device

# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run (rank 0 of 1 outside a process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    in_process_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Inside an initialised process group: the DDP path (also for a group of one process,
        e.g. torchrun on one GPU, so the path runs end to end with NCCL on a single device)."""
        return self.in_process_group

    @classmethod
    def current(cls) -> DistContext:
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank()
            return cls(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)), in_process_group=True)
        return cls()

    def device(self, setting: str) -> torch.device:
        """The device of this rank for the ``device`` setting (auto | cpu | cuda | cuda:N)."""
        return resolve_device(setting, self.local_rank if self.distributed else None)

    # -- collectives (no-ops outside a process group)
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
