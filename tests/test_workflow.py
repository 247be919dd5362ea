"""The Snakemake workflow: lint, config validation, dry-run DAGs, and a tiny end-to-end run.

Every run happens in a temporary copy of the workflow (Snakefile, workflow/, config/,
envs/), so results/ and .snakemake/ of the checkout are never touched.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from _workflow import REPO, RUN_RULES, TINY_CONFIG, TINY_SHARDS, copy_workflow, job_counts, snakemake, write_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


# ----------------------------------------------------------------------------- static checks


def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


# The conda environments (one per group of rules, pins as requirements/base.txt) are
# checked in tests/test_envs.py.


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"shard_sise": 4}, ["shard_sise", "Additional properties are not allowed"]),
        ({"shard_size": "four"}, ["shard_size", "'four' is not of type 'integer'"]),
        ({"training": {"window_frame": 60}}, ["window_frame", "Additional properties"]),
        ({"datasets": {"demo": {"frames": {"fps": 1, "size": 64, "decoder": "opencv"}}}}, ["decoder", "opencv"]),
        ({"datasets": {"demo": {"models": ["vis4mer", "lstm"]}}}, ["datasets.demo.models", "lstm"]),
    ],
)
def test_config_errors_fail_at_start_naming_the_key(workdir, tmp_path, override, expected):
    config = write_config(tmp_path / "bad.yaml", override)
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "demo.yaml"), str(config), "--", "results/demo/all.json")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for text in expected:
        assert text in output, output[-3000:]


# ----------------------------------------------------------------------------- dry runs


def test_demo_dry_run_lists_every_stage_with_shard_counts(workdir):
    result = snakemake(workdir, "-n", "--configfile=config/demo.yaml", "results/demo/all.json")
    assert result.returncode == 0, result.stderr[-3000:]
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    shards = -(-demo["datasets"]["demo"]["demo"]["n_videos"] // demo["shard_size"])
    assert job_counts(result.stdout + result.stderr) == {
        "demo_videos": 1, "frames": shards, "features": shards,
        "train": 3, "evaluate": 3, "confusion_plot": 3, "aggregate": 1,
    }
    assert "results/demo/features/vit_tiny_patch16_224/shard_0007.h5" in result.stdout
    # the shard size comes from the config
    result = snakemake(workdir, "-n", "--configfile=config/demo.yaml", "--config", "shard_size=50", "--", "results/demo/all.json")
    assert job_counts(result.stdout + result.stderr)["features"] == 3


def test_local_dataset_shards_follow_its_split_files(workdir, tmp_path):
    """A local dataset: shards from the union of the split files; absent videos are not inputs."""
    from vis4mer.sources.splits import SplitRow, write_split_csv

    data = tmp_path / "data"
    ids = [f"vid{i:02d}" for i in range(10)]
    for task, chunk in (("genre", ids[:7]), ("like", ids[3:])):  # overlapping, 10 distinct ids
        for split, rows in zip(("train", "val", "test"), (chunk[:3], chunk[3:5], chunk[5:])):
            write_split_csv(data / "splits" / task / f"{split}.csv", [SplitRow(v, i % 2, None) for i, v in enumerate(rows)])
    (data / "videos").mkdir()
    for vid in ids[:-1]:  # the last video is missing
        (data / "videos" / f"{vid}.mkv").write_bytes(b"not really a video")
    config = {
        "targets": ["mine"],
        "shard_size": 4,
        "datasets": {
            "mine": {
                "source": "local",
                "video_dir": str(data / "videos"),
                "split_dir": str(data / "splits"),
                "tasks": {"genre": {"type": "classification"}, "like": {"type": "regression"}},
                "frames": {"fps": 1, "size": 224},
                "features": {"backbone": "vit_large_patch16_224"},
                "models": ["vis4mer"],
            }
        },
    }
    path = write_config(tmp_path / "local.yaml", config)
    result = snakemake(workdir, "-n", "--configfile", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts == {"frames": 3, "features": 3, "train": 2, "evaluate": 2, "confusion_plot": 1, "aggregate": 1, "all": 1,
                      "fetch_weights": 1}  # pretrained weights (the default), fetched once before features
    assert "vid08.mkv" in result.stdout  # videos are inputs of their shard's frames job...
    assert "vid09." not in result.stdout  # ...except the missing one (the frames stage records it as skipped)
    # a missing split file is reported clearly
    shutil.rmtree(data / "splits" / "like")
    result = snakemake(workdir, "-n", "--configfile", str(path))
    assert result.returncode != 0 and "like/train.csv does not exist" in result.stdout + result.stderr


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny"))
    config = write_config(workdir / "config" / "tiny.yaml", TINY_CONFIG)
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config), timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return workdir, config, result


@pytest.mark.slow
def test_tiny_end_to_end_run(tiny_run):
    workdir, _, result = tiny_run
    assert job_counts(result.stdout + result.stderr) == {"demo_videos": 1, "frames": TINY_SHARDS, "features": TINY_SHARDS, **RUN_RULES, "all": 1}
    results = workdir / "results" / "tiny"
    collected = json.loads((results / "all.json").read_text())
    assert collected["dataset"] == "tiny" and collected["n_runs"] == 3
    assert list(collected["results"]) == ["order"]
    assert list(collected["results"]["order"]) == ["vis4mer", "meanpool", "transformer"]
    for model, metrics in collected["results"]["order"].items():
        assert metrics["task"] == "order" and metrics["model"] == model
        assert metrics["metric"] == "accuracy" and 0.0 <= metrics["value"] <= 1.0
        assert metrics["n_total"] == 2 and metrics["n_evaluated"] == 2 and metrics["n_missing"] == 0
        assert metrics["confusion"]["labels"] == ["a_first", "b_first"]
        assert sum(map(sum, metrics["confusion"]["matrix"])) == 2
        assert metrics["window_frames"] == 8 and metrics["eval_stride_frames"] == 1
        run = results / "order" / model
        for name in ("best.pt", "last.pt", "train_log.csv", "train_curve.png", "metrics.json", "confusion.png"):
            assert (run / name).stat().st_size > 0, name
        log = (run / "train_log.csv").read_text().splitlines()
        assert log[0].startswith("epoch,train_loss,val_metric") and len(log) == 2  # 1 epoch
    summary = (results / "summary.md").read_text()
    assert "| order | vis4mer | accuracy |" in summary and "| 2/2 |" in summary
    # every rule logged; heavy rules benchmarked; features come from shards of 3 videos
    logs = workdir / "logs" / "tiny"
    assert (logs / "order" / "vis4mer" / "train.log").read_text().count("device cpu") == 1
    assert "decoded 3 videos" in (logs / "frames" / "shard_0000.log").read_text()
    for bench in ("frames/shard_0000.tsv", "features/vit_tiny_patch16_224/shard_0002.tsv", "order/meanpool/train.tsv", "order/meanpool/evaluate.tsv"):
        assert (workdir / "benchmarks" / "tiny" / bench).exists(), bench
    assert not list(results.rglob("*.tmp-*"))


@pytest.mark.slow
def test_second_run_has_nothing_to_do(tiny_run):
    workdir, config, _ = tiny_run
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr
    assert job_counts(result.stdout + result.stderr) == {}


def report_variables(html: str) -> dict:
    """The JSON variables a Snakemake HTML report's page script reads (results, categories, workflow_desc)."""
    return {
        name: json.loads(value)
        for name, value in re.findall(r"<script id=\"[\w-]+\">\s*var (\w+) = (.*?);\s*</script>", html, re.S)
        if name in ("results", "categories", "workflow_desc")
    }


def data_uri_bytes(uri: str) -> bytes:
    header, data = uri.split(",", 1)
    assert header.endswith(";base64"), header
    return base64.b64decode(data)


@pytest.mark.slow
def test_report_holds_the_results_table_the_figures_and_what_was_run(tiny_run):
    workdir, config, _ = tiny_run
    result = snakemake(workdir, "--configfile", str(config), "--report", "report.html", "--", "results/tiny/all.json")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = report_variables((workdir / "report.html").read_text())
    run = "results/tiny/order/{}/{}"
    models = ("vis4mer", "meanpool", "transformer")
    assert {category: {sub: sorted(paths) for sub, paths in subs.items()} for category, subs in report["categories"].items()} == {"tiny": {
        "Results": ["results/tiny/all.json", "results/tiny/results.html", "results/tiny/summary.png"],
        "Training curves": sorted(run.format(model, "train_curve.png") for model in models),
        "Confusion matrices": sorted(run.format(model, "confusion.png") for model in models),
    }}
    results = report["results"]
    for model in models:
        for name in ("train_curve.png", "confusion.png"):
            entry = results[run.format(model, name)]
            assert entry["labels"] == {"task": "order", "model": model, "seed": "0"}
            assert entry["mime_type"] == "image/png" and data_uri_bytes(entry["data_uri"]).startswith(b"\x89PNG")
    caption = re.sub(r"<[^>]+>", "", results[run.format("vis4mer", "train_curve.png")]["caption"])
    assert "d_model: 8" in caption and "epochs: 1" in caption and "seed: 0" in caption  # the run's recipe
    figure = results["results/tiny/summary.png"]
    assert data_uri_bytes(figure["data_uri"]) == (workdir / "results" / "tiny" / "summary.png").read_bytes()
    page = data_uri_bytes(results["results/tiny/results.html"]["data_uri"]).decode()
    for model in models:  # the table: one row per task x model, evaluated/total, paper and difference columns
        assert re.search(rf"<td>order</td><td>{model}</td><td>accuracy</td><td class=number>\d+\.\d%</td><td class=number>2/2</td>", page)
    assert "<th>paper</th><th>difference</th>" in page and page.count("data:image/png;base64,") == 1  # the figure
    assert "<td>source</td><td>demo</td>" in page  # the run record
    description = report["workflow_desc"]
    assert "Dataset tiny" in description and "vit_tiny_patch16_224" in description and "window_frames" in description


@pytest.mark.slow
def test_forcerun_features_reruns_features_and_downstream_only(tiny_run):
    workdir, config, _ = tiny_run
    result = snakemake(workdir, "-n", "--configfile", str(config), "--forcerun", "features")
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout + result.stderr) == {"features": TINY_SHARDS, **RUN_RULES, "all": 1}


@pytest.mark.slow
def test_frames_are_temporary_unless_kept(tiny_run):
    workdir, config, _ = tiny_run
    frames = sorted((workdir / "results" / "tiny" / "frames").glob("shard_*.h5"))
    assert len(frames) == TINY_SHARDS  # keep_frames: true
    kept = snakemake(workdir, "-n", "--configfile", str(config), "--delete-temp-output")
    assert "shard_0000.h5" not in kept.stdout + kept.stderr
    temp = snakemake(workdir, "-n", "--configfile", str(config), "--config", "keep_frames=False", "--delete-temp-output")
    assert "results/tiny/frames/shard_0000.h5" in temp.stdout + temp.stderr


def _tiny_with(workdir: Path, name: str, change) -> Path:
    config = copy.deepcopy(TINY_CONFIG)
    change(config)
    return write_config(workdir / "config" / name, config)


@pytest.mark.slow
def test_settings_compare_by_value_and_a_missing_weights_file_fails(tiny_run):
    workdir, _, _ = tiny_run

    def reorder(config):
        config["training"] = dict(reversed(list(config["training"].items())))
        config["models"]["vis4mer"] = dict(reversed(list(config["models"]["vis4mer"].items())))
        config["datasets"]["tiny"]["demo"] = dict(reversed(list(config["datasets"]["tiny"]["demo"].items())))  # rule demo_videos

    result = snakemake(workdir, "-n", "--configfile", str(_tiny_with(workdir, "reordered.yaml", reorder)))
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
    weights = _tiny_with(workdir, "weights.yaml", lambda c: c["datasets"]["tiny"]["features"].update(weights="missing/vit.pth"))
    result = snakemake(workdir, "-n", "--configfile", str(weights))
    assert result.returncode != 0
    assert "datasets.tiny.features.weights: the weights file missing/vit.pth does not exist" in result.stdout + result.stderr
    typo = _tiny_with(workdir, "typo.yaml", lambda c: c["models"]["meanpool"]["kwargs"].update(d_stat=8))
    result = snakemake(workdir, "-n", "--configfile", str(typo))
    assert result.returncode != 0 and "models.meanpool.kwargs.d_stat: model 'meanpool' takes no argument 'd_stat'" in result.stdout + result.stderr


@pytest.mark.slow
def test_checkpoints_and_all_json_record_the_recipe(tiny_run):
    """The demo kind under the default recipe, paper: every item is the reference code's."""
    import h5py
    import torch

    workdir, _, _ = tiny_run
    results = workdir / "results" / "tiny"
    collected = json.loads((results / "all.json").read_text())
    assert collected["recipe"]["name"] == "paper" and collected["recipe"]["overridden"] == []
    assert collected["recipe"]["items"]["lr_schedule"] == "step" and collected["recipe"]["items"]["swin_segments"] is None
    vis4mer = torch.load(results / "order" / "vis4mer" / "best.pt", weights_only=True)
    assert vis4mer["recipe"] == {"name": "paper", "items": collected["recipe"]["items"]}
    assert vis4mer["model"]["kwargs"]["block_dropout"] == "channel" and vis4mer["model"]["kwargs"]["shared_eigenvalues"] is True
    assert (vis4mer["training"]["lr_schedule"], vis4mer["training"]["epoch_draws"], vis4mer["training"]["clip_frames"]) == ("step", "windows", "window")
    assert (vis4mer["features"]["resize"], vis4mer["features"]["normalise"]) == ("squash", "none")
    meanpool = torch.load(results / "order" / "meanpool" / "best.pt", weights_only=True)
    assert "block_dropout" not in meanpool["model"]["kwargs"]  # the baselines are ours
    assert meanpool["recipe"]["items"]["block_dropout"] is None and meanpool["recipe"]["items"]["lr_schedule"] == "step"
    with h5py.File(results / "frames" / "shard_0000.h5") as frames:
        assert frames.attrs["resize"] == "squash"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("items", "reruns"),
    [
        ({"resize": "crop"}, {"frames": TINY_SHARDS, "features": TINY_SHARDS, **RUN_RULES}),
        ({"normalise": "backbone"}, {"features": TINY_SHARDS, **RUN_RULES}),
        ({"lr_schedule": "plateau"}, RUN_RULES),
        ({"epoch_draws": "videos"}, RUN_RULES),
        ({"block_dropout": "element"}, {"train": 1, "evaluate": 1, "confusion_plot": 1, "aggregate": 1}),  # vis4mer's run only
    ],
)
def test_changing_the_recipe_reruns_what_it_affects(tiny_run, items, reruns):
    workdir, _, _ = tiny_run
    changed = {**TINY_CONFIG, "datasets": {"tiny": {**TINY_CONFIG["datasets"]["tiny"], "recipe_items": items}}}
    config = write_config(workdir / "config" / f"tiny_{next(iter(items))}.yaml", changed)
    result = snakemake(workdir, "-n", "--configfile", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout + result.stderr) == {**reruns, "all": 1}


@pytest.mark.slow
def test_a_failed_retrain_leaves_no_stale_results_and_the_next_run_redoes_them(tiny_run):
    """Changes the meanpool run of the shared tiny run: it is re-trained, and that fails. After the tests
    that read the shared run's results: it leaves the run without meanpool's results and all.json."""
    workdir, _, _ = tiny_run
    results = workdir / "results" / "tiny"
    wider = lambda c: c["models"]["meanpool"].update(d_model=16)  # noqa: E731
    failing = _tiny_with(workdir, "failing.yaml", lambda c: (wider(c), c["runtime"].update(device="cuda:99")))
    result = snakemake(workdir, "--cores", "1", "--configfile", str(failing))
    assert result.returncode != 0 and job_counts(result.stdout + result.stderr)["train"] == 1
    for path in ("order/meanpool/best.pt", "order/meanpool/metrics.json", "order/meanpool/confusion.png", "all.json", "summary.md"):
        assert not (results / path).exists(), path
    assert (results / "order" / "vis4mer" / "metrics.json").exists()  # other runs' results stay
    changed = _tiny_with(workdir, "wider.yaml", wider)
    result = snakemake(workdir, "-n", "--configfile", str(changed))
    assert job_counts(result.stdout + result.stderr) == {"train": 1, "evaluate": 1, "confusion_plot": 1, "aggregate": 1, "all": 1}
    result = snakemake(workdir, "-n", "--configfile", str(changed), "--", "results/tiny/order/meanpool/metrics.json")
    assert job_counts(result.stdout + result.stderr) == {"train": 1, "evaluate": 1}


@pytest.mark.slow
def test_half_written_shard_is_detected_and_rebuilt(tiny_run):
    """Runs last: it rebuilds a shard of the shared tiny run."""
    workdir, config, _ = tiny_run
    shard = workdir / "results" / "tiny" / "features" / "vit_tiny_patch16_224" / "shard_0001.h5"
    shard.write_bytes(half := shard.read_bytes()[:4096])  # as if copied mid-write
    result = snakemake(workdir, "-n", "--configfile", str(config), "--forcerun", "train")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shard_0001.h5 is an incomplete shard (no 'complete' attribute): a run removes and rebuilds it" in result.stdout + result.stderr
    assert shard.read_bytes() == half  # a dry run changes nothing
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config), "--until", "features")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "shard_0001.h5 is an incomplete shard (no 'complete' attribute): removed, it will be rebuilt" in result.stdout + result.stderr
    assert job_counts(result.stdout + result.stderr) == {"features": 1}
    from vis4mer.shards import is_complete

    assert is_complete(shard)
