"""Video-level evaluation: every window at a stride, combined per video.

As in the paper's evaluation, each video is covered by windows of ``window_frames``
frames starting every ``stride_frames`` frames (1 frame = 1 s at 1 fps); see
:func:`vis4mer.windows.window_starts`. The model scores every window (in batches),
and the video's prediction is

* classification: the SUM over windows of the softmax probabilities; the predicted
  class is its argmax (a confident window counts more than an unsure one);
* regression: the MEAN over windows of the predicted value.

Split rows whose video has no features (skipped by an earlier stage, or absent from
the shards) are not evaluated; they are counted and listed in the metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vis4mer.checkpoint import load_model
from vis4mer.devices import resolve_device
from vis4mer.feature_store import FeatureStore
from vis4mer.windows import AllWindowsDataset
from vis4mer.sources.splits import SplitRow

logger = logging.getLogger("vis4mer.evaluation")

METRICS = {"classification": ("accuracy", "max"), "regression": ("mse", "min")}


def metric_for(task_type: str) -> tuple[str, str]:
    """``(metric name, "max" | "min")`` of a task type."""
    try:
        return METRICS[task_type]
    except KeyError:
        raise ValueError(f"task type must be one of {sorted(METRICS)}, got {task_type!r}") from None


def aggregate_windows(outputs: np.ndarray, task_type: str) -> np.ndarray:
    """Combine one video's window outputs ``[n_windows, d_output]`` into one vector.

    Classification: sum of per-window softmax (shape ``[n_classes]``).
    Regression: mean of per-window outputs (shape ``[d_output]``).
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[0] == 0:
        raise ValueError(f"expected window outputs [n_windows >= 1, d_output], got shape {outputs.shape}")
    if task_type == "classification":
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities.sum(axis=0)
    if task_type == "regression":
        return outputs.mean(axis=0)
    raise ValueError(f"task type must be one of {sorted(METRICS)}, got {task_type!r}")


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """``[n_classes, n_classes]`` counts; rows are the true class, columns the prediction."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    for true, pred in zip(y_true, y_pred):
        matrix[int(true), int(pred)] += 1
    return matrix


@torch.no_grad()
def predict_videos(
    model: torch.nn.Module,
    store: FeatureStore,
    rows: Sequence[SplitRow],
    *,
    window_frames: int,
    tokens: str,
    stride_frames: int,
    batch_size: int,
    device: torch.device | str,
    task_type: str,
    progress: bool = False,
    description: str = "eval",
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Aggregated prediction per video (rows must all have features) and window counts.

    Returns ``({video_id: aggregated vector}, {"n_windows": .., "n_padded_windows": ..})``.
    Windows are scored in batches of ``batch_size``; a batch may span videos.
    """
    dataset = AllWindowsDataset(store, rows, window_frames, tokens, stride_frames)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    was_training = model.training
    model.eval()
    per_clip: list[list[np.ndarray]] = [[] for _ in rows]
    n_padded = 0
    try:
        for x, clips, padded in tqdm(loader, desc=description, disable=not progress, mininterval=5.0):
            outputs = model(x.to(device)).float().cpu().numpy()
            n_padded += int(padded.sum())
            for clip, output in zip(clips.tolist(), outputs):
                per_clip[clip].append(output)
    finally:
        model.train(was_training)
    predictions = {row.video_id: aggregate_windows(np.stack(outs), task_type) for row, outs in zip(rows, per_clip)}
    return predictions, {"n_windows": len(dataset), "n_padded_windows": n_padded}


def score(predictions: dict[str, np.ndarray], rows: Sequence[SplitRow], task_type: str) -> float:
    """Accuracy (classification) or mean squared error (regression) over `rows`; NaN if none."""
    if not rows:
        return float("nan")
    if task_type == "classification":
        return float(np.mean([int(np.argmax(predictions[r.video_id])) == int(r.label) for r in rows]))
    return float(np.mean([(float(predictions[r.video_id][0]) - float(r.label)) ** 2 for r in rows]))


def video_loss(predictions: dict[str, np.ndarray], rows: Sequence[SplitRow], task_type: str) -> float:
    """Mean video-level loss: NLL of the window-averaged probabilities (classification) or MSE.

    Breaks ties between checkpoints of equal accuracy: of two epochs that classify the
    same videos correctly, the more confident one is kept. NaN if there are no rows.
    """
    if not rows:
        return float("nan")
    if task_type == "regression":
        return score(predictions, rows, task_type)
    losses = []
    for row in rows:
        summed = predictions[row.video_id]
        probability = summed[int(row.label)] / summed.sum() if int(row.label) < len(summed) else 0.0
        losses.append(-np.log(max(float(probability), 1e-12)))
    return float(np.mean(losses))


def compute_metrics(
    predictions: dict[str, np.ndarray],
    rows: Sequence[SplitRow],
    missing: dict[str, str],
    task_type: str,
    label_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Metric name and value, counts, missing rows and (classification) the confusion matrix.

    `rows` are the evaluated rows (all present in `predictions`); `missing` maps the
    ids of split rows that could not be evaluated to the reason.
    """
    name, _mode = metric_for(task_type)
    value = score(predictions, rows, task_type)
    metrics: dict[str, Any] = {
        "task_type": task_type,
        "metric": name,
        "value": None if np.isnan(value) else value,
        "n_total": len(rows) + len(missing),
        "n_evaluated": len(rows),
        "n_missing": len(missing),
        "missing_ids": sorted(missing),
        "missing_reasons": dict(sorted(missing.items())),
    }
    if task_type == "classification":
        n_classes = len(label_names) or (1 + max([int(r.label) for r in rows], default=0))
        y_true = [int(r.label) for r in rows]
        y_pred = [int(np.argmax(predictions[r.video_id])) for r in rows]
        metrics["confusion"] = {
            "labels": list(label_names) or [str(i) for i in range(n_classes)],
            "matrix": confusion_matrix(y_true, y_pred, n_classes).tolist(),
            "rows": "true class",
            "columns": "predicted class",
        }
    return metrics


def evaluate_checkpoint(
    checkpoint_path,
    feature_shards: Sequence[Path | str],
    rows: Sequence[SplitRow],
    *,
    stride_frames: int,
    batch_size: int,
    device: str = "auto",
    progress: bool = False,
    model_factory=None,
) -> dict[str, Any]:
    """Rebuild the model from a training checkpoint and evaluate it on `rows`."""
    device = resolve_device(device)
    model, checkpoint = load_model(checkpoint_path, device=device, model_factory=model_factory)
    task_type = checkpoint["task"]["type"]
    store = FeatureStore(feature_shards)
    _check_features_match(store, checkpoint, checkpoint_path)
    present, missing = store.partition(rows)
    if missing:
        logger.warning("%d of %d rows have no features and are not evaluated: %s", len(missing), len(rows), sorted(missing)[:20])
    predictions, window_counts = predict_videos(
        model,
        store,
        present,
        window_frames=checkpoint["window_frames"],
        tokens=checkpoint["tokens"],
        stride_frames=stride_frames,
        batch_size=batch_size,
        device=device,
        task_type=task_type,
        progress=progress,
        description=f"eval {checkpoint['run']}",
    ) if present else ({}, {"n_windows": 0, "n_padded_windows": 0})
    store.close()
    metrics = compute_metrics(predictions, present, missing, task_type, checkpoint["task"]["label_names"])
    metrics.update(window_counts)
    metrics.update(
        {
            "window_frames": checkpoint["window_frames"],
            "eval_stride_frames": stride_frames,
            "tokens": checkpoint["tokens"],
            "device": str(device),
            # training and validation rows the run left out (no features), {split: {id: reason}}
            "left_out_of_training": checkpoint.get("left_out") or {"train": {}, "val": {}},
            "checkpoint": {
                "path": str(checkpoint_path),
                "run": checkpoint["run"],
                "epoch": checkpoint["epoch"],
                "val_metric": checkpoint["val_metric"],
            },
        }
    )
    return metrics


def _check_features_match(store: FeatureStore, checkpoint: dict[str, Any], checkpoint_path) -> None:
    trained = checkpoint["features"]
    if (store.n_tokens, store.dim) != (trained["n_tokens"], trained["dim"]):
        raise ValueError(
            f"{checkpoint_path} was trained on features with [tokens, dim] = "
            f"[{trained['n_tokens']}, {trained['dim']}], the shards hold [{store.n_tokens}, {store.dim}]"
        )
    for key in ("backbone", "weights"):
        if key in trained and key in store.attrs and trained[key] != store.attrs[key]:
            raise ValueError(
                f"{checkpoint_path} was trained on {key}={trained[key]!r} features, "
                f"the shards hold {key}={store.attrs[key]!r}"
            )
