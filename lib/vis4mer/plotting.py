"""PNG plots of training curves and confusion matrices.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no
global backend state), so plotting works headless and from any thread, and written
atomically (temporary file, then rename).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vis4mer.atomic import atomic_path


def _save(figure: Figure, path) -> None:
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def plot_train_curve(log_rows: Sequence[dict[str, Any]], path, title: str = "", metric: str = "val metric") -> None:
    """Training loss (left axis) and validation metric (right axis) per epoch."""
    epochs = [int(row["epoch"]) for row in log_rows]
    losses = [float(row["train_loss"]) for row in log_rows]
    metrics = [float(row["val_metric"]) for row in log_rows]
    figure = Figure(figsize=(6.4, 4.0))
    axis = figure.add_subplot(1, 1, 1)
    axis.plot(epochs, losses, "o-", color="tab:blue", label="train loss")
    axis.set_xlabel("epoch")
    axis.set_ylabel("train loss", color="tab:blue")
    other = axis.twinx()
    other.plot(epochs, metrics, "s-", color="tab:orange", label=f"val {metric}")
    other.set_ylabel(f"val {metric}", color="tab:orange")
    best = [m for m in metrics if not math.isnan(m)]
    if best:
        pick = max(best) if metric == "accuracy" else min(best)
        other.axhline(pick, color="tab:orange", linestyle=":", linewidth=1)
    if title:
        axis.set_title(title)
    axis.grid(True, alpha=0.3)
    _save(figure, path)


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path, title: str = "") -> None:
    """Confusion matrix heat map with counts; rows are the true class, columns the prediction."""
    n = len(labels)
    size = max(3.5, 0.6 * n + 2.0)
    figure = Figure(figsize=(size, size))
    axis = figure.add_subplot(1, 1, 1)
    image = axis.imshow(matrix, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    axis.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
    axis.set_yticks(range(n), labels=list(labels))
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if peak and count > peak / 2 else "black"
            axis.text(j, i, str(count), ha="center", va="center", color=colour)
    if title:
        axis.set_title(title)
    _save(figure, path)
