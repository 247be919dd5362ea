"""The `vis4mer` command: help, `predict` output and exit status, bad inputs, and (slow) a
model trained by the pipeline predicting its test videos with the accuracy it reported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from _predict_data import tiny_run, write_audio
from vis4mer.cli import main

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINT = Path(sys.executable).parent / "vis4mer"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def _predict_json(capsys, *argv) -> tuple[int, dict, str]:
    status = main(["predict", "--no-progress", "--json", "-", *map(str, argv)])
    captured = capsys.readouterr()
    return status, json.loads(captured.out), captured.err


# ----------------------------------------------------------------------------- help and usage


def test_top_level_help_lists_the_predict_command():
    result = subprocess.run([str(ENTRY_POINT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "predict" in result.stdout and "<command>" in result.stdout
    result = subprocess.run([str(ENTRY_POINT), "predict", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for option in ("--model", "--top-k", "--json", "--device", "--stride", "--stream", "--every", "--backbone-checkpoint"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: <command>"),
        (["predict", "video.mp4"], "the following arguments are required: --model"),
        (["predict", "--model", "m.pt", "--top-k", "0", "video.mp4"], "must be >= 1"),
        (["train"], "invalid choice: 'train'"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_or_unusable_model_exits_2(capsys, run, tmp_path):
    video = run.videos[sorted(run.videos)[0]]
    assert main(["predict", "--model", str(tmp_path / "missing.pt"), str(video)]) == 2
    assert "model checkpoint not found" in capsys.readouterr().err
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert main(["predict", "--model", str(tmp_path / "text.pt"), str(video)]) == 2
    assert "not a usable vis4mer-checkpoint-1 training checkpoint" in capsys.readouterr().err
    assert main(["predict", "--model", str(run.transformer), "--stream", str(video)]) == 2
    assert "streaming needs a vis4mer model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- output


def test_human_output_and_json_file(capsys, run, tmp_path):
    videos = [run.videos[v] for v in sorted(run.videos)[:2]]
    out = tmp_path / "predictions.json"
    assert main(["predict", "--no-progress", "--model", str(run.classifier), "--top-k", "1", "--json", str(out), *map(str, videos)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["mode"] == "batch" and report["n_ok"] == 2 and report["n_failed"] == 0
    assert (report["backbone"], report["weights"], report["window_frames"], report["stride_frames"]) == ("vit_tiny_patch16_224", "random-seed0", 4, 1)
    for video, entry in zip(videos, report["videos"]):
        assert entry["status"] == "ok" and entry["path"] == str(video)
        assert len(entry["top_k"]) == 1 and len(entry["probabilities"]) == 2
        assert entry["label"] in ("a_first", "b_first") and entry["n_windows"] == entry["n_frames"] - 4 + 1
        assert np.isclose(sum(entry["probabilities"]), 1.0)
        assert np.allclose(np.array(entry["vector"]) / entry["n_windows"], entry["probabilities"])
        assert f"{video}: {entry['label']} ({entry['probability']:.4f})" in printed
        assert f"   1. {entry['label']}" in printed


def test_regression_output_is_in_the_task_units(capsys, run):
    status, report, _ = _predict_json(capsys, "--model", run.regressor, run.videos[sorted(run.videos)[0]])
    assert status == 0 and report["task"]["label_transform"] == {"log": True, "scale": 2.0, "offset": -3.0}
    entry = report["videos"][0]
    assert entry["quantity"] == "n_frames" and entry["target"] == entry["vector"][0]
    assert entry["value"] == pytest.approx(np.exp((entry["target"] + 3.0) / 2.0))
    assert "top_k" not in entry


def test_stream_prints_running_predictions_and_matches_batch(capsys, run):
    video = run.videos[sorted(run.videos)[0]]
    assert main(["predict", "--no-progress", "--model", str(run.classifier), "--stream", "--every", "2", str(video)]) == 0
    printed = capsys.readouterr().out
    assert f"{video} @ 2s:" in printed and f"{video} @ 4s:" in printed
    _, stream, _ = _predict_json(capsys, "--model", run.classifier, "--stream", "--every", "2", video)
    _, batch, _ = _predict_json(capsys, "--model", run.classifier, video)
    assert stream["mode"] == "stream" and [u["t"] for u in stream["videos"][0]["running"]][:2] == [2.0, 4.0]
    np.testing.assert_allclose(stream["videos"][0]["vector"], batch["videos"][0]["vector"], rtol=1e-4)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_reported_per_file_and_the_rest_predicted(capsys, run, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = [shutil.copy(run.videos[v], folder / f"{v}.mp4") for v in sorted(run.videos)[:2]]
    (folder / "text.mp4").write_text("not a video\n")
    write_audio(folder / "audio.mp4")
    (folder / "readme.txt").write_text("ignored: not a video extension")
    (tmp_path / "empty_dir").mkdir()
    status, report, err = _predict_json(
        capsys, "--model", run.classifier, folder, tmp_path / "missing.mp4", tmp_path / "empty_dir", folder / "readme.txt",
    )
    assert status == 1
    by_name = {Path(entry["input"]).name: entry for entry in report["videos"]}
    assert list(by_name) == ["audio.mp4", good[0].name, good[1].name, "text.mp4", "missing.mp4", "empty_dir", "readme.txt"]
    assert [by_name[Path(g).name]["status"] for g in good] == ["ok", "ok"]
    expected = {
        "audio.mp4": "no video stream",
        "text.mp4": "not a readable video container",
        "missing.mp4": "file not found",
        "empty_dir": "no video files in directory",
        "readme.txt": "unsupported container '.txt'",
    }
    for name, message in expected.items():
        assert by_name[name]["status"] == "error" and message in by_name[name]["error"], by_name[name]
        assert message in err
    assert report["n_ok"] == 2 and report["n_failed"] == 5
    assert "5 of 7 inputs failed" in err


def test_json_path_never_overwrites_an_input_or_a_non_json_file(capsys, tmp_path):
    """Checked before the model is loaded: --model need not exist for these refusals."""
    video = tmp_path / "a.mp4"
    video.write_bytes(b"precious video bytes")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "b.mp4").write_bytes(b"another video")
    cases = [
        (["--json", str(video), str(video), str(tmp_path / "c.mp4")], "is one of the input videos"),
        (["--json", str(folder / "b.mp4"), str(folder)], "is one of the input videos"),  # found in a directory given
        (["--json", str(notes), str(video)], "exists and is not a JSON file"),
        (["--json", str(folder), str(video)], "is a directory"),
    ]
    for argv, message in cases:
        assert main(["predict", "--no-progress", "--model", str(tmp_path / "none.pt"), *argv]) == 2
        assert message in capsys.readouterr().err
    assert video.read_bytes() == b"precious video bytes" and (folder / "b.mp4").read_bytes() == b"another video"
    assert notes.read_text() == "my notes\n"
    # an earlier --json result may be replaced: the check passes, and the missing model is the error
    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"videos": []}\n')
    assert main(["predict", "--no-progress", "--model", str(tmp_path / "none.pt"), "--json", str(earlier), str(video)]) == 2
    err = capsys.readouterr().err
    assert "--json" not in err and "none.pt" in err


def test_an_empty_directory_alone_exits_1(capsys, run, tmp_path):
    status, report, err = _predict_json(capsys, "--model", run.classifier, tmp_path)
    assert status == 1 and report["n_videos"] == 1 and "no video files in directory" in err


# ----------------------------------------------------------------------------- the pipeline's own model (slow)

PIPELINE_FILES = ("Snakefile", "workflow", "config", "envs")
TINY_DEMO = {
    "targets": ["tiny"],
    "shard_size": 5,
    "keep_frames": False,
    "seed": 0,
    "datasets": {
        "tiny": {
            "source": "demo",
            "demo": {"n_videos": 10, "seed": 2, "size": 32, "fps": 2.0, "min_seconds": 6, "max_seconds": 10,
                     "event_seconds": [1.0, 1.0], "min_gap_seconds": 2.0, "split_fractions": [0.4, 0.2, 0.4]},
            "tasks": {"order": {"type": "classification"}},
            "frames": {"fps": 1, "size": 32, "decoder": "decord"},
            "features": {"backbone": "vit_tiny_patch16_224", "weights": "random"},
            "models": ["vis4mer"],
        }
    },
    "models": {"vis4mer": {"arch": "vis4mer", "d_model": 8, "n_layers": 2, "dropout": 0.0, "kwargs": {"d_state": 8}}},
    "training": {"window_frames": 4, "tokens": "all", "batch_size": 2, "epochs": 2, "val_stride_frames": 1},
    "evaluation": {"eval_stride_frames": 1},
    "runtime": {"device": "cpu", "feature_batch_size": 16, "eval_batch_size": 16, "num_workers": 0, "progress": False,
                "threads": {"frames": 1, "features": 1, "train": 1, "evaluate": 1}},
}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    for name in PIPELINE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, workdir / name)
    (workdir / "config" / "tiny.yaml").write_text(yaml.safe_dump(TINY_DEMO, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/tiny.yaml", "--", "results/tiny/order/vis4mer/metrics.json"],
        cwd=workdir, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return workdir


def _cli_json(workdir: Path, *argv) -> dict:
    result = subprocess.run([str(ENTRY_POINT), "predict", "--no-progress", "--json", "-", *map(str, argv)],
                            cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.slow
def test_pipeline_model_predicts_its_test_videos_as_evaluation_did(pipeline_run):
    from vis4mer.feature_store import FeatureStore
    from vis4mer.evaluation import predict_videos
    from vis4mer.sources.splits import read_split_csv
    from vis4mer.checkpoint import load_model

    workdir = pipeline_run
    results = workdir / "results" / "tiny"
    checkpoint = results / "order" / "vis4mer" / "best.pt"
    metrics = json.loads((results / "order" / "vis4mer" / "metrics.json").read_text())
    rows = read_split_csv(results / "splits" / "order" / "test.csv")
    meta = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert {k: meta["frames"][k] for k in ("fps", "size", "decoder")} == {"fps": 1, "size": 32, "decoder": "decord"}
    assert meta["eval_stride_frames"] == 1
    assert meta["features"]["weights"] == "random-seed0"

    # the pipeline's per-video predictions, from its feature shards (what evaluate computed)
    model, _ = load_model(checkpoint)
    store = FeatureStore(sorted((results / "features" / "vit_tiny_patch16_224").glob("shard_*.h5")))
    pipeline, _ = predict_videos(model, store, rows, window_frames=4, tokens="all", stride_frames=1, batch_size=16,
                                 device="cpu", task_type="classification")

    videos = [results / "videos" / f"{row.video_id}.mp4" for row in rows]
    batch = _cli_json(workdir, "--model", checkpoint, "--batch-size", "16", *videos)
    stream = _cli_json(workdir, "--model", checkpoint, "--stream", "--every", "5", *videos)
    assert batch["n_ok"] == stream["n_ok"] == len(rows) >= 4
    correct, stream_diff, pipeline_diff = 0, 0.0, 0.0
    for row, b, s in zip(rows, batch["videos"], stream["videos"]):
        assert b["class"] == int(np.argmax(pipeline[row.video_id])), row.video_id
        correct += b["class"] == int(row.label)
        np.testing.assert_allclose(b["vector"], pipeline[row.video_id], rtol=1e-3)
        np.testing.assert_allclose(s["vector"], b["vector"], rtol=1e-4)
        assert b["n_frames"] == store.n_frames(row.video_id)
        stream_diff = max(stream_diff, float(np.max(np.abs(np.subtract(s["vector"], b["vector"])) / np.abs(b["vector"]))))
        pipeline_diff = max(pipeline_diff, float(np.max(np.abs(np.subtract(b["vector"], pipeline[row.video_id])) / np.abs(pipeline[row.video_id]))))
    assert correct / len(rows) == metrics["value"]
    print(f"\naccuracy: CLI {correct}/{len(rows)}, pipeline metrics.json {metrics['value']}; max relative difference "
          f"CLI vs evaluation {pipeline_diff:.2e}, stream vs batch {stream_diff:.2e}; seconds per video: batch "
          f"{[b['seconds'] for b in batch['videos']]}, stream {[s['seconds'] for s in stream['videos']]}")
