"""Learning-rate schedules: the learning rate per epoch under a fixed sequence of validation
accuracies, for the reference code's step decay and for our plateau schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _synthetic_features import separable_dataset
from vis4mer.schedules import build_schedule, reference_decay_epochs
from vis4mer.train_log import read_log_csv
from vis4mer.training import ModelSpec, RunOptions, TrainOutputs, TrainSettings, train_model


def _optimizer(lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def rising_accuracies(epochs: int, seed: int = 0) -> list[float]:
    """Validation accuracies that rise noisily and never fall below the first one."""
    rng = np.random.default_rng(seed)
    values = 0.3 + 0.5 * (1 - np.exp(-np.arange(epochs) / 15)) + rng.uniform(0, 0.02, epochs)
    return [float(v) for v in values]


def lr_per_epoch(kind: str, accuracies: list[float], val_every: int, patience: int, mode: str = "max") -> list[float]:
    """The rate each epoch 1..len(accuracies) trains with, validating every `val_every` epochs."""
    optimizer = _optimizer()
    epochs = len(accuracies)
    schedule = build_schedule(kind, optimizer, mode=mode, factor=0.2, patience=patience, val_every_epochs=val_every, epochs=epochs)
    rates = []
    for epoch, accuracy in enumerate(accuracies, start=1):
        rates.append(optimizer.param_groups[0]["lr"])
        validated = epoch % val_every == 0 or epoch == epochs
        schedule.after_epoch(epoch, accuracy if validated else math.nan, validated)
    return rates


def reference_code_lr_per_epoch(accuracies: list[float], val_every: int, patience: int) -> list[float]:
    """What the reference code runs: ReduceLROnPlateau in its default mode 'min', stepped with accuracy."""
    optimizer = _optimizer()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.2, patience=patience)
    rates = []
    for epoch, accuracy in enumerate(accuracies, start=1):
        rates.append(optimizer.param_groups[0]["lr"])
        if epoch % val_every == 0:
            scheduler.step(accuracy)
    return rates


def test_reference_decay_epochs_of_the_papers_settings():
    assert reference_decay_epochs(10, 1, 100) == [31, 51, 71, 91]  # LVU
    assert reference_decay_epochs(1, 10, 60) == [13, 24, 35, 46, 57]  # Breakfast, COIN


def test_step_decay_lvu_lr_per_epoch():
    rates = lr_per_epoch("step", rising_accuracies(100), val_every=10, patience=1)
    expected = [1e-3] * 30 + [2e-4] * 20 + [4e-5] * 20 + [8e-6] * 20 + [1.6e-6] * 10
    np.testing.assert_allclose(rates, expected, rtol=1e-12)


def test_step_decay_breakfast_lr_per_epoch_stops_at_the_eps_floor():
    rates = lr_per_epoch("step", rising_accuracies(120), val_every=1, patience=10)
    assert rates[:12] == [1e-3] * 12 and rates[12] == pytest.approx(2e-4) and rates[22] == pytest.approx(2e-4)
    assert rates[23] == pytest.approx(4e-5)  # epoch 24
    # ReduceLROnPlateau skips a change below eps=1e-8: the rate stops at 1e-3 * 0.2**8
    assert rates[89] == pytest.approx(1e-3 * 0.2**8) and rates[-1] == pytest.approx(1e-3 * 0.2**8)


@pytest.mark.parametrize(("val_every", "patience", "epochs"), [(10, 1, 100), (1, 10, 500)])
def test_step_decay_is_what_the_reference_codes_mode_min_plateau_does_on_a_rising_accuracy(val_every, patience, epochs):
    accuracies = rising_accuracies(epochs, seed=epochs)
    np.testing.assert_allclose(
        lr_per_epoch("step", accuracies, val_every, patience), reference_code_lr_per_epoch(accuracies, val_every, patience), rtol=1e-12
    )


def test_step_decay_does_not_depend_on_the_accuracies():
    falling = [0.9 - 0.005 * i for i in range(100)]
    assert lr_per_epoch("step", falling, 10, 1) == lr_per_epoch("step", rising_accuracies(100), 10, 1)


def test_plateau_keeps_the_rate_while_accuracy_improves_and_decays_on_a_plateau():
    accuracies = [0.1 * i for i in range(1, 9)] + [0.8] * 7  # improves for 8 epochs, then flat
    rates = lr_per_epoch("plateau", accuracies, val_every=1, patience=2)
    assert rates[:11] == [1e-3] * 11  # no decay while improving, nor in the patience after
    assert rates[11] == pytest.approx(2e-4)  # epochs 9, 10, 11 without improvement: decayed for epoch 12
    assert rates[12:14] == pytest.approx([2e-4] * 2) and rates[14] == pytest.approx(4e-5)  # and again for epoch 15


def test_step_for_regression_is_a_plateau_on_the_mse():
    falling_mse = [1.0 / i for i in range(1, 31)]
    rates = lr_per_epoch("step", falling_mse, val_every=1, patience=1, mode="min")
    assert rates == [1e-3] * 30  # MSE keeps improving: mode 'min' never decays


def test_train_log_records_the_step_decay(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    outputs = TrainOutputs(*(tmp_path / name for name in ("best.pt", "last.pt", "log.csv", "curve.png")))
    train_model(
        run_name="toy/sign/meanpool", task_type="classification", feature_shards=shards,
        train_rows=splits["train"], val_rows=splits["val"], model_spec=ModelSpec("meanpool", 8, 1),
        settings=TrainSettings(window_frames=6, batch_size=4, epochs=8, lr=1e-2, lr_factor=0.5, lr_patience=1,
                               val_every_epochs=2, lr_schedule="step"),
        outputs=outputs, options=RunOptions(device="cpu", progress=False),
    )
    # validations after epochs 2, 4, 6, 8: decays from epoch 2 * 3 + 1 = 7; the log gives the next epoch's rate
    assert [row["lr"] for row in read_log_csv(outputs.log)] == pytest.approx([1e-2] * 5 + [5e-3] * 3)
