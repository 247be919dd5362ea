"""Dataset settings as the workflow hands them to a source: one dataset in a minimal config,
validated against the schema (defaults filled in) and cross-checked (vis4mer.config)."""

from __future__ import annotations

import copy
from typing import Any

from vis4mer.config import check_config, validate_config

MODELS = {"m": {"arch": "meanpool", "d_model": 8, "n_layers": 1}}


def config_with(name: str, dataset: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A config holding only `dataset` (named `name`), its models and `top`-level keys, unvalidated."""
    dataset = {"features": {"backbone": "vit_tiny_patch16_224"}, "models": ["m"], **copy.deepcopy(dataset)}
    return {"targets": [name], "datasets": {name: dataset}, "models": copy.deepcopy(MODELS), **copy.deepcopy(top)}


def dataset_settings(name: str, dataset: dict[str, Any], **top: Any) -> dict[str, Any]:
    """`dataset` (named `name`) validated and checked in a minimal config: its settings as a
    vis4mer.sources.Source gets them."""
    config = validate_config(config_with(name, dataset, **top))
    check_config(config)
    return config["datasets"][name]
