"""Resume state of a training run: continue after a kill exactly where the last epoch ended.

After every epoch :func:`vis4mer.training.train_model` writes ``last.pt`` with everything
the next epoch depends on: model, optimizer, scheduler, the train log, and a
:class:`RunState` (best-so-far metric, loss and epoch, the non-finite streak, and the random
states: Python, NumPy, torch CPU and CUDA of every rank, and the generator that orders the
training clips). With a state
directory (``TrainOutputs.state_dir``), the same file is also linked there as
``state.pt``, and the best checkpoint as ``best-e<epoch>.pt``. The state directory is
not an output of the Snakemake rule, so a failed or killed job's outputs may be deleted
(by ``--rerun-incomplete``, or Snakemake's clean-up of a failed job) while the state
survives; the re-run resumes from it and, on CPU, ends with the same log and metrics as an
uninterrupted run (bit for bit, tested).

Crash safety: files are written under a temporary name and renamed; ``state.pt`` is
replaced only after the best checkpoint it names exists, and older best files are removed
only after that, so a kill at any instant leaves a consistent state (at worst the epoch
in progress is repeated).

A state is used only for the same run: its fingerprint covers the model, task, features
(each shard's name, size and modification time), the train and validation rows and the
training settings (the hyper-parameters; not the run options, ``vis4mer.training.RunOptions``:
device, workers, evaluation batch size, progress). A mismatch starts from scratch, with a log line saying so. A completed run
removes its state, so forcing a re-run (``--forcerun train``) trains from scratch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vis4mer.atomic import link_or_copy
from vis4mer.checkpoint import float_or_nan, plain_float

logger = logging.getLogger("vis4mer.training")

STATE_FILE = "state.pt"
BEST_PREFIX = "best-e"
# checkpoint metadata that is not part of a run's identity: how it ran, not what it computes
NOT_IDENTITY = ("versions", "run_options")


@dataclass
class RunState:
    """What a run continues from besides the model, optimizer, scheduler and train log:
    ``last.pt``'s ``resume`` (:meth:`to_checkpoint`, :meth:`from_checkpoint`)."""

    fingerprint: str  # the run's identity (:func:`fingerprint`)
    best_epoch: int = 0  # 0: no best checkpoint yet
    best_val_metric: float = math.nan
    best_val_loss: float = math.nan
    consecutive_nonfinite: int = 0  # skipped steps in a row (the non-finite guard)
    generator: torch.Tensor | None = None  # state of the generator that orders the training clips
    rng: list[dict[str, Any]] = field(default_factory=list)  # every rank's rng_state(), in rank order
    world_size: int = 1

    def to_checkpoint(self) -> dict[str, Any]:
        """Checkpoint-safe values (NaN floats as None)."""
        return {f.name: plain_float(value) if isinstance(value := getattr(self, f.name), float) else value for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> RunState:
        floats = {name for name, kind in typing.get_type_hints(cls).items() if kind is float}
        return cls(**{f.name: float_or_nan(saved[f.name]) if f.name in floats else saved[f.name] for f in fields(cls)})

    def rank_rng(self, rank: int, world_size: int) -> dict[str, Any]:
        """The random states for `rank`: its own when the run had as many ranks, else rank 0's."""
        return self.rng[rank] if len(self.rng) == world_size else self.rng[0]


# --------------------------------------------------------------------------- random states


def rng_state(device: torch.device | str | None = None) -> dict[str, Any]:
    """This process's random states as checkpoint-safe values (tensors, ints, lists).

    CUDA: only the training device's generator (asking for every visible device's would
    create a CUDA context on each of them, from every rank of a distributed run).
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    device = torch.device(device) if device is not None else None
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device is not None and device.type == "cuda" else [],
    }


def set_rng_state(state: dict[str, Any], device: torch.device | str | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        if state["cuda"]:
            torch.cuda.set_rng_state(state["cuda"][0], device)
        else:
            logger.warning("resume: the state has no CUDA random state (it was saved on the CPU); CUDA RNG not restored")


# --------------------------------------------------------------------------- fingerprint


def fingerprint(metadata: dict[str, Any], feature_shards: Sequence, train_rows: Sequence, val_rows: Sequence) -> str:
    """What makes two runs the same run (see the module doc)."""
    meta = {k: v for k, v in metadata.items() if k not in NOT_IDENTITY}
    shards = []
    for path in feature_shards:
        stat = os.stat(path)
        shards.append([Path(path).name, stat.st_size, stat.st_mtime_ns])
    identity = {
        "metadata": meta,
        "shards": shards,
        "train": [[r.video_id, r.label] for r in train_rows],
        "val": [[r.video_id, r.label] for r in val_rows],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------- files


def best_name(epoch: int) -> str:
    return f"{BEST_PREFIX}{epoch:05d}.pt"


def record_best(state_dir: Path | None, best_path: Path, epoch: int) -> None:
    """Keep the new best checkpoint in the state directory (before the state names it)."""
    if state_dir is not None:
        link_or_copy(best_path, Path(state_dir) / best_name(epoch))


def record_state(state_dir: Path | None, last_path: Path, best_epoch: int) -> None:
    """Make ``last.pt`` the resume state, then drop best files it no longer names."""
    if state_dir is None:
        return
    state_dir = Path(state_dir)
    link_or_copy(last_path, state_dir / STATE_FILE)
    keep = best_name(best_epoch) if best_epoch else None
    for path in state_dir.glob(f"{BEST_PREFIX}*.pt"):
        if path.name != keep:
            path.unlink(missing_ok=True)


def load_state(state_dir: Path | None, expected_fingerprint: str) -> tuple[dict[str, Any], RunState] | None:
    """(the saved ``last.pt`` of this run, its RunState), or None (no state, another run's, or unreadable)."""
    if state_dir is None:
        return None
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        run_state = RunState.from_checkpoint(state["resume"])
    except Exception as error:  # noqa: BLE001 - a damaged state is no reason to fail the run
        logger.warning("resume: %s is unreadable (%s: %s); training from scratch", path, type(error).__name__, error)
        return None
    if run_state.fingerprint != expected_fingerprint:
        logger.warning(
            "resume: %s belongs to another run (settings, features or splits changed); training from scratch", path
        )
        return None
    best = run_state.best_epoch
    if best and not (Path(state_dir) / best_name(best)).exists():
        logger.warning("resume: %s names best checkpoint %s, which is missing; training from scratch", path, best_name(best))
        return None
    return state, run_state


def restore_outputs(state_dir: Path, best_epoch: int, best_path: Path, last_path: Path) -> None:
    """Put the state's checkpoints back at the output paths (a re-run may have deleted them,
    or a kill may have left a best checkpoint newer than the state: it is replaced)."""
    if best_epoch:
        link_or_copy(Path(state_dir) / best_name(best_epoch), best_path)
    else:
        Path(best_path).unlink(missing_ok=True)
    link_or_copy(Path(state_dir) / STATE_FILE, last_path)


def clear(state_dir: Path | None) -> None:
    """Remove the state of a completed run."""
    if state_dir is None or not Path(state_dir).is_dir():
        return
    state_dir = Path(state_dir)
    for path in [state_dir / STATE_FILE, *state_dir.glob(f"{BEST_PREFIX}*.pt"), *state_dir.glob("*.tmp-*")]:
        path.unlink(missing_ok=True)
    try:
        state_dir.rmdir()
    except OSError:  # something else lives there: leave it
        pass
