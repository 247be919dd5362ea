"""Collect every (task, model[, seed]) metrics.json of a dataset into all.json and summary.md.

all.json::

    {"dataset", "n_runs",
     "results": {task: {run: metrics}},      # run = model name, or "<model>/seed_<n>"
     "table": [row, ...],                    # one row per task x model, seeds combined
     "downloads": {...},                     # vis4mer.download.coverage, when the dataset is downloaded
     + whatever the workflow passes as `info` (source, seeds, paper references, notes)}

A table row holds the metric, its value per seed, the mean and the sample standard deviation
over seeds (None with one seed), the evaluated/total test videos, and the paper's number for
the task when there is one, with ``delta`` = ours - paper in the paper's unit (accuracy in
percent). summary.md shows the same as Markdown; its table has a ``paper`` column only when
some task has a paper number.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from vis4mer import atomic
from vis4mer.config import parse_run


def collect(dataset: str, metrics_paths: Sequence[Path | str]) -> dict[str, Any]:
    """``{"dataset", "n_runs", "results": {task: {run: metrics}}}`` in the given order.

    Each metrics.json must name its task and model (the evaluate stage writes them; the
    model of a seeded run is "<model>/seed_<n>").
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


def _in_paper_units(metric: str, value: float | None) -> float | None:
    """Accuracy as a percentage (the paper's unit); other metrics as they are."""
    if value is None:
        return None
    return 100.0 * value if metric == "accuracy" else value


def table_rows(results: Mapping[str, Mapping[str, Any]], paper: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per task x model (seeded runs of a model combined), in input order."""
    paper = paper or {}
    rows = []
    for task, by_run in results.items():
        grouped: dict[str, list[tuple[int | None, dict[str, Any]]]] = {}
        for run, metrics in by_run.items():
            model, seed = parse_run(run)
            grouped.setdefault(model, []).append((seed, metrics))
        for model, runs in grouped.items():
            first = runs[0][1]
            values = [m["value"] for _, m in runs]
            finite = [v for v in values if v is not None and math.isfinite(v)]
            mean = statistics.fmean(finite) if finite else None
            std = statistics.stdev(finite) if len(finite) >= 2 else None
            reference = paper.get(task)
            row = {
                "task": task,
                "model": model,
                "metric": first["metric"],
                "task_type": first.get("task_type"),
                "seeds": [seed for seed, _ in runs if seed is not None],
                "n_runs": len(runs),
                "values": values,
                "mean": mean,
                "std": std,
                "n_evaluated": min(m["n_evaluated"] for _, m in runs),
                "n_total": max(m["n_total"] for _, m in runs),
                "n_missing": max(m.get("n_missing", 0) for _, m in runs),
                "missing_ids": first.get("missing_ids", []),
                "paper": reference,
                "delta": None,
            }
            if reference and mean is not None and reference.get("metric", first["metric"]) == first["metric"]:
                row["delta"] = _in_paper_units(first["metric"], mean) - reference["value"]
            rows.append(row)
    return rows


def _format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric == "accuracy":
        return f"{100 * value:.1f}%"
    return f"{value:.4g}"


def _format_row_value(row: Mapping[str, Any]) -> str:
    if row["n_runs"] == 1:
        return _format_value(row["metric"], row["values"][0])
    if row["mean"] is None:
        return f"n/a ({row['n_runs']} seeds)"
    scale = 100.0 if row["metric"] == "accuracy" else 1.0
    unit = "%" if row["metric"] == "accuracy" else ""
    spread = f" ± {scale * row['std']:.{1 if unit else 3}f}" if row["std"] is not None else ""
    mean = f"{scale * row['mean']:.1f}" if unit else f"{row['mean']:.4g}"
    n_finite = sum(v is not None for v in row["values"])
    return f"{mean}{spread}{unit} ({n_finite} seeds)"


def _format_paper(reference: Mapping[str, Any] | None) -> str:
    if not reference:
        return "—"
    return f"{reference['value']:.2f}%" if reference.get("metric") == "accuracy" else f"{reference['value']:.2f}"


def _evaluated(row: Mapping[str, Any]) -> str:
    return f"{row['n_evaluated']}/{row['n_total']}"


def _downloads_markdown(downloads: Mapping[str, Any]) -> list[str]:
    counts, total = downloads["counts"], downloads["total"]
    lines = [
        "",
        "## Downloads",
        "",
        f"{downloads['available']} of {total} videos available ({100 * downloads['available_fraction']:.1f}%), "
        f"{downloads['shards']} download shards.",
        "",
        "| status | videos | share |",
        "| --- | --- | --- |",
    ]
    for status, n in counts.items():
        lines.append(f"| {status} | {n} | {100 * downloads['fractions'][status]:.1f}% |")
    for status in ("unavailable", "failed"):
        ids = downloads.get(f"{status}_ids", [])
        if ids:
            more = f" ... ({len(ids)} in all.json)" if len(ids) > 20 else ""
            lines += ["", f"{status.capitalize()}: {', '.join(ids[:20])}{more}"]
    return lines


def summary_markdown(collected: dict[str, Any]) -> str:
    """A Markdown table (task, model, metric, value, evaluated/total[, paper]) and notes."""
    rows = collected.get("table") or table_rows(collected["results"], collected.get("paper"))
    with_paper = any(row["paper"] for row in rows)
    header = "| task | model | metric | value | evaluated/total |" + (" paper |" if with_paper else "")
    lines = [f"# Results: {collected['dataset']}", "", header, "| --- " * (6 if with_paper else 5) + "|"]
    notes = []
    for row in rows:
        line = f"| {row['task']} | {row['model']} | {row['metric']} | {_format_row_value(row)} | {_evaluated(row)} |"
        lines.append(line + (f" {_format_paper(row['paper'])} |" if with_paper else ""))
        if row["n_missing"]:
            ids = ", ".join(row["missing_ids"][:10])
            more = " ..." if row["n_missing"] > 10 else ""
            notes.append(f"- {row['task']}/{row['model']}: {row['n_missing']} test videos without features ({ids}{more})")
    if any(row["n_runs"] > 1 for row in rows):
        lines += ["", "Values over several seeds: mean ± sample standard deviation."]
    if with_paper:
        sources = sorted({row["paper"]["source"] for row in rows if row["paper"] and row["paper"].get("source")})
        lines += ["", f"paper: {'; '.join(sources)}; accuracy in %, MSE in the paper's target units."]
    if notes:
        lines += ["", "Not evaluated:", "", *notes]
    validation = (collected.get("notes") or {}).get("validation")
    if validation:
        lines += ["", f"Validation split: {validation.get('description', validation.get('strategy'))}."]
    if collected.get("frame_unit"):
        lines += ["", f"Feature frame: {collected['frame_unit']}."]
    if collected.get("downloads"):
        lines += _downloads_markdown(collected["downloads"])
    return "\n".join(lines) + "\n"


def write_aggregate(
    dataset: str,
    metrics_paths: Sequence[Path | str],
    all_json,
    summary_md,
    info: Mapping[str, Any] | None = None,
    download_manifests: Sequence[Path | str] = (),
) -> dict[str, Any]:
    """Write all.json and summary.md; `info` (source, seeds, paper, notes, ...) is stored as
    given, `download_manifests` are summarised with vis4mer.download.coverage."""
    collected = collect(dataset, metrics_paths)
    info = dict(info or {})
    collected["table"] = table_rows(collected["results"], info.get("paper"))
    collected.update({key: value for key, value in info.items() if key not in collected})
    if download_manifests:
        from vis4mer.download import coverage

        collected["downloads"] = coverage(download_manifests)
    atomic.write_json(all_json, collected)
    atomic.write_text(summary_md, summary_markdown(collected))
    return collected
