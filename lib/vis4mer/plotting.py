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


PAPER_LABEL = "paper (ViS4mer)"


def summary_bars(table_rows: Sequence[dict[str, Any]]) -> dict[str, list[tuple[str, str, float, float | None]]]:
    """The bars of :func:`plot_summary`: per metric, ``(task, label, value, error)`` in the
    paper's units (accuracy in %), ours (mean over seeds, sample std as the error) for every
    model and the paper's number once per task. Rows without a value are left out."""
    bars: dict[str, list[tuple[str, str, float, float | None]]] = {}
    papers_drawn: set[tuple[str, str]] = set()
    for row in table_rows:
        metric = row["metric"]
        scale = 100.0 if metric == "accuracy" else 1.0
        value = row["mean"] if row["mean"] is not None else (row["values"][0] if row["n_runs"] == 1 else None)
        if value is not None and math.isfinite(value):
            error = scale * row["std"] if row.get("std") is not None else None
            bars.setdefault(metric, []).append((row["task"], row["model"], scale * value, error))
        reference = row.get("paper")
        if reference and reference.get("metric", metric) == metric and (row["task"], metric) not in papers_drawn:
            papers_drawn.add((row["task"], metric))
            bars.setdefault(metric, []).append((row["task"], PAPER_LABEL, float(reference["value"]), None))
    return bars


def plot_summary(table_rows: Sequence[dict[str, Any]], path, title: str = "") -> None:
    """Ours next to the paper, per task: grouped bars (seed spread as error bars), one panel
    per metric (accuracy in %, MSE on its own axis)."""
    bars = summary_bars(table_rows)
    panels = [metric for metric in ("accuracy", "mse") if metric in bars] + sorted(set(bars) - {"accuracy", "mse"})
    if not panels:
        panels = ["accuracy"]
    widths = [max(3.0, 1.2 * len({task for task, *_ in bars.get(metric, [])})) for metric in panels]
    figure = Figure(figsize=(max(6.4, sum(widths) + 1.5), 4.2))
    grid = figure.add_gridspec(1, len(panels), width_ratios=widths)
    labels = list(dict.fromkeys(label for metric in panels for _, label, _, _ in bars.get(metric, [])))
    colours = {label: ("lightgray" if label == PAPER_LABEL else f"C{i}") for i, label in enumerate(labels)}
    for index, metric in enumerate(panels):
        axis = figure.add_subplot(grid[0, index])
        items = bars.get(metric, [])
        tasks = list(dict.fromkeys(task for task, *_ in items))
        series = list(dict.fromkeys(label for _, label, _, _ in items))
        width = 0.8 / max(1, len(series))
        for s, label in enumerate(series):
            points = [(tasks.index(t), v, e) for t, lab, v, e in items if lab == label]
            xs = [x + (s - (len(series) - 1) / 2) * width for x, _, _ in points]
            errors = [e if e is not None else 0.0 for _, _, e in points]
            axis.bar(xs, [v for _, v, _ in points], width, yerr=errors if any(errors) else None, capsize=3,
                     color=colours[label], edgecolor="black", linewidth=0.5, hatch="//" if label == PAPER_LABEL else None,
                     label=label)
        axis.set_xticks(range(len(tasks)), labels=tasks, rotation=30, ha="right")
        axis.set_ylabel("test accuracy (%)" if metric == "accuracy" else f"test {metric.upper()} (lower is better)")
        if metric == "accuracy":
            axis.set_ylim(0, 100)
        axis.grid(True, axis="y", alpha=0.3)
        if not items:
            axis.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=axis.transAxes)
    handles = {}
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="upper center", ncol=min(4, len(handles)), bbox_to_anchor=(0.5, 1.08))
    if title:
        figure.suptitle(title, y=1.14 if handles else 1.0)
    _save(figure, path)
