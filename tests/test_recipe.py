"""vis4mer.recipe: what `recipe: paper | improved` and recipe_items decide for each stage, and the
config errors of choices that do not fit together."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from _sources import config_with
from vis4mer.config import ConfigError, check_config, dataset_recipe, model_settings, validate_config
from vis4mer.recipe import ITEMS, RECIPES, Recipe

REPO = Path(__file__).resolve().parents[1]
SWIN = {"features": {"family": "swin", "backbone": "swin_test_patch244_window877", "weights": "random"}, "frames": {"size": 64}}
BREAKFAST = {"source": "breakfast", "video_dir": "videos", "tasks": {"activity": {"type": "classification"}}, **SWIN}
LVU = {"source": "lvu", "split_dir": "lvu_1.0", "tasks": {"genre": {"type": "classification"}}}


def checked(name: str, dataset: dict) -> dict:
    config = validate_config(config_with(name, dataset))
    check_config(config)
    return config


def test_the_schema_offers_exactly_the_recipes_and_items_of_the_library():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    dataset = schema["$defs"]["dataset"]["properties"]
    assert dataset["recipe"]["enum"] == list(RECIPES) and dataset["recipe"]["default"] == "paper"
    items = dataset["recipe_items"]["properties"]
    assert {item: tuple(spec["enum"]) for item, spec in items.items()} == ITEMS


def test_the_shipped_benchmarks_run_the_papers_protocol():
    config = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    lvu, breakfast, coin = (dataset_recipe(config, name) for name in ("lvu", "breakfast", "coin"))
    assert lvu.items == {"swin_segments": None, "epoch_draws": "windows", "lr_schedule": "step", "resize": "squash",
                         "normalise": "none", "lvu_frame_times": "spread", "block_dropout": "channel", "ssm_eigenvalues": "shared"}
    for swin in (breakfast, coin):
        assert swin.items == {**lvu.items, "swin_segments": "reference", "epoch_draws": "videos", "lvu_frame_times": None}
    assert config["datasets"]["coin"]["training"]["epochs"] == 500


def test_improved_is_ours_for_every_item_and_items_override_one_at_a_time():
    improved = dataset_recipe(checked("bf", {**BREAKFAST, "recipe": "improved"}), "bf")
    assert improved.items == {"swin_segments": "cover", "epoch_draws": "videos", "lr_schedule": "plateau", "resize": "crop",
                              "normalise": "backbone", "lvu_frame_times": None, "block_dropout": "element",
                              "ssm_eigenvalues": "per_channel"}
    mixed = dataset_recipe(checked("bf", {**BREAKFAST, "recipe_items": {"normalise": "backbone", "resize": "crop"}}), "bf")
    assert (mixed.name, mixed.normalise, mixed.resize, mixed.lr_schedule, mixed.swin_segments) == ("paper", "backbone", "crop", "step", "reference")
    assert mixed.as_record()["overridden"] == ["normalise", "resize"]


def test_what_each_stage_reads_from_the_recipe():
    paper_swin = Recipe.resolve("paper", {}, "swin", "breakfast")
    assert paper_swin.training_settings() == {"lr_schedule": "step", "epoch_draws": "videos", "clip_frames": "spread"}
    assert (paper_swin.segment_rule("train"), paper_swin.segment_rule("test")) == ("dense", "uniform")
    assert paper_swin.model_kwargs("vis4mer") == {"block_dropout": "channel", "shared_eigenvalues": True}
    assert paper_swin.model_kwargs("transformer") == {} == paper_swin.model_kwargs("meanpool")  # the baselines are ours
    assert paper_swin.run_record("meanpool")["items"] == {**paper_swin.items, "block_dropout": None, "ssm_eigenvalues": None}
    assert paper_swin.run_record("vis4mer") == {"name": "paper", "items": paper_swin.items}
    paper_vit = Recipe.resolve("paper", {}, "vit", "lvu")
    assert paper_vit.training_settings() == {"lr_schedule": "step", "epoch_draws": "windows", "clip_frames": "window"}
    improved = Recipe.resolve("improved", {}, "swin", "coin")
    assert improved.training_settings() == {"lr_schedule": "plateau", "epoch_draws": "videos", "clip_frames": "window"}
    assert (improved.segment_rule("train"), improved.segment_rule("test")) == ("cover", "cover")
    config = checked("bf", BREAKFAST)
    config["models"]["v"] = {"arch": "vis4mer", "d_model": 8, "n_layers": 1, "dropout": 0.0, "kwargs": {"d_state": 8}}
    assert model_settings(config, "v/seed_2", "bf")["kwargs"] == {"d_state": 8, "block_dropout": "channel", "shared_eigenvalues": True}
    assert model_settings(config, "v")["kwargs"] == {"d_state": 8}  # without a dataset: the model section alone
    assert model_settings(config, "m", "bf")["kwargs"] == {}  # meanpool: nothing from the recipe


def test_trim_preview_samples_at_frames_fps():
    recipe = dataset_recipe(checked("l", {**LVU, "trim_preview": True}), "l")
    assert recipe.lvu_frame_times == "fps" and recipe.lr_schedule == "step"
    assert dataset_recipe(checked("l", LVU), "l").lvu_frame_times == "spread"


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({**LVU, "recipe_items": {"swin_segments": "cover"}}, "datasets.x.recipe_items.swin_segments applies to features.family swin only"),
        ({**BREAKFAST, "recipe_items": {"lvu_frame_times": "fps"}}, "datasets.x.recipe_items.lvu_frame_times applies to source lvu"),
        ({**BREAKFAST, "recipe_items": {"epoch_draws": "windows"}}, "clips span the whole video .*: use epoch_draws videos"),
        ({**LVU, "trim_preview": True, "recipe_items": {"lvu_frame_times": "spread"}}, "datasets.x.trim_preview keeps the last seconds"),
    ],
)
def test_choices_that_do_not_fit_name_the_key(dataset, expected):
    config = validate_config(config_with("x", dataset))
    with pytest.raises(ConfigError, match=expected):
        check_config(config)


def test_model_kwargs_the_recipe_decides_are_refused_in_the_models_section():
    config = config_with("x", BREAKFAST)
    config["models"]["m"]["kwargs"] = {"block_dropout": "channel"}
    with pytest.raises(ConfigError, match="models.m.kwargs.block_dropout: chosen per dataset by the recipe; set datasets.x.recipe_items.block_dropout"):
        check_config(validate_config(config))


@pytest.mark.parametrize(("dataset", "expected"), [
    ({**BREAKFAST, "recipe": "ours"}, "datasets.x.recipe: 'ours' is not one of"),
    ({**BREAKFAST, "recipe_items": {"resize": "stretch"}}, "datasets.x.recipe_items.resize: 'stretch' is not one of"),
    ({**BREAKFAST, "recipe_items": {"dropout": "channel"}}, "Additional properties are not allowed"),
])
def test_the_schema_refuses_unknown_recipes_items_and_choices(dataset, expected):
    with pytest.raises(ConfigError, match=expected):
        validate_config(config_with("x", dataset))
