"""Collect every (task, model) metrics.json of a dataset into all.json and summary.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from vis4mer import atomic


def collect(dataset: str, metrics_paths: Sequence[Path | str]) -> dict[str, Any]:
    """``{"dataset", "n_runs", "results": {task: {model: metrics}}}`` in the given order.

    Each metrics.json must name its task and model (the evaluate stage writes them).
    """
    results: dict[str, dict[str, Any]] = {}
    for path in metrics_paths:
        metrics = json.loads(Path(path).read_text())
        for key in ("task", "model", "metric", "value", "n_evaluated", "n_total"):
            if key not in metrics:
                raise ValueError(f"{path}: metrics have no {key!r}")
        if metrics.get("dataset", dataset) != dataset:
            raise ValueError(f"{path} belongs to dataset {metrics['dataset']!r}, not {dataset!r}")
        by_model = results.setdefault(metrics["task"], {})
        if metrics["model"] in by_model:
            raise ValueError(f"{path}: a second result for task {metrics['task']!r}, model {metrics['model']!r}")
        by_model[metrics["model"]] = metrics
    return {"dataset": dataset, "n_runs": sum(len(m) for m in results.values()), "results": results}


def _format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric == "accuracy":
        return f"{100 * value:.1f}%"
    return f"{value:.4g}"


def summary_markdown(collected: dict[str, Any]) -> str:
    """A Markdown table: task, model, metric, value, evaluated/total."""
    lines = [
        f"# Results: {collected['dataset']}",
        "",
        "| task | model | metric | value | evaluated/total |",
        "| --- | --- | --- | --- | --- |",
    ]
    notes = []
    for task, by_model in collected["results"].items():
        for model, metrics in by_model.items():
            lines.append(
                f"| {task} | {model} | {metrics['metric']} | {_format_value(metrics['metric'], metrics['value'])} "
                f"| {metrics['n_evaluated']}/{metrics['n_total']} |"
            )
            if metrics.get("n_missing"):
                ids = ", ".join(metrics.get("missing_ids", [])[:10])
                more = " ..." if metrics["n_missing"] > 10 else ""
                notes.append(f"- {task}/{model}: {metrics['n_missing']} test videos without features ({ids}{more})")
    if notes:
        lines += ["", "Not evaluated:", "", *notes]
    return "\n".join(lines) + "\n"


def write_aggregate(dataset: str, metrics_paths: Sequence[Path | str], all_json, summary_md) -> dict[str, Any]:
    collected = collect(dataset, metrics_paths)
    atomic.write_json(all_json, collected)
    atomic.write_text(summary_md, summary_markdown(collected))
    return collected
