"""Labels of split rows: the model's output width and class names, targets as tensors, and
the regression label transform (:class:`LabelTransform`: split-file column -> target, and
back for predictions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from vis4mer.sources.splits import SplitRow, read_split_file

TASK_TYPES = ("classification", "regression")
TRANSFORM_KEYS = ("ratio_with", "log", "scale", "offset")  # LabelTransform's steps, in the order applied


def label_tensor(label: int | float, task_type: str) -> torch.Tensor:
    if task_type == "classification":
        return torch.tensor(int(label), dtype=torch.long)
    if task_type == "regression":
        return torch.tensor(float(label), dtype=torch.float32)
    raise ValueError(f"task type must be one of {TASK_TYPES}, got {task_type!r}")


def describe_labels(task_type: str, *row_lists: Sequence[SplitRow]) -> tuple[int, list[str]]:
    """``(d_output, label_names)`` for a task from its split rows.

    Classification: classes are 0..max(label); a class's name is its ``class_name``
    in the split files (``str(id)`` where absent). Two names for one id is an error.
    Regression: one output, no label names.
    """
    if task_type == "regression":
        return 1, []
    if task_type != "classification":
        raise ValueError(f"task type must be one of {TASK_TYPES}, got {task_type!r}")
    names: dict[int, str] = {}
    max_label = -1
    for rows in row_lists:
        for row in rows:
            if float(row.label) != int(row.label) or int(row.label) < 0:
                raise ValueError(
                    f"video {row.video_id}: classification label {row.label!r} is not a class id "
                    "(a non-negative integer); is the task a regression task?"
                )
            label = int(row.label)
            max_label = max(max_label, label)
            if row.label_name is not None:
                if names.setdefault(label, row.label_name) != row.label_name:
                    raise ValueError(f"class {label} has two names: {names[label]!r} and {row.label_name!r}")
    if max_label < 0:
        raise ValueError("no labelled rows: cannot tell the number of classes")
    return max_label + 1, [names.get(label, str(label)) for label in range(max_label + 1)]


@dataclass(frozen=True)
class LabelTransform:
    """How a regression target derives from a split file's label column, both ways.

    Forward (:meth:`apply`), in this order, every step optional:

    * ``ratio_with: <column>`` - label / (label + other column), e.g. LVU like_ratio =
      like_count / (like_count + dislike_count);
    * ``log: true`` - natural log, e.g. LVU view_count;
    * ``scale: s``, ``offset: o`` - value * s + o (ViS4mer's LVU targets are 10 x like ratio
      and log views, each made zero-mean with a fixed offset).

    :meth:`invert` maps a target back to the :attr:`quantity` (the value before log, scale
    and offset). With ``ratio_with`` that is the ratio itself: the two counts cannot be told
    apart from it. The config and checkpoints hold it as ``label_column`` plus the
    ``label_transform`` mapping (:meth:`from_config`, :meth:`as_config`).
    """

    column: str = "label"
    ratio_with: str | None = None
    log: bool = False
    scale: float = 1.0
    offset: float = 0.0

    @classmethod
    def from_config(cls, label_column: str | None, transform: Mapping[str, Any] | None, where: str = "label_transform") -> LabelTransform:
        """The transform of `label_column` described by the mapping `transform` (keys of
        TRANSFORM_KEYS); a ValueError names `where` for an unknown key or a scale of 0."""
        transform = dict(transform or {})
        unknown = sorted(set(transform) - set(TRANSFORM_KEYS))
        if unknown:
            raise ValueError(f"unknown {where} keys {unknown} (known: {', '.join(TRANSFORM_KEYS)})")
        made = cls(
            label_column or "label",
            transform.get("ratio_with") or None,
            bool(transform.get("log", False)),
            float(transform.get("scale", 1.0)),
            float(transform.get("offset", 0.0)),
        )
        if made.scale == 0:
            raise ValueError(f"{where}.scale is 0: every target would be the same, and the transform cannot be inverted")
        return made

    def as_config(self) -> dict[str, Any]:
        """``{"label_column", "label_transform"}`` with the steps that do something (the
        form of the config's tasks and of the checkpoints' ``target``)."""
        steps: dict[str, Any] = {}
        if self.ratio_with:
            steps["ratio_with"] = self.ratio_with
        if self.log:
            steps["log"] = True
        if self.scale != 1.0:
            steps["scale"] = self.scale
        if self.offset != 0.0:
            steps["offset"] = self.offset
        return {"label_column": self.column, "label_transform": steps}

    @property
    def quantity(self) -> str:
        """What :meth:`invert` returns, e.g. ``like_count / (like_count + dislike_count)``."""
        return f"{self.column} / ({self.column} + {self.ratio_with})" if self.ratio_with else self.column

    def apply(self, labels, others=None, ids: Sequence[str] | None = None) -> np.ndarray:
        """Targets of the `labels` (with the `others` column when ``ratio_with``); a
        ValueError names the first `ids` whose ratio or log is undefined."""
        values = np.asarray(labels, dtype=np.float64)
        names = list(ids) if ids is not None else [str(i) for i in range(values.size)]
        if self.ratio_with:
            if others is None:
                raise ValueError(f"{self.quantity}: the {self.ratio_with} values are needed")
            totals = values + np.asarray(others, dtype=np.float64)
            if (totals == 0).any():
                raise ValueError(f"{self.column} + {self.ratio_with} is 0 for {[n for n, t in zip(names, totals) if t == 0][:5]}")
            values = values / totals
        return self.from_quantity(values, names)

    def from_quantity(self, quantity, ids: Sequence[str] | None = None) -> np.ndarray:
        """Targets of values of the :attr:`quantity` (the steps after ``ratio_with``)."""
        values = np.asarray(quantity, dtype=np.float64)
        if self.log:
            if (values <= 0).any():
                names = list(ids) if ids is not None else [str(i) for i in range(values.size)]
                raise ValueError(f"cannot take the log of non-positive labels of {[n for n, v in zip(names, values.flat) if v <= 0][:5]}")
            values = np.log(values)
        return values * self.scale + self.offset

    def invert(self, target: float) -> float:
        """The :attr:`quantity` of a target: (target - offset) / scale, then exp when ``log``."""
        value = (float(target) - self.offset) / self.scale
        if self.log:
            value = math.exp(value) if value < 700 else math.inf
        return value


def raw_from_target(target: float, label_transform: Mapping[str, Any] | None) -> float:
    """:meth:`LabelTransform.invert` of a transform in its mapping form (as checkpoints record it)."""
    return LabelTransform.from_config(None, label_transform).invert(target)


def target_quantity(label_column: str | None, label_transform: Mapping[str, Any] | None) -> str:
    """:attr:`LabelTransform.quantity` of a transform in its mapping form."""
    return LabelTransform.from_config(label_column, label_transform).quantity


def read_task_rows(path, id_column: str, label_column: str, label_transform: Mapping[str, Any] | None = None) -> list[SplitRow]:
    """Rows of a split file (LVU layout or CSV: vis4mer.sources.splits), with the regression
    label transform ``label_transform`` (:class:`LabelTransform`, mapping form) applied to
    `label_column` when given."""
    rows = read_split_file(path, id_column, label_column)
    if not label_transform:
        return rows
    transform = LabelTransform.from_config(label_column, label_transform)
    ids = [row.video_id for row in rows]
    others = None
    if transform.ratio_with:
        other = {r.video_id: float(r.label) for r in read_split_file(path, id_column, transform.ratio_with)}
        others = [other[video_id] for video_id in ids]
    try:
        values = transform.apply([float(row.label) for row in rows], others, ids)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return [SplitRow(row.video_id, float(value), row.label_name) for row, value in zip(rows, values)]
