"""vis4mer.checkpoint: the training checkpoint format, written and read back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vis4mer.checkpoint import (
    FORMAT,
    CheckpointError,
    build_metadata,
    check_plain,
    epoch_checkpoint,
    inference_metadata,
    load_model,
    read_checkpoint,
    rebuild_model,
    required_field,
)
from vis4mer.model import build_model

KWARGS = {"d_input": 4, "l_max": 6, "d_output": 3, "d_model": 8, "n_layers": 1, "dropout": 0.0}


def _metadata(**overrides):
    values = dict(
        run_name="toy/task/meanpool", arch="meanpool", model_kwargs=KWARGS, task_type="classification",
        label_names=["a", "b", "c"], metric="accuracy", mode="max",
        features={"backbone": "synthetic", "weights": "random-seed0", "n_tokens": 2, "dim": 4},
        window_frames=3, tokens="all", training={"lr": 0.001, "seed": 0}, run_options={"device": "cpu"},
        extra={"dataset": "toy", **inference_metadata(frames={"fps": 1.0, "size": 32, "decoder": "decord"},
                                                       eval_stride_frames=2, target={"label_column": "class_id"})},
    )
    values.update(overrides)
    return build_metadata(**values)


def test_a_saved_checkpoint_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("meanpool", **KWARGS)
    state = epoch_checkpoint(_metadata(), epoch=2, val_metric=0.5, val_loss=math.nan, best_epoch=2, best_val_metric=0.5, model=model)
    torch.save(state, tmp_path / "best.pt")
    rebuilt, checkpoint = load_model(tmp_path / "best.pt")
    assert not rebuilt.training
    x = torch.randn(2, 6, 4)
    model.eval()
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert checkpoint["format"] == FORMAT and checkpoint["run"] == "toy/task/meanpool" and checkpoint["dataset"] == "toy"
    assert (checkpoint["epoch"], checkpoint["val_metric"], checkpoint["val_loss"]) == (2, 0.5, None)  # NaN as None
    assert checkpoint["task"] == {"type": "classification", "label_names": ["a", "b", "c"], "metric": "accuracy", "mode": "max"}
    assert set(checkpoint["versions"]) == {"torch", "vis4mer"}


def test_inference_metadata_is_what_predict_reads():
    lvu = {"label_column": "like_count", "label_transform": {"ratio_with": "dislike_count", "scale": 10.0}}
    frames = {"fps": 1, "size": 224, "decoder": "decord"}
    metadata = inference_metadata(frames=frames, eval_stride_frames=4, target=lvu)
    assert metadata == {"frames": frames, "eval_stride_frames": 4, "target": lvu}
    assert metadata["frames"] is not frames and metadata["target"]["label_transform"] is not lvu["label_transform"]
    plain = inference_metadata(frames=frames, eval_stride_frames=1, target={"label_column": "class_id", "label_transform": None})
    assert plain["target"] == {"label_column": "class_id", "label_transform": {}}


@pytest.mark.parametrize(("value", "where"), [(np.float32(0.5), "checkpoint.training.lr"), (Path("x"), "checkpoint.training.lr")])
def test_values_torch_cannot_load_safely_are_refused_naming_the_key(value, where):
    with pytest.raises(TypeError, match=f"{where}: .* is not checkpoint-safe"):
        _metadata(training={"lr": value})
    with pytest.raises(TypeError, match=r"checkpoint\[1\]: key 3 is not a string"):
        check_plain([1, {3: "x"}])


def test_unusable_files_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="model checkpoint not found: .*nope.pt"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match=f"text.pt is not a usable {FORMAT} training checkpoint"):
        read_checkpoint(tmp_path / "text.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt is not a vis4mer training checkpoint \\(format 'something-else'"):
        read_checkpoint(tmp_path / "other.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="format 'list'"):
        read_checkpoint(tmp_path / "list.pt")
    assert issubclass(CheckpointError, ValueError)


def test_missing_fields_and_mismatched_weights_are_named(tmp_path):
    checkpoint = {"format": FORMAT, "model": {"arch": "meanpool", "kwargs": KWARGS}}
    with pytest.raises(CheckpointError, match="best.pt: the checkpoint has no field 'state_dict' \\(the model's weights\\); re-train"):
        rebuild_model(checkpoint, "best.pt")
    with pytest.raises(CheckpointError, match="no field 'task.label_names' \\(class names\\)"):
        required_field({"task": {}}, "task.label_names", "best.pt", "class names")
    other = build_model("meanpool", **{**KWARGS, "d_model": 16}).state_dict()
    with pytest.raises(CheckpointError, match="best.pt: the model cannot be rebuilt: RuntimeError"):
        rebuild_model({**checkpoint, "state_dict": other}, "best.pt")


def test_checkpoints_written_before_still_load(tmp_path):
    """The layout of checkpoints written by earlier versions (run options inside ``training``)."""
    model = build_model("meanpool", **KWARGS)
    old = {
        "format": "vis4mer-checkpoint-1", "run": "toy/task/meanpool", "model": {"arch": "meanpool", "kwargs": KWARGS},
        "task": {"type": "classification", "label_names": ["a", "b", "c"], "metric": "accuracy", "mode": "max"},
        "features": {"n_tokens": 2, "dim": 4}, "window_frames": 3, "tokens": "all",
        "training": {"lr": 0.001, "device": "cuda", "num_workers": 4, "eval_batch_size": 32, "progress": True},
        "versions": {"torch": "2.13.0", "vis4mer": "unknown"}, "epoch": 1, "val_metric": None, "val_loss": None,
        "best_epoch": 0, "best_val_metric": None, "state_dict": model.state_dict(),
    }
    torch.save(old, tmp_path / "old.pt")
    rebuilt, checkpoint = load_model(tmp_path / "old.pt")
    assert checkpoint["training"]["device"] == "cuda" and isinstance(rebuilt, type(model))
