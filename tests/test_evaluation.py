"""Video-level evaluation: summed softmax over windows, missing rows, confusion matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from _synthetic_features import write_feature_shard
from vis4mer.feature_store import FeatureStore
from vis4mer.evaluation import (
    aggregate_windows,
    compute_metrics,
    confusion_matrix,
    evaluate_checkpoint,
    predict_videos,
    score,
    video_loss,
)
from vis4mer.sources.splits import SplitRow


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_aggregate_windows_sums_softmax_not_logits():
    # One window is very sure of class 0, five mildly prefer class 1. Summed logits
    # pick class 0 (10 vs 2.5); summed probabilities pick class 1 (2.89 vs 3.11).
    logits = np.array([[10.0, 0.0]] + [[0.0, 0.5]] * 5)
    combined = aggregate_windows(logits, "classification")
    np.testing.assert_allclose(combined, softmax(logits).sum(axis=0))
    assert combined.sum() == pytest.approx(len(logits))
    assert combined.argmax() == 1
    assert logits.sum(axis=0).argmax() == 0


def test_aggregate_windows_regression_is_the_mean():
    np.testing.assert_allclose(aggregate_windows(np.array([[1.0], [2.0], [6.0]]), "regression"), [3.0])
    with pytest.raises(ValueError):
        aggregate_windows(np.zeros((0, 2)), "classification")


def test_confusion_matrix_rows_true_columns_predicted():
    matrix = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_compute_metrics_counts_and_lists_missing_rows():
    rows = [SplitRow("a", 0), SplitRow("b", 1), SplitRow("c", 1)]
    predictions = {"a": np.array([2.0, 0.1]), "b": np.array([0.5, 1.5]), "c": np.array([1.2, 0.8])}
    missing = {"z": "skipped: file not found", "y": "absent from the feature shards"}
    metrics = compute_metrics(predictions, rows, missing, "classification", ["neg", "pos"])
    assert metrics["metric"] == "accuracy"
    assert metrics["value"] == pytest.approx(2 / 3)
    assert (metrics["n_total"], metrics["n_evaluated"], metrics["n_missing"]) == (5, 3, 2)
    assert metrics["missing_ids"] == ["y", "z"]
    assert metrics["missing_reasons"]["z"] == "skipped: file not found"
    assert metrics["confusion"]["labels"] == ["neg", "pos"]
    assert metrics["confusion"]["matrix"] == [[1, 0], [1, 1]]
    json.dumps(metrics, allow_nan=False)  # JSON-ready


def test_compute_metrics_regression_mse_and_empty():
    rows = [SplitRow("a", 1.0), SplitRow("b", 3.0)]
    metrics = compute_metrics({"a": np.array([2.0]), "b": np.array([3.0])}, rows, {}, "regression")
    assert metrics["metric"] == "mse" and metrics["value"] == pytest.approx(0.5)
    assert "confusion" not in metrics
    empty = compute_metrics({}, [], {"a": "absent"}, "regression")
    assert empty["value"] is None and empty["n_missing"] == 1
    assert np.isnan(score({}, [], "classification"))


def test_video_loss_is_nll_of_window_averaged_probabilities():
    rows = [SplitRow("a", 0), SplitRow("b", 1)]
    # a: 2 windows, summed probabilities [1.5, 0.5] -> p(true) 0.75; b: 1 window [0.2, 0.8]
    predictions = {"a": np.array([1.5, 0.5]), "b": np.array([0.2, 0.8])}
    assert video_loss(predictions, rows, "classification") == pytest.approx(-(np.log(0.75) + np.log(0.8)) / 2)
    regression = {"a": np.array([1.0]), "b": np.array([3.0])}
    assert video_loss(regression, [SplitRow("a", 0.0), SplitRow("b", 1.0)], "regression") == pytest.approx(2.5)


class WindowEcho(nn.Module):
    """Logits [mean of feature 0, 0]: lets a test predict each window's output."""

    def forward(self, x):
        return torch.stack([x[:, :, 0].mean(dim=1), torch.zeros(len(x))], dim=1)


def test_predict_videos_batches_windows_across_videos(tmp_path):
    frames = np.arange(7, dtype=np.float32)[:, None, None] * np.ones((1, 1, 2), dtype=np.float32)
    shard = write_feature_shard(tmp_path / "s.h5", {"a": frames, "b": -frames[:3]})
    store = FeatureStore([shard])
    rows = [SplitRow("a", 0), SplitRow("b", 1)]
    predictions, counts = predict_videos(
        WindowEcho(), store, rows, window_frames=3, tokens="all", stride_frames=2, batch_size=2,
        device="cpu", task_type="classification",
    )
    # a: windows at 0, 2, 4 (means 1, 3, 5); b: one window (mean -1)
    expected_a = softmax(np.array([[1.0, 0], [3.0, 0], [5.0, 0]])).sum(axis=0)
    np.testing.assert_allclose(predictions["a"], expected_a, rtol=1e-5)
    np.testing.assert_allclose(predictions["b"], softmax(np.array([[-1.0, 0]]))[0], rtol=1e-5)
    assert counts == {"n_windows": 4, "n_padded_windows": 0}


def test_evaluate_checkpoint_rebuilds_model_and_reports_missing(tmp_path):
    from vis4mer.atomic import torch_save
    from vis4mer.checkpoint import FORMAT as CHECKPOINT_FORMAT

    frames = np.ones((5, 1, 2), dtype=np.float32)
    shard = write_feature_shard(
        tmp_path / "s.h5", {"pos1": frames, "pos2": frames[:2], "neg": -frames}, skipped={"gone": "empty file"}
    )
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "run": "toy/task/echo",
        "model": {"arch": "echo", "kwargs": {}},
        "task": {"type": "classification", "label_names": ["low", "high"], "metric": "accuracy", "mode": "max"},
        "features": {"backbone": "synthetic", "weights": "random", "n_tokens": 1, "dim": 2},
        "window_frames": 4,
        "tokens": "all",
        "epoch": 3,
        "val_metric": 1.0,
        "state_dict": {},
    }
    torch_save(checkpoint, tmp_path / "best.pt")
    # the echo model predicts class 0 ("low") for positive features, 1 for negative
    rows = [SplitRow("pos1", 0), SplitRow("pos2", 1), SplitRow("neg", 1), SplitRow("gone", 0), SplitRow("nowhere", 1)]
    metrics = evaluate_checkpoint(
        tmp_path / "best.pt", [shard], rows, stride_frames=1, batch_size=8, device="cpu",
        model_factory=lambda arch, **kw: WindowEcho(),
    )
    assert metrics["value"] == pytest.approx(2 / 3)
    assert metrics["n_evaluated"] == 3 and metrics["n_missing"] == 2 and metrics["n_total"] == 5
    assert metrics["missing_ids"] == ["gone", "nowhere"]
    assert "empty file" in metrics["missing_reasons"]["gone"]
    assert metrics["confusion"] == {
        "labels": ["low", "high"], "matrix": [[1, 0], [1, 1]], "rows": "true class", "columns": "predicted class",
    }
    # pos1: 5 frames -> windows at 0 and 1; pos2 and neg: one window each (pos2 padded)
    assert metrics["n_windows"] == 2 + 1 + 2 and metrics["n_padded_windows"] == 1
    assert metrics["checkpoint"]["epoch"] == 3


def test_evaluate_checkpoint_refuses_other_features(tmp_path):
    from vis4mer.atomic import torch_save
    from vis4mer.checkpoint import FORMAT as CHECKPOINT_FORMAT

    shard = write_feature_shard(tmp_path / "s.h5", {"a": np.ones((3, 4, 2), dtype=np.float32)})
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "run": "r", "model": {"arch": "echo", "kwargs": {}},
        "task": {"type": "classification", "label_names": ["a", "b"]},
        "features": {"n_tokens": 1, "dim": 2}, "window_frames": 4, "tokens": "all", "epoch": 1, "val_metric": 0.0,
        "state_dict": {},
    }
    torch_save(checkpoint, tmp_path / "best.pt")
    with pytest.raises(ValueError, match="tokens, dim"):
        evaluate_checkpoint(tmp_path / "best.pt", [shard], [SplitRow("a", 0)], stride_frames=1, batch_size=2,
                            model_factory=lambda arch, **kw: WindowEcho())
