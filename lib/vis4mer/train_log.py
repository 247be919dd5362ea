"""The per-epoch training log: one CSV row per epoch, written after every epoch."""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from vis4mer import atomic

LOG_COLUMNS = ("epoch", "train_loss", "val_metric", "val_loss", "lr", "n_nonfinite_skipped", "n_padded", "seconds")
INT_COLUMNS = ("epoch", "n_nonfinite_skipped", "n_padded")  # the others are floats (NaN: not validated)


def write_log_csv(log: Sequence[dict[str, Any]], path) -> None:
    """`log` (rows with at least LOG_COLUMNS) as a CSV file at `path`, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in log:
        writer.writerow({key: row[key] for key in LOG_COLUMNS})
    atomic.write_text(path, buffer.getvalue())


def read_log_csv(path) -> list[dict[str, Any]]:
    """The rows of a log written by :func:`write_log_csv`, numbers parsed."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: int(v) if k in INT_COLUMNS else float(v) for k, v in row.items()} for row in rows]
