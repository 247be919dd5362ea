"""vis4mer.config: the schema's defaults filled in once, the cross-checks that name their key,
and the views (dataset overrides merged once, run names) the workflow and the scripts share."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from _sources import config_with
from vis4mer.config import (
    ConfigError,
    check_config,
    dataset_evaluation,
    dataset_training,
    model_settings,
    parse_run,
    run_name,
    run_names,
    validate_config,
)

REPO = Path(__file__).resolve().parents[1]
SWIN = {"features": {"family": "swin", "backbone": "swin_test_patch244_window877", "weights": "random"}, "frames": {"size": 64}}
BREAKFAST = {"source": "breakfast", "video_dir": "videos", "tasks": {"activity": {"type": "classification"}}}


def test_the_shipped_configs_are_valid_and_get_the_schema_defaults():
    demo = validate_config(yaml.safe_load((REPO / "config" / "demo.yaml").read_text()))
    check_config(demo)
    assert demo["datasets"]["demo"]["features"]["family"] == "vit" and demo["datasets"]["demo"]["demo"]["min_gap_seconds"] == 10.0
    config = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    check_config(config)
    assert config["resources"]["train"] == {"mem_mb": 32000, "runtime": 1440}
    coin = config["datasets"]["coin"]
    assert coin["download"]["retries"] == 3 and coin["download"]["shard_size"] is None  # defaults beside the configured keys
    assert config["datasets"]["breakfast"]["lists_dir"] is None
    assert config["datasets"]["breakfast"]["training"] == {"window_frames": 64, "val_every_epochs": 1, "lr_patience": 10}


def test_defaults_of_a_kind_block_and_no_shared_default_objects():
    config = validate_config(config_with("a", BREAKFAST))
    config_b = validate_config(config_with("b", BREAKFAST))
    assert config["datasets"]["a"]["validation"] == {"strategy": "holdout", "fraction": 0.1, "seed": 0}
    assert config["datasets"]["a"]["validation"] is not config_b["datasets"]["b"]["validation"]
    assert config["datasets"]["a"]["training"] == {} and "trim_preview" not in config["datasets"]["a"]  # an LVU key


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({**BREAKFAST, "annotations": "COIN.json"}, r"config: datasets.x: Unevaluated properties are not allowed \('annotations' was unexpected\)"),
        ({**BREAKFAST, "frames": {"fps": "one"}}, "config: datasets.x.frames.fps: 'one' is not of type 'number'"),
        ({"source": "coin", "tasks": {"t": {"type": "classification"}}}, "'annotations' is a required property"),
    ],
)
def test_schema_errors_name_the_key(dataset, expected):
    with pytest.raises(ConfigError, match=expected):
        validate_config(config_with("x", dataset))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["targets"].append("nope"), "targets lists 'nope', which is not under 'datasets'"),
        (lambda c: c["datasets"]["x"]["models"].append("lstm"), r"datasets.x.models lists 'lstm', which is not under 'models' \(\['m'\]\)"),
        (lambda c: c["datasets"]["x"].update(SWIN, training={"tokens": "cls"}),
         "datasets.x.training.tokens is cls, but Video Swin features .* have no class token; use tokens: all"),
        (lambda c: (c["datasets"]["x"].update(SWIN), c.update(training={"tokens": "cls"})),
         r"training.tokens \(not overridden by datasets.x.training\) is cls, but Video Swin features"),
        (lambda c: c["datasets"]["x"].update(SWIN, frames={"size": 48}), "datasets.x.frames.size 48 must be a multiple of 32"),
        (lambda c: c["datasets"]["x"].update(SWIN, features={**SWIN["features"], "weights": "pretrained"}),
         "datasets.x.features.weights is pretrained, but swin_test_patch244_window877 has no released weights"),
        (lambda c: c["datasets"]["x"].update(features={"family": "swin", "backbone": "vit_large_patch16_224"}, frames={"size": 64}),
         "datasets.x.features.backbone 'vit_large_patch16_224' is not a Video Swin backbone"),
        (lambda c: c["models"]["m"].update(arch="vis4mer", kwargs={"d_stat": 8}),
         r"models.m.kwargs.d_stat: model 'vis4mer' takes no argument 'd_stat' \(it takes: d_state, mode, backend, ssm_lr, check_finite\)"),
        (lambda c: c["models"]["m"].update(arch="meanpool", kwargs={"d_model": 8}), "models.m.kwargs.d_model: model 'meanpool' takes no argument"),
    ],
)
def test_cross_checks_name_the_key(change, expected):
    config = config_with("x", BREAKFAST)
    change(config)
    validate_config(config)
    with pytest.raises(ConfigError, match=expected):
        check_config(config)


def test_the_renamed_checkpoint_key_says_what_to_write():
    config = config_with("x", {**BREAKFAST, "features": {"backbone": "b", "checkpoint": None}})
    with pytest.raises(ConfigError, match=r"datasets.x.features.checkpoint was renamed: write features.weights: <path>"):
        validate_config(config)


def test_weights_default_to_pretrained():
    config = validate_config(config_with("x", {**BREAKFAST, "features": {"family": "swin", "backbone": "swin_base_patch244_window877_kinetics600_22k"}}))
    assert config["datasets"]["x"]["features"]["weights"] == "pretrained"
    assert config["datasets"]["x"]["features"]["weights_sha256"] is None
    check_config(config)  # Video Swin-B has a release URL


def test_swin_with_all_tokens_passes():
    config = validate_config(config_with("x", {**BREAKFAST, **SWIN}))
    check_config(config)


def test_dataset_overrides_merged_over_the_top_level():
    config = validate_config(config_with("x", {**BREAKFAST, "training": {"window_frames": 64}, "evaluation": {"eval_stride_frames": 4}},
                                         training={"epochs": 3}))
    training = dataset_training(config, "x")
    assert training["window_frames"] == 64 and training["epochs"] == 3 and training["batch_size"] == 16  # schema default
    assert dataset_evaluation(config, "x") == {"eval_stride_frames": 4}
    config["datasets"]["x"]["evaluation"] = {}
    assert dataset_evaluation(config, "x") == {"eval_stride_frames": 1}


def test_run_names_one_per_model_or_per_model_and_seed():
    assert run_names({"models": ["a", "b"]}) == ["a", "b"]
    assert run_names({"models": ["a", "b"], "seeds": [0, 3]}) == ["a/seed_0", "a/seed_3", "b/seed_0", "b/seed_3"]
    assert parse_run("vis4mer/seed_3") == ("vis4mer", 3) and parse_run("vis4mer") == ("vis4mer", None)
    assert parse_run(run_name("m", -1)) == ("m", -1)
    config = validate_config(config_with("x", BREAKFAST))
    assert model_settings(config, "m/seed_2") == {"arch": "meanpool", "d_model": 8, "n_layers": 1, "dropout": 0.2, "kwargs": {}}
