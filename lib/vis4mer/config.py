"""The pipeline configuration, one view of it for the workflow, the scripts and the library.

The JSON schema (workflow/schemas/config.schema.yaml) is the one home of every key and
default: :func:`validate_config` checks a config against it and fills the defaults in, as
Snakemake's ``validate`` does, so everything downstream reads keys without defaults of its
own. :func:`check_config` adds the cross-references the schema cannot express (datasets and
models named elsewhere, each source kind's own rules via
:meth:`vis4mer.sources.Source.config_errors`, features and token settings that do not fit
together, the recipe's items: vis4mer.recipe.config_errors); every error names its key. The
rest are views: a dataset's training and evaluation settings with its overrides merged (once,
here), its recipe, the model settings, and the names of the runs (``<model>`` or
``<model>/seed_<n>``, one per seed).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from vis4mer import recipe as recipes
from vis4mer.model import model_options
from vis4mer.sources import source_class
from vis4mer.swin import BACKBONES

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
SEED_PREFIX = "seed_"  # the run folder of one seed: <model>/seed_<n>
SWIN_SEGMENT = 32  # frames per Video Swin segment: frames.size must be a multiple of it


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def validate_config(config: dict[str, Any], schema=SCHEMA) -> dict[str, Any]:
    """Check `config` against the JSON schema and fill in the schema's defaults (in place, as
    Snakemake's validate does: a property's default is set wherever its object is present,
    and a default object is then filled in the same way). Returns `config`.

    jsonschema and yaml are imported here: the rule environments read validated configs
    and do not need them.
    """
    import jsonschema
    import yaml

    for name, settings in (config.get("datasets") or {}).items():
        if isinstance(settings, dict) and "checkpoint" in (settings.get("features") or {}):
            raise ConfigError(
                f"config: datasets.{name}.features.checkpoint was renamed: write features.weights: <path> for a "
                "local weights file, 'pretrained' for the backbone's public weights (the default), or 'random'"
            )
    schema = yaml.safe_load(Path(schema).read_text())
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        for name, property_schema in properties.items():
            if "default" in property_schema and isinstance(instance, dict):
                instance.setdefault(name, copy.deepcopy(property_schema["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    validator = jsonschema.validators.extend(base, {"properties": set_defaults})(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise ConfigError(f"config: {where}: {error.message}")
    return config


def load_config(paths: Sequence[Path | str], schema=SCHEMA) -> dict[str, Any]:
    """The config files merged in order (later files win, nested sections merged key by key,
    as snakemake's --configfile), validated with the schema's defaults and cross-checked."""
    import yaml

    merged: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        _merge(merged, yaml.safe_load(path.read_text()) or {})
    validate_config(merged, schema)
    check_config(merged)
    return merged


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def check_config(config: Mapping[str, Any]) -> None:
    """The cross-references of a validated config; raises ConfigError for the first problem."""
    for problem in config_errors(config):
        raise ConfigError(f"config: {problem}")


def config_errors(config: Mapping[str, Any]) -> Iterator[str]:
    datasets, models = config["datasets"], config["models"]
    for name in config["targets"]:
        if name not in datasets:
            yield f"targets lists {name!r}, which is not under 'datasets' ({sorted(datasets)})"
    for name, settings in datasets.items():
        for model in settings["models"]:
            if model not in models:
                yield f"datasets.{name}.models lists {model!r}, which is not under 'models' ({sorted(models)})"
        kind = source_class(settings["source"])
        yield from kind.config_errors(name, settings)
        if kind.downloads:
            yield from _download_errors(name, settings["download"])
        if settings["features"]["family"] == "swin":
            yield from _swin_errors(name, settings, kind, dataset_training(config, name))
        yield from recipes.config_errors(name, settings, models)
    for name, spec in models.items():
        options = model_options(spec["arch"])
        settable = [option for option in options if option not in recipes.MODEL_ARGUMENTS.values()]  # the rest: the recipe's
        for key in spec["kwargs"]:
            if key not in options:
                yield f"models.{name}.kwargs.{key}: model {spec['arch']!r} takes no argument {key!r} (it takes: {', '.join(settable)})"


def _download_errors(name: str, download: Mapping[str, Any]) -> Iterator[str]:
    key = f"datasets.{name}.download"
    sources = download_sources(download)
    if sources == ["youtube", "local"]:
        yield f"{key}.source {sources}: the local mirrors are always searched before downloading; write [local, youtube]"
    if "local" in sources and not download["local_dirs"]:
        yield f"{key}.local_dirs is empty, but download.source includes local"


def _swin_errors(name: str, settings: Mapping[str, Any], kind, training: Mapping[str, Any]) -> Iterator[str]:
    key = f"datasets.{name}"
    backbone = settings["features"]["backbone"]
    if backbone not in BACKBONES:
        yield f"{key}.features.backbone {backbone!r} is not a Video Swin backbone (features.family swin; known: {', '.join(BACKBONES)})"
    if not kind.swin_features:
        yield f"{key}.features.family swin is not available for source {kind.kind} (its videos are too small for Video Swin)"
    if settings["frames"]["size"] % SWIN_SEGMENT:
        yield f"{key}.frames.size {settings['frames']['size']} must be a multiple of {SWIN_SEGMENT} for Video Swin features"
    if backbone in BACKBONES and settings["features"]["weights"] == "pretrained" and BACKBONES[backbone].url is None:
        yield f"{key}.features.weights is pretrained, but {backbone} has no released weights; write a weights file or random"
    if training["tokens"] == "cls":
        where = f"{key}.training.tokens" if "tokens" in settings["training"] else f"training.tokens (not overridden by {key}.training)"
        yield f"{where} is cls, but Video Swin features (features.family swin) have no class token; use tokens: all"


# ----------------------------------------------------------------------------------- views


def pretrained_url(features: dict[str, Any]) -> str | None:
    """The release URL of a config's ``features`` backbone when its pretrained weights are not on
    the hub (Video Swin: vis4mer.swin.BACKBONES), else None (timm's hub weights)."""
    if features.get("family") != "swin":
        return None
    url = BACKBONES[features["backbone"]].url
    if url is None:
        raise ConfigError(
            f"the Video Swin backbone {features['backbone']} has no released weights (features.weights: pretrained); "
            "write features.weights: <path> or random"
        )
    return url


def download_sources(download: Mapping[str, Any]) -> list[str]:
    """download.source as a list: youtube, local, or both (mirrors first)."""
    source = download["source"]
    return [source] if isinstance(source, str) else list(source)


def dataset_training(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The top-level 'training' with the dataset's overrides."""
    return {**config["training"], **config["datasets"][dataset]["training"]}


def dataset_evaluation(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The top-level 'evaluation' with the dataset's overrides."""
    return {**config["evaluation"], **config["datasets"][dataset]["evaluation"]}


def by_value(value: Any) -> Any:
    """`value` with the keys of every mapping in it sorted (lists keep their order): Snakemake
    compares a rule's params by their repr, so settings that differ only in the order of
    their keys must be passed in one order, or re-ordering a config would re-run jobs."""
    if isinstance(value, Mapping):
        return {key: by_value(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [by_value(item) for item in value]
    return value


def dataset_recipe(config: Mapping[str, Any], dataset: str) -> recipes.Recipe:
    """The dataset's recipe (vis4mer.recipe), its recipe_items applied."""
    return recipes.dataset_recipe(config["datasets"][dataset])


def model_settings(config: Mapping[str, Any], run: str, dataset: str | None = None) -> dict[str, Any]:
    """The model section of a run (`run`: a model name or <model>/seed_<n>) as
    vis4mer.training.ModelSpec's arguments; with `dataset`, its kwargs include what the
    dataset's recipe decides (vis4mer.recipe.Recipe.model_kwargs)."""
    spec = config["models"][parse_run(run)[0]]
    kwargs = dict(spec["kwargs"])
    if dataset is not None:
        kwargs.update(dataset_recipe(config, dataset).model_kwargs(spec["arch"]))
    return {"arch": spec["arch"], "d_model": spec["d_model"], "n_layers": spec["n_layers"], "dropout": spec["dropout"],
            "kwargs": kwargs}


def run_name(model: str, seed: int | None = None) -> str:
    """"vis4mer" for one unseeded run, "vis4mer/seed_3" for the run of seed 3."""
    return model if seed is None else f"{model}/{SEED_PREFIX}{seed}"


def parse_run(run: str) -> tuple[str, int | None]:
    """("vis4mer", 3) for the run "vis4mer/seed_3"; ("vis4mer", None) for "vis4mer"."""
    model, separator, seed = run.partition(f"/{SEED_PREFIX}")
    return (model, int(seed)) if separator else (model, None)


def run_names(settings: Mapping[str, Any]) -> list[str]:
    """The runs of a dataset (its settings): each model, or <model>/seed_<n> per configured seed."""
    seeds = settings.get("seeds")
    if not seeds:
        return list(settings["models"])
    return [run_name(model, seed) for model in settings["models"] for seed in seeds]
