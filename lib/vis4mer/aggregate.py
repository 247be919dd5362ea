"""Collect every (task, model[, seed]) metrics.json of a dataset into all.json and summary.md.

all.json::

    {"dataset", "n_runs",
     "results": {task: {run: metrics}},      # run = model name, or "<model>/seed_<n>"
     "table": [row, ...],                    # one row per task x model, seeds combined
     "downloads": {...},                     # vis4mer.download.coverage, when the dataset is downloaded
     "left_out_of_training": {task: {"train": {id: reason}, "val": {...}}},  # when a run lacked some
     + whatever the workflow passes as `info` (source, seeds, paper references, notes)}

A table row holds the metric, its value per seed, the mean and the sample standard deviation
over seeds (None with one seed), the evaluated/total test videos, and the paper's number for
the task when there is one, with ``delta`` = ours - paper in the paper's unit (accuracy in
percent). summary.md shows the same as Markdown; its table has a ``paper`` column only when
some task has a paper number. results.html (:func:`results_html`, the page the Snakemake
report shows) holds the table with the paper's number and the difference, the summary
figure (vis4mer.plotting.plot_summary: ours next to the paper) and the run record: every
key of all.json beside the results (source, seeds, paper, notes, downloads, and whatever
else the workflow records), shown as it is.
"""

from __future__ import annotations

import base64
import html
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


def left_out_of_training(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, str]]]:
    """``{task: {"train": {id: reason}, "val": {id: reason}}}``: the training and validation
    rows a task's runs were trained without (no features: skipped as unreadable by an earlier
    stage, or absent), from the metrics' ``left_out_of_training``; only tasks with some."""
    left: dict[str, dict[str, dict[str, str]]] = {}
    for task, by_run in results.items():
        merged: dict[str, dict[str, str]] = {"train": {}, "val": {}}
        for metrics in by_run.values():
            for split, reasons in (metrics.get("left_out_of_training") or {}).items():
                merged.setdefault(split, {}).update(reasons)
        if any(merged.values()):
            left[task] = {split: dict(sorted(reasons.items())) for split, reasons in merged.items()}
    return left


def _videos(n: int, kind: str) -> str:
    return f"{n} {kind} video{'' if n == 1 else 's'}"


def _left_out_line(task: str, by_split: Mapping[str, Mapping[str, str]], shown: int = 10) -> str:
    """``order: 1 training video (demo_0003), 0 validation videos``."""
    parts = []
    for split, kind in (("train", "training"), ("val", "validation")):
        ids = list(by_split.get(split, {}))
        listed = f" ({', '.join(ids[:shown])}{' ...' if len(ids) > shown else ''})" if ids else ""
        parts.append(_videos(len(ids), kind) + listed)
    return f"{task}: {', '.join(parts)}"


def left_out_warning(all_json) -> str | None:
    """The console warning for a dataset whose runs were trained without some of their training
    or validation videos (all.json's ``left_out_of_training``), or None (also without all.json)."""
    path = Path(all_json)
    if not path.is_file():
        return None
    left = json.loads(path.read_text()).get("left_out_of_training") or {}
    if not left:
        return None
    lines = "; ".join(_left_out_line(task, by_split, shown=5) for task, by_split in left.items())
    return f"{path}: trained without videos that have no features (unreadable or missing; reasons in all.json, left_out_of_training): {lines}"


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


def summary_markdown(collected: dict[str, Any], figure: str | None = None) -> str:
    """A Markdown table (task, model, metric, value, evaluated/total[, paper]) and notes;
    `figure`: the summary figure's path relative to the file, shown under the table."""
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
    if figure:
        lines += ["", f"![{collected['dataset']}: ours next to the paper per task]({figure})"]
    if notes:
        lines += ["", "Not evaluated:", "", *notes]
    if left := collected.get("left_out_of_training"):
        lines += ["", "Left out of training (no features; reasons in all.json):", ""]
        lines += [f"- {_left_out_line(task, by_split)}" for task, by_split in left.items()]
    validation = (collected.get("notes") or {}).get("validation")
    if validation:
        lines += ["", f"Validation split: {validation.get('description', validation.get('strategy'))}."]
    if collected.get("frame_unit"):
        lines += ["", f"Feature frame: {collected['frame_unit']}."]
    if collected.get("downloads"):
        lines += _downloads_markdown(collected["downloads"])
    return "\n".join(lines) + "\n"


def _format_delta(row: Mapping[str, Any]) -> str:
    """ours - paper in the paper's unit: percentage points for accuracy."""
    if row["delta"] is None:
        return "—"
    return f"{row['delta']:+.2f} pp" if row["metric"] == "accuracy" else f"{row['delta']:+.2f}"


RESULTS_KEYS = ("dataset", "n_runs", "results", "table")  # all.json keys that are not the run record
_LIST_SHOWN = 20  # items of a long list shown in results.html (all of them are in all.json)

_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1e293b; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #cbd5e1; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f1f5f9; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
table.record td:first-child { font-weight: 600; white-space: nowrap; }
table.record table { margin: 0; }
p.note { color: #475569; }
img { max-width: 100%; }
"""


def _html_value(value: Any) -> str:
    """A JSON value as HTML: objects as two-column tables, long lists cut (all.json has them all)."""
    if isinstance(value, Mapping):
        if not value:
            return "—"
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_html_value(v)}</td></tr>" for k, v in value.items())
        return f'<table class="record">{rows}</table>'
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        shown = value[:_LIST_SHOWN]
        more = f" … ({len(value)} in all.json)" if len(value) > _LIST_SHOWN else ""
        if all(not isinstance(item, (Mapping, list, tuple)) for item in shown):
            return html.escape(", ".join(str(item) for item in shown)) + more
        return "".join(f"<div>{_html_value(item)}</div>" for item in shown) + more
    if value is None:
        return "—"
    return html.escape(str(value))


def _downloads_html(downloads: Mapping[str, Any]) -> str:
    counts = "".join(
        f"<tr><td>{html.escape(status)}</td><td class=number>{n}</td>"
        f"<td class=number>{100 * downloads['fractions'][status]:.1f}%</td></tr>"
        for status, n in downloads["counts"].items()
    )
    parts = [
        f"<p>{downloads['available']} of {downloads['total']} videos available "
        f"({100 * downloads['available_fraction']:.1f}%), {downloads['shards']} download shards.</p>",
        f"<table><tr><th>status</th><th>videos</th><th>share</th></tr>{counts}</table>",
    ]
    for status in ("unavailable", "failed"):
        if ids := downloads.get(f"{status}_ids"):
            parts.append(f"<p>{status.capitalize()}: {_html_value(ids)}</p>")
    return "".join(parts)


def results_html(collected: Mapping[str, Any], figure_png: Path | str | None = None) -> str:
    """A self-contained HTML page: the table (one row per task x model: ours as mean ± std
    over seeds, evaluated/total, the paper's number, the difference), the summary figure
    (embedded) and the run record (all.json's keys beside the results, shown as they are)."""
    dataset = html.escape(collected["dataset"])
    rows = collected.get("table") or table_rows(collected["results"], collected.get("paper"))
    header = "".join(f"<th>{name}</th>" for name in ("task", "model", "metric", "ours", "evaluated/total", "paper", "difference"))
    body = "".join(
        "<tr>"
        f"<td>{html.escape(row['task'])}</td><td>{html.escape(row['model'])}</td><td>{html.escape(row['metric'])}</td>"
        f"<td class=number>{html.escape(_format_row_value(row))}</td><td class=number>{_evaluated(row)}</td>"
        f"<td class=number>{html.escape(_format_paper(row['paper']))}</td><td class=number>{_format_delta(row)}</td>"
        "</tr>"
        for row in rows
    )
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>Results: {dataset}</title>"
        f"<style>{_PAGE_STYLE}</style></head><body>",
        f"<h1>Results: {dataset}</h1>",
        f"<table class=results><tr>{header}</tr>{body}</table>",
        '<p class="note">ours: test metric of the best checkpoint; over several seeds, mean ± sample standard '
        "deviation. difference: ours − paper, in the paper's unit (accuracy: percentage points; MSE: lower is "
        "better). evaluated/total: test videos with features / test videos.</p>",
    ]
    sources = sorted({row["paper"]["source"] for row in rows if row["paper"] and row["paper"].get("source")})
    if sources:
        parts.append(f'<p class="note">paper: {html.escape("; ".join(sources))}</p>')
    missing = [row for row in rows if row["n_missing"]]
    if missing:
        items = "".join(
            f"<li>{html.escape(row['task'])}/{html.escape(row['model'])}: {row['n_missing']} test videos without "
            f"features ({_html_value(row['missing_ids'])})</li>"
            for row in missing
        )
        parts.append(f"<h2>Not evaluated</h2><ul>{items}</ul>")
    if figure_png is not None:
        data = base64.b64encode(Path(figure_png).read_bytes()).decode("ascii")
        parts.append(f'<h2>Ours next to the paper</h2><img alt="summary figure" src="data:image/png;base64,{data}">')
    record = {key: value for key, value in collected.items() if key not in RESULTS_KEYS}
    if record:
        cells = "".join(
            f"<tr><td>{html.escape(key)}</td><td>"
            f"{_downloads_html(value) if key == 'downloads' else _html_value(value)}</td></tr>"
            for key, value in record.items()
        )
        parts.append(f'<h2>Run record (all.json)</h2><table class="record">{cells}</table>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_aggregate(
    dataset: str,
    metrics_paths: Sequence[Path | str],
    all_json,
    summary_md,
    info: Mapping[str, Any] | None = None,
    download_manifests: Sequence[Path | str] = (),
    *,
    summary_png=None,
    results_page=None,
) -> dict[str, Any]:
    """Write all.json and summary.md, and when given the summary figure `summary_png`
    (shown in summary.md, which must sit in the same folder) and the HTML page `results_page`
    (:func:`results_html`); `info` (source, seeds, paper, notes, ...) is stored as given,
    `download_manifests` are summarised with vis4mer.download.coverage."""
    collected = collect(dataset, metrics_paths)
    info = dict(info or {})
    collected["table"] = table_rows(collected["results"], info.get("paper"))
    if left := left_out_of_training(collected["results"]):
        collected["left_out_of_training"] = left
    collected.update({key: value for key, value in info.items() if key not in collected})
    if download_manifests:
        from vis4mer.download import coverage

        collected["downloads"] = coverage(download_manifests)
    atomic.write_json(all_json, collected)
    if summary_png is not None:
        from vis4mer.plotting import plot_summary

        plot_summary(collected["table"], summary_png, title=dataset)
    atomic.write_text(summary_md, summary_markdown(collected, figure=Path(summary_png).name if summary_png else None))
    if results_page is not None:
        atomic.write_text(results_page, results_html(collected, summary_png))
    return collected
