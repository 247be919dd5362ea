"""all.json and summary.md from per-run metrics.json files."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import matplotlib.image
import pytest

from vis4mer.aggregate import collect, summary_markdown, write_aggregate


def metrics(task, model, value, metric="accuracy", n_evaluated=20, n_missing=0, **extra):
    return {
        "dataset": "toy", "task": task, "model": model, "task_type": "classification" if metric == "accuracy" else "regression",
        "metric": metric, "value": value, "n_total": n_evaluated + n_missing, "n_evaluated": n_evaluated,
        "n_missing": n_missing, "missing_ids": [f"m{i}" for i in range(n_missing)], **extra,
    }


@pytest.fixture
def metric_files(tmp_path):
    runs = [
        metrics("order", "vis4mer", 0.95, confusion={"labels": ["a", "b"], "matrix": [[10, 0], [1, 9]]}),
        metrics("order", "meanpool", 0.5),
        metrics("order", "transformer", 0.8, n_evaluated=18, n_missing=2),
        metrics("views", "vis4mer", 0.1234567, metric="mse"),
    ]
    paths = []
    for run in runs:
        path = tmp_path / run["task"] / run["model"] / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(run))
        paths.append(path)
    return paths


def test_write_aggregate_all_json_and_summary(tmp_path, metric_files):
    write_aggregate("toy", metric_files, tmp_path / "all.json", tmp_path / "summary.md")
    collected = json.loads((tmp_path / "all.json").read_text())
    assert collected["dataset"] == "toy" and collected["n_runs"] == 4
    assert list(collected["results"]) == ["order", "views"]
    assert list(collected["results"]["order"]) == ["vis4mer", "meanpool", "transformer"]  # input order kept
    assert collected["results"]["order"]["vis4mer"]["value"] == 0.95
    assert collected["results"]["order"]["vis4mer"]["confusion"]["matrix"] == [[10, 0], [1, 9]]
    assert collected["results"]["views"]["vis4mer"]["metric"] == "mse"

    summary = (tmp_path / "summary.md").read_text()
    lines = summary.splitlines()
    assert lines[0] == "# Results: toy"
    assert "| task | model | metric | value | evaluated/total |" in lines
    assert "| order | vis4mer | accuracy | 95.0% | 20/20 |" in lines
    assert "| order | meanpool | accuracy | 50.0% | 20/20 |" in lines
    assert "| order | transformer | accuracy | 80.0% | 18/20 |" in lines
    assert "| views | vis4mer | mse | 0.1235 | 20/20 |" in lines
    assert "- order/transformer: 2 test videos without features (m0, m1)" in lines


def test_summary_shows_missing_value_as_na():
    collected = {"dataset": "toy", "results": {"t": {"m": metrics("t", "m", None, n_evaluated=0, n_missing=3)}}}
    assert "| t | m | accuracy | n/a | 0/3 |" in summary_markdown(collected)


def test_collect_rejects_duplicates_and_incomplete_metrics(tmp_path, metric_files):
    with pytest.raises(ValueError, match="second result"):
        collect("toy", [metric_files[0], metric_files[0]])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "t", "model": "m"}))
    with pytest.raises(ValueError, match="no 'metric'"):
        collect("toy", [bad])
    with pytest.raises(ValueError, match="belongs to dataset"):
        collect("other", metric_files[:1])


def test_seeds_paper_numbers_and_download_coverage(tmp_path):
    """Seeded runs of a model become one row (mean, sample std); the paper's number sits beside it."""
    paths = []
    for task, metric, values in (("genre", "accuracy", (0.5, 0.7)), ("like_ratio", "mse", (0.30, 0.34))):
        for seed, value in zip((0, 1), values):
            path = tmp_path / task / f"seed_{seed}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(metrics(task, f"vis4mer/seed_{seed}", value, metric=metric, n_evaluated=9, n_missing=1)))
            paths.append(path)
    manifest = tmp_path / "downloads.json"
    manifest.write_text(json.dumps({"ids": {
        "a": {"status": "downloaded", "message": "", "path": "a.mp4", "attempts": 1},
        "b": {"status": "unavailable", "message": "gone", "path": None, "attempts": 1},
    }}))
    info = {"source": "lvu", "seeds": [0, 1], "paper": {
        "genre": {"value": 54.71, "metric": "accuracy", "unit": "%", "source": "ViS4mer, Table 1"},
        "like_ratio": {"value": 0.26, "metric": "mse", "unit": "MSE", "source": "ViS4mer, Table 1"}}}
    collected = write_aggregate("toy", paths, tmp_path / "all.json", tmp_path / "summary.md", info, [manifest])
    assert collected["n_runs"] == 4 and list(collected["results"]["genre"]) == ["vis4mer/seed_0", "vis4mer/seed_1"]
    genre, like = collected["table"]
    assert genre["model"] == "vis4mer" and genre["seeds"] == [0, 1] and genre["mean"] == pytest.approx(0.6)
    assert genre["std"] == pytest.approx(0.1414213, rel=1e-5) and genre["delta"] == pytest.approx(60 - 54.71)
    assert like["mean"] == pytest.approx(0.32) and like["delta"] == pytest.approx(0.06)
    assert collected["downloads"]["counts"] == {"downloaded": 1, "local": 0, "unavailable": 1, "failed": 0}
    assert json.loads((tmp_path / "all.json").read_text())["source"] == "lvu"
    lines = (tmp_path / "summary.md").read_text().splitlines()
    assert "| task | model | metric | value | evaluated/total | paper |" in lines
    assert "| genre | vis4mer | accuracy | 60.0 ± 14.1% (2 seeds) | 9/10 | 54.71% |" in lines
    assert "| like_ratio | vis4mer | mse | 0.32 ± 0.028 (2 seeds) | 9/10 | 0.26 |" in lines
    assert "1 of 2 videos available (50.0%), 1 download shards." in lines
    assert "Unavailable: b" in lines


class _Tables(HTMLParser):
    """The cells of every <table> of a page, row by row (nested tables flattened into their own)."""

    def __init__(self):
        super().__init__()
        self.tables, self._open, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._open.append([])
            self.tables.append(self._open[-1])
        elif tag == "tr" and self._open:
            self._open[-1].append([])
        elif tag in ("td", "th") and self._open:
            self._open[-1][-1].append("")
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._open.pop()

    def handle_data(self, data):
        if self._open and self._open[-1] and self._open[-1][-1]:
            self._open[-1][-1][-1] += data


def test_results_page_has_the_table_with_differences_the_figure_and_the_run_record(tmp_path):
    paths = []
    for task, metric, values in (("genre", "accuracy", (0.5, 0.7)), ("like_ratio", "mse", (0.30, 0.34)), ("year", "accuracy", (0.4,))):
        for seed, value in enumerate(values):
            path = tmp_path / task / f"seed_{seed}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(metrics(task, f"vis4mer/seed_{seed}", value, metric=metric, n_evaluated=9, n_missing=1)))
            paths.append(path)
    info = {
        "source": "lvu", "seeds": [0, 1],
        "paper": {"genre": {"value": 54.71, "metric": "accuracy", "unit": "%", "source": "ViS4mer, Table 1"},
                  "like_ratio": {"value": 0.26, "metric": "mse", "unit": "MSE", "source": "ViS4mer, Table 1"}},
        "features": {"backbone": "vit_large_patch16_224", "weights": {"sha256": "ab12" * 16}},  # recorded by others: shown as given
    }
    collected = write_aggregate("toy", paths, tmp_path / "all.json", tmp_path / "summary.md", info,
                                summary_png=tmp_path / "summary.png", results_page=tmp_path / "results.html")
    assert collected["n_runs"] == 5
    assert matplotlib.image.imread(tmp_path / "summary.png").shape[1] > 400
    assert "![toy: ours next to the paper per task](summary.png)" in (tmp_path / "summary.md").read_text().splitlines()

    page = _Tables()
    page.feed((tmp_path / "results.html").read_text())
    results = page.tables[0]
    assert results[0] == ["task", "model", "metric", "ours", "evaluated/total", "paper", "difference"]
    assert results[1:] == [
        ["genre", "vis4mer", "accuracy", "60.0 ± 14.1% (2 seeds)", "9/10", "54.71%", "+5.29 pp"],
        ["like_ratio", "vis4mer", "mse", "0.32 ± 0.028 (2 seeds)", "9/10", "0.26", "+0.06"],
        ["year", "vis4mer", "accuracy", "40.0%", "9/10", "—", "—"],
    ]
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")
    assert base64.b64decode(page.images[0].split(",", 1)[1]) == (tmp_path / "summary.png").read_bytes()
    record = dict(page.tables[1])  # the run record: all.json beside the results, nested objects as their own tables
    assert record["source"] == "lvu" and record["seeds"] == "0, 1" and set(record) == {"source", "seeds", "paper", "features"}
    nested = {key: value for table in page.tables[2:] for key, value in table}
    assert nested["backbone"] == "vit_large_patch16_224" and nested["sha256"] == "ab12" * 16
