"""Training runs on synthetic features: outputs, checkpoint contents, non-finite guard."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from _synthetic_features import LABEL_NAMES, separable_dataset
from vis4mer.checkpoint import load_model
from vis4mer.evaluation import evaluate_checkpoint
from vis4mer.train_log import LOG_COLUMNS, read_log_csv
from vis4mer.training import ModelSpec, NonFiniteLossError, RunOptions, TrainOutputs, TrainSettings, train_model

OPTIONS = RunOptions(device="cpu", progress=False, eval_batch_size=8)


def outputs_in(directory) -> TrainOutputs:
    return TrainOutputs(directory / "best.pt", directory / "last.pt", directory / "train_log.csv", directory / "train_curve.png")


def settings(**overrides) -> TrainSettings:
    values = dict(window_frames=6, tokens="all", batch_size=4, epochs=3, lr=1e-2, lr_patience=5, seed=0,
                  max_consecutive_nonfinite=3)
    values.update(overrides)
    return TrainSettings(**values)


@pytest.mark.parametrize("arch", ["vis4mer", "meanpool"])
def test_tiny_run_writes_checkpoints_log_and_curve(tmp_path, arch):
    shards, splits, _ = separable_dataset(tmp_path)
    out = outputs_in(tmp_path / "run")
    result = train_model(
        run_name=f"toy/sign/{arch}", task_type="classification", feature_shards=shards,
        train_rows=splits["train"], val_rows=splits["val"], label_rows=[splits["test"]],
        model_spec=ModelSpec(arch=arch, d_model=16, n_layers=2, dropout=0.0), settings=settings(), outputs=out, options=OPTIONS,
    )
    for path in (out.best, out.last, out.log, out.curve):
        assert path.exists() and path.stat().st_size > 0
    assert out.curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.best.parent.glob("*.tmp-*"))  # atomic writes leave no temporaries

    with open(out.log, newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == LOG_COLUMNS
    log = read_log_csv(out.log)
    assert [row["epoch"] for row in log] == [1, 2, 3]
    assert all(math.isfinite(row["train_loss"]) and 0.0 <= row["val_metric"] <= 1.0 for row in log)
    assert all(row["n_nonfinite_skipped"] == 0 for row in log)
    # 8 training clips of 3-9 frames with a 6-frame window: some are padded every epoch
    assert all(0 < row["n_padded"] <= 8 for row in log)
    # the separable task is learnt: best validation accuracy is high
    assert result.best_val_metric >= 0.75
    # best: highest validation accuracy, ties broken by the lower video-level loss
    best_epoch = min(log, key=lambda row: (-row["val_metric"], row["val_loss"]))["epoch"]
    assert result.best_epoch == best_epoch

    model, checkpoint = load_model(out.best)
    assert checkpoint["run"] == f"toy/sign/{arch}"
    assert checkpoint["epoch"] == best_epoch
    assert checkpoint["model"]["arch"] == arch
    assert checkpoint["model"]["kwargs"]["l_max"] == 6 * 3  # window x tokens
    assert checkpoint["model"]["kwargs"]["d_input"] == 8
    assert checkpoint["task"] == {"type": "classification", "label_names": list(LABEL_NAMES), "metric": "accuracy", "mode": "max"}
    assert checkpoint["features"]["backbone"] == "synthetic" and checkpoint["features"]["n_tokens"] == 3
    assert checkpoint["window_frames"] == 6 and checkpoint["tokens"] == "all"
    assert checkpoint["training"]["lr"] == 1e-2
    last = torch.load(out.last, weights_only=True)
    assert last["epoch"] == 3 and "optimizer_state" in last and len(last["train_log"]) == 3
    assert model(torch.zeros(2, 18, 8)).shape == (2, 2)

    # evaluation rebuilds the model from the checkpoint alone
    metrics = evaluate_checkpoint(out.best, shards, splits["test"], stride_frames=1, batch_size=8, device="cpu")
    assert metrics["n_evaluated"] == len(splits["test"]) and metrics["metric"] == "accuracy"


def test_regression_run_uses_mse_and_min_mode(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    regress = {k: [type(r)(r.video_id, float(r.label) * 2.0 - 1.0, None) for r in rows] for k, rows in splits.items()}
    out = outputs_in(tmp_path / "reg")
    result = train_model(
        run_name="toy/value/meanpool", task_type="regression", feature_shards=shards,
        train_rows=regress["train"], val_rows=regress["val"],
        model_spec=ModelSpec(arch="meanpool", d_model=16, n_layers=1), settings=settings(epochs=4), outputs=out, options=OPTIONS,
    )
    _, checkpoint = load_model(out.best)
    assert checkpoint["task"]["metric"] == "mse" and checkpoint["task"]["mode"] == "min"
    assert checkpoint["model"]["kwargs"]["d_output"] == 1
    log = read_log_csv(out.log)
    assert result.best_val_metric == min(row["val_metric"] for row in log)


def test_validation_every_n_epochs_and_after_the_last(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    out = outputs_in(tmp_path / "sparse")
    result = train_model(
        run_name="toy/sign/meanpool", task_type="classification", feature_shards=shards,
        train_rows=splits["train"], val_rows=splits["val"], model_spec=ModelSpec(arch="meanpool", d_model=8, n_layers=1),
        settings=settings(epochs=5, val_every_epochs=2), outputs=out, options=replace(OPTIONS, num_workers=2),
    )
    log = read_log_csv(out.log)
    validated = [row["epoch"] for row in log if not math.isnan(row["val_metric"])]
    assert validated == [2, 4, 5]
    assert result.best_epoch in validated
    assert out.curve.exists()


def test_training_is_reproducible_with_a_seed(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    logs = []
    for name in ("a", "b"):
        out = outputs_in(tmp_path / name)
        train_model(
            run_name="toy/sign/meanpool", task_type="classification", feature_shards=shards,
            train_rows=splits["train"], val_rows=splits["val"],
            model_spec=ModelSpec(arch="meanpool", d_model=8, n_layers=1), settings=settings(epochs=2), outputs=out, options=OPTIONS,
        )
        logs.append([(r["train_loss"], r["val_metric"]) for r in read_log_csv(out.log)])
    assert logs[0] == logs[1]


class NaNAfter(nn.Module):
    """A linear model whose output turns NaN once `calls` exceeds `good_calls` (training only)."""

    def __init__(self, d_input, d_output, good_calls):
        super().__init__()
        self.linear = nn.Linear(d_input, d_output)
        self.good_calls, self.calls = good_calls, 0

    def forward(self, x):
        out = self.linear(x.mean(dim=1))
        if self.training:
            self.calls += 1
            if self.calls > self.good_calls:
                return out * float("nan")
        return out


def nan_factory(good_calls):
    def factory(arch, *, d_input, d_output, **_):
        return NaNAfter(d_input, d_output, good_calls)

    return factory


def test_nonfinite_steps_are_skipped_and_counted(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    out = outputs_in(tmp_path / "nan")
    # 8 clips / batch 4 = 2 steps per epoch; steps 3.. are NaN: epoch 2 skips both,
    # below the threshold of 3 consecutive, so the run finishes.
    train_model(
        run_name="toy/sign/nan", task_type="classification", feature_shards=shards,
        train_rows=splits["train"], val_rows=splits["val"],
        model_spec=ModelSpec(arch="nan", d_model=8, n_layers=1), settings=settings(epochs=2), outputs=out, options=OPTIONS,
        model_factory=nan_factory(good_calls=2),
    )
    log = read_log_csv(out.log)
    assert [row["n_nonfinite_skipped"] for row in log] == [0, 2]
    assert math.isnan(log[1]["train_loss"])  # no finite step in epoch 2
    # skipped steps do not touch the weights: the last checkpoint is still finite
    last = torch.load(out.last, weights_only=True)
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_too_many_consecutive_nonfinite_steps_stop_the_run(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    out = outputs_in(tmp_path / "stop")
    with pytest.raises(NonFiniteLossError) as error:
        train_model(
            run_name="toy/sign/nan", task_type="classification", feature_shards=shards,
            train_rows=splits["train"], val_rows=splits["val"],
            model_spec=ModelSpec(arch="nan", d_model=8, n_layers=1),
            settings=settings(epochs=5, max_consecutive_nonfinite=3), outputs=out, options=OPTIONS,
            model_factory=nan_factory(good_calls=2),
        )
    message = str(error.value)
    assert "toy/sign/nan" in message  # names the run
    assert "4 consecutive" in message and "max_consecutive_nonfinite=3" in message
    assert "epoch 3" in message  # NaN from step 3: steps 3, 4 (epoch 2), 5, 6 (epoch 3)
    assert f"{out.best} (best, epoch 1)" in message and f"{out.last} (epoch 2)" in message
    # the last good checkpoint (end of epoch 1 was the best, epoch 2 the last) is kept
    assert out.best.exists() and out.last.exists()
    assert torch.load(out.last, weights_only=True)["epoch"] == 2
    assert len(read_log_csv(out.log)) == 2


def test_run_without_usable_rows_fails_clearly(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    ghost = [type(r)("ghost" + r.video_id, r.label, r.label_name) for r in splits["train"]]
    with pytest.raises(ValueError, match="none of the 8 training rows has features"):
        train_model(
            run_name="toy/sign/meanpool", task_type="classification", feature_shards=shards,
            train_rows=ghost, val_rows=splits["val"],
            model_spec=ModelSpec(arch="meanpool", d_model=8, n_layers=1), settings=settings(), outputs=outputs_in(tmp_path), options=OPTIONS,
        )


def test_best_checkpoint_prefers_better_metric_then_lower_loss():
    from vis4mer.training import _better

    nan = float("nan")
    assert _better((0.5, 0.7), (nan, nan), "max")  # anything beats nothing
    assert _better((0.9, 0.6), (0.8, 0.1), "max")  # metric first
    assert not _better((0.8, 0.1), (0.9, 0.6), "max")
    assert _better((0.9, 0.2), (0.9, 0.3), "max")  # tie: lower loss wins
    assert not _better((0.9, 0.3), (0.9, 0.3), "max")  # a full tie keeps the earlier epoch
    assert _better((1.0, 1.0), (2.0, 2.0), "min")  # mse: lower is better
    assert not _better((nan, 0.1), (0.5, 0.5), "max")


def test_settings_reject_unknown_keys():
    with pytest.raises(ValueError, match="window_frame"):
        TrainSettings.from_dict({"window_frame": 60})
