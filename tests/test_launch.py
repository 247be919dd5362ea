"""vis4mer.launch: what a torchrun worker receives is what train_model was given."""

from __future__ import annotations

import pytest

from vis4mer.launch import read_spec, write_spec
from vis4mer.sources.splits import SplitRow
from vis4mer.training import ModelSpec, RunOptions, TrainOutputs, TrainSettings


def _kwargs(tmp_path, **overrides):
    values = dict(
        run_name="toy/sign/vis4mer", task_type="classification", feature_shards=[tmp_path / "shard_0.h5"],
        train_rows=[SplitRow("a", 0, "neg"), SplitRow("b", 1, "pos")], val_rows=[SplitRow("c", 1, None)],
        label_rows=[[SplitRow("d", 2, "other")]],
        model_spec=ModelSpec("vis4mer", d_model=8, n_layers=2, dropout=0.1, kwargs={"d_state": 4}),
        settings=TrainSettings(window_frames=6, batch_size=3, epochs=2, seed=5),
        options=RunOptions(device="cpu", num_workers=2, eval_batch_size=4, progress=False),
        outputs=TrainOutputs(tmp_path / "best.pt", tmp_path / "last.pt", tmp_path / "log.csv", tmp_path / "curve.png",
                             state_dir=tmp_path / ".resume"),
        extra_metadata={"dataset": "toy", "frames": {"fps": 1.0}},
    )
    values.update(overrides)
    return values


def test_the_spec_round_trips_every_argument(tmp_path):
    kwargs = _kwargs(tmp_path)
    spec = read_spec(write_spec(tmp_path / "spec.json", **dict(kwargs)))
    assert spec == {**kwargs, "feature_shards": [str(tmp_path / "shard_0.h5")]}
    no_state = _kwargs(tmp_path, outputs=TrainOutputs(tmp_path / "b", tmp_path / "l", tmp_path / "g", tmp_path / "c"))
    assert read_spec(write_spec(tmp_path / "spec.json", **no_state))["outputs"].state_dir is None


def test_a_custom_model_factory_cannot_reach_the_workers(tmp_path):
    with pytest.raises(ValueError, match="model_factory cannot be passed to torchrun workers"):
        write_spec(tmp_path / "spec.json", **_kwargs(tmp_path, model_factory=lambda arch, **kw: None))
