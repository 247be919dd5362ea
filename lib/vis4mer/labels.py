"""Labels of split rows: the model's output width and class names, targets as tensors, and
the regression label transforms of split files."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from vis4mer.sources.splits import SplitRow, read_split_csv

TASK_TYPES = ("classification", "regression")


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


def read_task_rows(path, id_column: str, label_column: str, label_transform: dict[str, Any] | None = None) -> list[SplitRow]:
    """Rows of a split file, with an optional transform of a regression label.

    ``label_transform`` (applied in this order, every key optional):

    * ``ratio_with: <column>`` - label / (label + other column), e.g. LVU like_ratio =
      like_count / (like_count + dislike_count);
    * ``log: true`` - natural log, e.g. LVU view_count;
    * ``scale: s``, ``offset: o`` - label * s + o (ViS4mer's LVU targets are
      10 x like ratio and log views, each made zero-mean with a fixed offset).
    """
    rows = read_split_csv(path, id_column, label_column)
    if not label_transform:
        return rows
    unknown = sorted(set(label_transform) - {"ratio_with", "log", "scale", "offset"})
    if unknown:
        raise ValueError(f"unknown label_transform keys {unknown}")
    values = np.array([float(row.label) for row in rows])
    if label_transform.get("ratio_with"):
        other = {r.video_id: float(r.label) for r in read_split_csv(path, id_column, label_transform["ratio_with"])}
        totals = values + np.array([other[row.video_id] for row in rows])
        if (totals == 0).any():
            bad = [row.video_id for row, total in zip(rows, totals) if total == 0]
            raise ValueError(f"{path}: {label_column} + {label_transform['ratio_with']} is 0 for {bad[:5]}")
        values = values / totals
    if label_transform.get("log"):
        if (values <= 0).any():
            bad = [row.video_id for row, value in zip(rows, values) if value <= 0]
            raise ValueError(f"{path}: cannot take the log of non-positive labels of {bad[:5]}")
        values = np.log(values)
    values = values * float(label_transform.get("scale", 1.0)) + float(label_transform.get("offset", 0.0))
    return [SplitRow(row.video_id, float(value), row.label_name) for row, value in zip(rows, values)]
