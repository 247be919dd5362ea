"""all.json and summary.md from per-run metrics.json files."""

from __future__ import annotations

import json

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
