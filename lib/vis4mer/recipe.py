"""The recipe of a dataset: the reference code's protocol (``paper``) or ours (``improved``), item by item.

Config: ``datasets.<name>.recipe`` names the recipe (the schema's default: ``paper``) and
``datasets.<name>.recipe_items`` sets single items, which then differ from the recipe's.
:func:`dataset_recipe` resolves both into a :class:`Recipe`, whose items the stages read:

=================  ======================================  =====================  ==========================
item               what                                    paper                  improved
=================  ======================================  =====================  ==========================
swin_segments      Video Swin segments and training clips  reference              cover
epoch_draws        what one training epoch is              windows (ViT) /        videos
                                                           videos (Video Swin)
lr_schedule        learning-rate schedule                  step                   plateau
resize             frame to size x size                    squash                 crop
normalise          pixels fed to the backbone              none                   backbone
lvu_frame_times    which frames of an LVU video            spread                 fps
block_dropout      dropout after each block's S4           channel                element
ssm_eigenvalues    S4's Λ                                  shared                 per_channel
=================  ======================================  =====================  ==========================

- ``swin_segments`` (``features.family: swin``): ``reference`` extracts, as the reference code,
  a segment at every frame of a training video shorter than max_segments.train + 32 frames and
  max_segments.train uniformly spaced ones otherwise, and always max_segments.test uniformly
  spaced segments of any other video (:func:`vis4mer.swin.segment_starts`, rules ``dense`` and
  ``uniform``); each training step then takes ``window_frames`` of a video's segments at random,
  sorted in time (``clip_frames: spread``, :mod:`vis4mer.windows`). ``cover``: at most
  max_segments covering the video, and a random window of consecutive segments, zero-padded.
- ``epoch_draws``: ``windows`` is LVU's reference epoch, N(videos) draws with replacement,
  weighted by the windows a video has; ``videos`` every training video once (also the
  reference's Breakfast/COIN epoch, whose clips span the whole video).
- ``lr_schedule``: :mod:`vis4mer.schedules` (``step`` is the reference's ReduceLROnPlateau in
  mode 'min' on accuracy, as the step decay it effectively is).
- ``resize``, ``normalise``: :mod:`vis4mer.frames`, :mod:`vis4mer.features`, :mod:`vis4mer.swin`.
- ``lvu_frame_times`` (source lvu, ViT): ``spread`` takes duration + 1 frames over the whole file,
  duration from lvu_durations.csv (:func:`vis4mer.frames.spread_indices`); ``fps`` samples at
  frames.fps (what ``trim_preview: true`` implies). The reference's 64 test segments are one
  window of 64 (training.window_frames, as config/config.yaml sets for Breakfast and COIN).
- ``block_dropout``, ``ssm_eigenvalues`` (model arch vis4mer): :class:`vis4mer.model.ViS4mer`.

What the reference code does and is not a choice here (the odd-length kernel, Re Λ < 0 by
construction, model selection on a validation split) is described in README.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping

RECIPES = ("paper", "improved")
# item -> (paper's choice, improved's choice); epoch_draws under paper depends on the family (FAMILY_CHOICES)
ITEMS: dict[str, tuple[str, str]] = {
    "swin_segments": ("reference", "cover"),
    "epoch_draws": ("windows", "videos"),
    "lr_schedule": ("step", "plateau"),
    "resize": ("squash", "crop"),
    "normalise": ("none", "backbone"),
    "lvu_frame_times": ("spread", "fps"),
    "block_dropout": ("channel", "element"),
    "ssm_eigenvalues": ("shared", "per_channel"),
}
# the reference code's Breakfast/COIN epoch (run_breakfast.py, run_coin.py): every video once
FAMILY_CHOICES = {("paper", "swin", "epoch_draws"): "videos"}
# the items that are ViS4mer keyword arguments (model arch vis4mer only): item -> argument
MODEL_ARGUMENTS = {"block_dropout": "block_dropout", "ssm_eigenvalues": "shared_eigenvalues"}
MODEL_ITEMS = tuple(MODEL_ARGUMENTS)


def _applies(item: str, family: str, kind: str) -> bool:
    """Whether `item` means anything for a dataset of feature `family` and source `kind`."""
    if item == "swin_segments":
        return family == "swin"
    if item == "lvu_frame_times":
        return kind == "lvu" and family == "vit"
    return True


@dataclass(frozen=True)
class Recipe:
    """A dataset's resolved recipe: its name, every item's choice (None where it does not apply)
    and the items set by ``recipe_items``."""

    name: str
    swin_segments: str | None
    epoch_draws: str
    lr_schedule: str
    resize: str
    normalise: str
    lvu_frame_times: str | None
    block_dropout: str
    ssm_eigenvalues: str
    overridden: tuple[str, ...] = ()

    @classmethod
    def resolve(cls, name: str, items: Mapping[str, str], family: str, kind: str) -> Recipe:
        """The recipe `name` with the `items` set explicitly, for a dataset of feature `family`
        and source `kind`; a ValueError names a bad recipe, item or choice."""
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
        for item, choice in items.items():
            if item not in ITEMS:
                raise ValueError(f"unknown recipe item {item!r}; items: {', '.join(ITEMS)}")
            if choice not in ITEMS[item]:
                raise ValueError(f"recipe item {item} is {choice!r}; choose one of {', '.join(ITEMS[item])}")
        column = RECIPES.index(name)
        values: dict[str, str | None] = {}
        for item, choices in ITEMS.items():
            choice = items.get(item, FAMILY_CHOICES.get((name, family, item), choices[column]))
            values[item] = choice if _applies(item, family, kind) else None
        return cls(name=name, **values, overridden=tuple(sorted(items)))

    @property
    def items(self) -> dict[str, str | None]:
        return {item: getattr(self, item) for item in ITEMS}

    def as_record(self) -> dict[str, Any]:
        """What all.json records: {"name", "overridden" (the items recipe_items set), "items"}."""
        record = asdict(self)
        return {"name": record.pop("name"), "overridden": list(record.pop("overridden")), "items": record}

    def run_record(self, arch: str) -> dict[str, Any]:
        """What a checkpoint of a model `arch` records: {"name", "items"}, the model items None
        where the arch does not use them (so that changing one re-trains only the runs it changes)."""
        items = {item: None if item in MODEL_ITEMS and not self.model_kwargs(arch) else value for item, value in self.items.items()}
        return {"name": self.name, "items": items}

    # ----------------------------------------------------------------- what each stage reads

    @property
    def clip_frames(self) -> str:
        """vis4mer.windows' clip_frames: spread for the reference's segments, else window."""
        return "spread" if self.swin_segments == "reference" else "window"

    def training_settings(self) -> dict[str, str]:
        """The vis4mer.training.TrainSettings fields the recipe decides."""
        return {"lr_schedule": self.lr_schedule, "epoch_draws": self.epoch_draws, "clip_frames": self.clip_frames}

    def model_kwargs(self, arch: str) -> dict[str, Any]:
        """The model keyword arguments the recipe decides (ViS4mer only: the baselines are ours)."""
        if arch != "vis4mer":
            return {}
        return {"block_dropout": self.block_dropout, "shared_eigenvalues": self.ssm_eigenvalues == "shared"}

    def segment_rule(self, role: str) -> str:
        """The vis4mer.swin segment rule of a video of `role` ("train" | "test")."""
        if self.swin_segments != "reference":
            return "cover"
        return "dense" if role == "train" else "uniform"


def dataset_recipe(settings: Mapping[str, Any]) -> Recipe:
    """The Recipe of a dataset from its validated config section (recipe, recipe_items,
    features.family, source). LVU's ``trim_preview: true`` (keep the last seconds of each
    video, sampled at frames.fps) sets lvu_frame_times fps unless recipe_items sets it."""
    items = dict(settings["recipe_items"])
    if settings.get("trim_preview"):
        items.setdefault("lvu_frame_times", "fps")
    return Recipe.resolve(settings["recipe"], items, settings["features"]["family"], settings["source"])


def config_errors(name: str, settings: Mapping[str, Any], models: Mapping[str, Any]) -> Iterator[str]:
    """What is wrong with a dataset's recipe beyond the schema, one message per problem naming
    its key: an item that does not apply, choices that do not fit together or the config."""
    key = f"datasets.{name}"
    family, kind = settings["features"]["family"], settings["source"]
    try:
        recipe = dataset_recipe(settings)
    except ValueError as error:
        yield f"{key}.recipe: {error}"
        return
    for item in settings["recipe_items"]:
        if not _applies(item, family, kind):
            where = "features.family swin" if item == "swin_segments" else "source lvu with features.family vit"
            yield f"{key}.recipe_items.{item} applies to {where} only; remove it"
    if recipe.clip_frames == "spread" and recipe.epoch_draws == "windows":
        yield (f"{key}.recipe_items.epoch_draws windows weighs videos by their windows, but swin_segments reference "
               "clips span the whole video (one per video): use epoch_draws videos")
    if recipe.lvu_frame_times == "spread" and settings.get("trim_preview"):
        yield (f"{key}.trim_preview keeps the last seconds of each video, but recipe_items.lvu_frame_times spread "
               "takes frames over the whole file: remove one of them")
    for model in settings["models"]:
        spec = models.get(model)
        for item, argument in MODEL_ARGUMENTS.items():
            if spec is not None and argument in spec.get("kwargs", {}):
                yield f"models.{model}.kwargs.{argument}: chosen per dataset by the recipe; set {key}.recipe_items.{item} instead"
