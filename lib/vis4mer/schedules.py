"""Learning-rate schedules of a training run (config item ``lr_schedule``, see :mod:`vis4mer.recipe`).

``plateau`` (ours): ReduceLROnPlateau in the direction of the validation metric (``max`` for
accuracy, ``min`` for MSE), stepped at every validation: the rate falls by ``factor`` after
``patience`` + 1 validations in a row without improvement.

``step`` (the reference code's schedule, as what it effectively is): the reference code steps a
ReduceLROnPlateau in its default ``mode='min'`` with the validation *accuracy*. A rising
accuracy is then never an improvement, so, as long as the accuracy does not fall below its
first validated value, the rate falls by ``factor`` every ``patience`` + 1 validations after the
first one, whatever the accuracy does. With validation every ``v`` epochs that is a step decay
from epoch ``v (patience + 2) + 1``, then every ``v (patience + 1)`` epochs
(:func:`reference_decay_epochs`): LVU (v 10, patience 1) at epochs 31, 51, 71, 91; Breakfast and
COIN (v 1, patience 10) at 13, 24, 35, ... ReduceLROnPlateau's ``eps`` rule is kept: a decay
that would change the rate by less than 1e-8 is skipped, so the rate stops at 1e-3 x 0.2^8 =
2.56e-9. Here the decay happens at those epochs unconditionally, which is the schedule the
reference runs had. For a metric that should fall (MSE), ``mode='min'`` is a real plateau
schedule, so regression tasks run ``plateau`` under either choice.

Both schedules are stepped once per epoch, after it (:meth:`after_epoch`), so the rate logged
for an epoch is the one the next epoch trains with, and both keep their state in the
checkpoint's ``scheduler_state`` (for ``plateau``: ReduceLROnPlateau's own).
"""

from __future__ import annotations

import math
from typing import Any

import torch

SCHEDULES = ("plateau", "step")
EPS = 1e-8  # ReduceLROnPlateau's default eps: a smaller change of the rate is skipped


def reference_decay_epochs(val_every_epochs: int, patience: int, epochs: int) -> list[int]:
    """The epochs (1-based) from which the reference schedule has decayed once more.

    Validations come after epochs v, 2v, 3v, ...; the first one sets the best value, and every
    later one is "bad" for mode 'min' on a rising accuracy, so the rate falls after validation
    1 + k (patience + 1), k = 1, 2, ..., and the next epoch trains with it.
    """
    if val_every_epochs < 1 or patience < 0:
        raise ValueError(f"need val_every_epochs >= 1 and patience >= 0, got {val_every_epochs} and {patience}")
    first = val_every_epochs * (patience + 2) + 1
    return list(range(first, epochs + 1, val_every_epochs * (patience + 1)))


def _decayed(lr: float, factor: float, times: int) -> float:
    """`lr` after `times` decays by `factor`, skipping (for good) a change smaller than EPS."""
    for _ in range(times):
        new = lr * factor
        if lr - new <= EPS:
            break
        lr = new
    return lr


class PlateauSchedule:
    """ReduceLROnPlateau on the validation metric, in its own direction (`mode`)."""

    name = "plateau"

    def __init__(self, optimizer: torch.optim.Optimizer, mode: str, factor: float, patience: int):
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)

    def after_epoch(self, epoch: int, val_metric: float, validated: bool) -> None:
        if validated:
            self.scheduler.step(val_metric)

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class StepSchedule:
    """The rate of every parameter group times `factor` from each of `milestones` (epochs) on,
    a change smaller than EPS skipped (the reference code's effective schedule, module doc)."""

    name = "step"

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: list[int], factor: float):
        self.optimizer, self.milestones, self.factor = optimizer, sorted(milestones), factor
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]

    def decays_by(self, epoch: int) -> int:
        """How many decays epoch `epoch` trains with: the milestones at or before it."""
        return sum(1 for milestone in self.milestones if milestone <= epoch)

    def after_epoch(self, epoch: int, val_metric: float, validated: bool) -> None:
        decays = self.decays_by(epoch + 1)  # the rate of the next epoch
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = _decayed(base, self.factor, decays)

    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": list(self.base_lrs), "milestones": list(self.milestones), "factor": self.factor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self.milestones, self.factor = [int(m) for m in state["milestones"]], float(state["factor"])


def build_schedule(
    kind: str, optimizer: torch.optim.Optimizer, *, mode: str, factor: float, patience: int, val_every_epochs: int, epochs: int
) -> PlateauSchedule | StepSchedule:
    """The schedule `kind` (SCHEDULES) for a metric of direction `mode` ("max" | "min").

    ``step`` is the reference code's ReduceLROnPlateau(mode='min'): a step decay for a metric
    that should rise, a plateau schedule for one that should fall (module doc).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if not 0 < factor < 1 or not math.isfinite(factor):
        raise ValueError(f"lr factor must be in (0, 1), got {factor}")
    if kind == "step" and mode == "max":
        return StepSchedule(optimizer, reference_decay_epochs(val_every_epochs, patience, epochs), factor)
    return PlateauSchedule(optimizer, mode, factor, patience)
