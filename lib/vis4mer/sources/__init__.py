"""The benchmarks of the paper (LVU, Breakfast, COIN) in the one form the pipeline stages share.

After the split files, the stages (frames, features, train, evaluate) only know split files
in the LVU layout (``<task>/{train,val,test}.csv``, see vis4mer.sources.splits) and a set of video ids.
This module reads each benchmark with its own loader (vis4mer.sources.lvu, vis4mer.sources.breakfast,
vis4mer.sources.coin) into that form:

- per task, the train/val/test rows (SplitRow: video id, target, class name) with the target
  as the loader computes it: classification keeps the files' class ids; LVU regression uses
  the paper's targets (vis4mer.sources.lvu: 10 x like ratio, log views, each minus its mean);
- per task, the class names indexed by class id: the task's whole class-id space, including
  ids that no split contains (LVU director and writer; small COIN subsets);
- per video, its role (``train`` if it is a training video of some task, else ``test``: it
  decides the number of Video Swin segments) and, where known, its file (Breakfast) or its
  annotated time range (COIN).

Validation split of Breakfast and COIN. The paper reports train and test results only, and
the reference code selected its model on the test set. Two strategies (``validation``):

- ``holdout`` (default): a seeded `fraction` of the training videos becomes the validation
  split and is not trained on. Breakfast holds out whole participants (every camera of a
  participant films the same scene, so holding out single videos would leak that scene into
  training); COIN holds out videos stratified by class (round(fraction x n) of a class's n
  training videos, at least one where n >= 2, never all of them).
- ``test``: the test split doubles as the validation split, as in the reference code. The
  test numbers are then those of the model selected on the test set (optimistic); all.json
  records the strategy so such numbers are never mistaken for held-out ones.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from vis4mer.sources import breakfast, coin, lvu
from vis4mer._logging import logger
from vis4mer.sources.splits import SplitRow, write_split_csv

SPLITS = ("train", "val", "test")
VALIDATION_STRATEGIES = ("holdout", "test")

# ViS4mer's test results (top-1 accuracy, %) on the long-video benchmarks other than LVU
# (LVU: vis4mer.sources.lvu.TASKS[task].paper_result). Islam & Bertasius, ECCV 2022.
PAPER_RESULTS = {"breakfast": 88.17, "coin": 88.41}
PAPER = "ViS4mer (Islam & Bertasius, ECCV 2022)"

# The LVU regression targets (as vis4mer.sources.lvu computes them) written as the label transform of
# vis4mer.labels.read_task_rows on the raw columns of the LVU split files. The split files of
# the pipeline hold the final targets; this says how they derive from the raw quantities, for
# tools that map predictions back (vis4mer.predict).
LVU_TARGETS = {
    "like_ratio": {
        "label_column": "like_count",
        "label_transform": {"ratio_with": "dislike_count", "scale": 10.0, "offset": -lvu.LIKE_RATIO_MEAN},
    },
    "view_count": {"label_column": "view_count", "label_transform": {"log": True, "offset": -lvu.LOG_VIEW_COUNT_MEAN}},
}


@dataclass(frozen=True)
class TaskData:
    """One task: `splits` {split: rows}; `label_names` by class id ([] for regression)."""

    kind: str  # classification | regression
    splits: dict[str, list[SplitRow]]
    label_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VideoInfo:
    """One video: `role` train | test (training video of some task, or not), and where known
    its file (`path`) and the time range in seconds to use (`start`, `end`)."""

    role: str
    path: str | None = None
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class SourceData:
    tasks: dict[str, TaskData]
    videos: dict[str, VideoInfo]  # every video id of every task and split, sorted
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. the validation strategy


def _token(name: str) -> str:
    """A class name as one whitespace-free field of a split file."""
    return re.sub(r"\s+", "_", name.strip()) or "-"


def _roles(tasks: Mapping[str, TaskData]) -> dict[str, str]:
    """{video id: "train" if it is in a train split of some task, else "test"}, sorted by id."""
    every = {row.video_id for data in tasks.values() for rows in data.splits.values() for row in rows}
    train = {row.video_id for data in tasks.values() for row in data.splits["train"]}
    return {video_id: "train" if video_id in train else "test" for video_id in sorted(every)}


# ----------------------------------------------------------------------------------- LVU


def lvu_source(split_dir, tasks: Iterable[str]) -> SourceData:
    """The given LVU tasks from an lvu_1.0 directory (targets and class ids as vis4mer.sources.lvu reads them)."""
    data = {}
    for task in tasks:
        spec = lvu.task_spec(task)
        splits = {
            split: [
                SplitRow(e.video_id, e.target, None if e.label_name is None else _token(e.label_name))
                for e in lvu.read_task_split(split_dir, task, split)
            ]
            for split in SPLITS
        }
        names = [_token(name) for name in lvu.label_names(split_dir, task)] if spec.kind == "classification" else []
        data[task] = TaskData(spec.kind, splits, names)
    if not data:
        raise ValueError("no LVU task given")
    videos = {video_id: VideoInfo(role) for video_id, role in _roles(data).items()}
    return SourceData(data, videos, {"targets": "vis4mer.sources.lvu (classification: class ids of the files; regression: the paper's targets)"})


# ----------------------------------------------------------------------------- validation


def _check_validation(validation: Mapping[str, Any]) -> tuple[str, float, int]:
    strategy = validation.get("strategy", "holdout")
    fraction = float(validation.get("fraction", 0.1))
    seed = int(validation.get("seed", 0))
    if strategy not in VALIDATION_STRATEGIES:
        raise ValueError(f"validation strategy {strategy!r} is not one of {VALIDATION_STRATEGIES}")
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    return strategy, fraction, seed


def holdout_by_group(rows: Sequence[SplitRow], groups: Mapping[str, str], fraction: float, seed: int):
    """(train rows, val rows): whole groups (e.g. participants), in a seeded order, are held
    out until at least `fraction` of the rows are; at least one group on each side."""
    names = sorted({groups[row.video_id] for row in rows})
    if len(names) < 2:
        raise ValueError(f"a validation holdout by group needs at least 2 groups in the training split, found {names}")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    sizes = {name: sum(groups[row.video_id] == name for row in rows) for name in names}
    held, count = set(), 0
    for name in order[:-1]:
        if count >= fraction * len(rows) and held:
            break
        held.add(name)
        count += sizes[name]
    return [r for r in rows if groups[r.video_id] not in held], [r for r in rows if groups[r.video_id] in held]


def holdout_by_class(rows: Sequence[SplitRow], fraction: float, seed: int):
    """(train rows, val rows): per class, round(fraction x n) of its n rows (at least 1 when
    n >= 2, never all), chosen in a seeded order; rows keep their input order."""
    rng = np.random.default_rng(seed)
    by_class: dict[Any, list[SplitRow]] = {}
    for row in rows:
        by_class.setdefault(row.label, []).append(row)
    held: set[str] = set()
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda r: r.video_id)
        n = len(members)
        k = 0 if n < 2 else min(n - 1, max(1, math.floor(fraction * n + 0.5)))
        held.update(members[i].video_id for i in rng.permutation(n)[:k])
    return [r for r in rows if r.video_id not in held], [r for r in rows if r.video_id in held]


def _with_validation(train, test, validation, groups=None) -> tuple[dict[str, list[SplitRow]], dict[str, Any]]:
    strategy, fraction, seed = _check_validation(validation)
    if strategy == "test":
        note = {
            "strategy": "test",
            "description": "the test split is also the validation split (model selection on the test set, "
            "as the reference code did): test results are optimistic",
        }
        return {"train": list(train), "val": list(test), "test": list(test)}, note
    if groups is not None:
        kept, val = holdout_by_group(train, groups, fraction, seed)
        held_groups = sorted({groups[r.video_id] for r in val})
        description = f"participants {', '.join(held_groups)} of the training split held out ({len(val)} videos)"
    else:
        kept, val = holdout_by_class(train, fraction, seed)
        held_groups = None
        description = f"{len(val)} training videos held out, stratified by class"
    if not val:
        raise ValueError(
            f"the validation holdout ({fraction:.0%} of {len(train)} training videos) is empty; "
            "raise the fraction or use the strategy 'test'"
        )
    note = {"strategy": "holdout", "fraction": fraction, "seed": seed, "description": description, "n_val": len(val)}
    if held_groups is not None:
        note["held_out_groups"] = held_groups
    return {"train": kept, "val": val, "test": list(test)}, note


# ----------------------------------------------------------------------------- Breakfast


def breakfast_source(
    video_dir,
    task: str,
    lists_dir=None,
    train_participants: tuple[int, int] = breakfast.TRAIN_PARTICIPANTS,
    test_participants: tuple[int, int] = breakfast.TEST_PARTICIPANTS,
    validation: Mapping[str, Any] | None = None,
) -> SourceData:
    """Breakfast activity classification (one task named `task`).

    With `lists_dir`, ViS4mer's split lists ``<lists_dir>/{train,test}.csv`` define the
    videos and splits; a listed video missing from `video_dir` is kept (it is recorded as
    missing downstream). Without, every video found in `video_dir` is used and split by
    participant number (inclusive ranges).
    """
    scanned = {example.video_id: example for example in breakfast.scan_breakfast(video_dir)}
    if lists_dir is not None:
        listed = {split: breakfast.read_breakfast_list(Path(lists_dir) / f"{split}.csv") for split in ("train", "test")}
        if both := sorted({e.video_id for e in listed["train"]} & {e.video_id for e in listed["test"]}):
            raise ValueError(f"{lists_dir}: videos in both train.csv and test.csv: {both[:5]}")
        absent = sorted({e.video_id for examples in listed.values() for e in examples} - set(scanned))
        if absent:
            logger.warning("Breakfast: %d listed videos are not in %s (recorded as missing): %s", len(absent), video_dir, absent[:10])
        unlisted = len(set(scanned) - {e.video_id for examples in listed.values() for e in examples})
        if unlisted:
            logger.info("Breakfast: %d videos of %s are in neither split list and are not used", unlisted, video_dir)
        split_examples = listed
        how = f"split lists {lists_dir}"
    else:
        split_examples = breakfast.split_breakfast(scanned.values(), tuple(train_participants), tuple(test_participants))
        how = f"participants P{train_participants[0]:02d}-P{train_participants[1]:02d} train, P{test_participants[0]:02d}-P{test_participants[1]:02d} test"
    rows = {split: [SplitRow(e.video_id, e.target, e.label_name) for e in examples] for split, examples in split_examples.items()}
    for split in ("train", "test"):
        if not rows[split]:
            raise ValueError(f"Breakfast: the {split} split is empty ({how}, videos from {video_dir})")
    participants = {e.video_id: e.participant for examples in split_examples.values() for e in examples}
    splits, note = _with_validation(rows["train"], rows["test"], validation or {}, groups=participants)
    data = {task: TaskData("classification", splits, list(breakfast.CLASSES))}
    videos = {
        video_id: VideoInfo(role, str(scanned[video_id].path) if video_id in scanned else None)
        for video_id, role in _roles(data).items()
    }
    return SourceData(data, videos, {"splits": how, "validation": note})


# ----------------------------------------------------------------------------------- COIN


def coin_source(annotations, task: str, validation: Mapping[str, Any] | None = None) -> SourceData:
    """COIN task classification (one task named `task`) from COIN.json: recipe_type is the
    class, the training/testing subsets the splits, start-end each video's range."""
    subsets = coin.read_coin(annotations)
    for split in ("train", "test"):
        if not subsets[split]:
            raise ValueError(f"{annotations}: no video of the {'training' if split == 'train' else 'testing'} subset")
    rows = {split: [SplitRow(e.video_id, e.target, _token(e.label_name)) for e in examples] for split, examples in subsets.items()}
    splits, note = _with_validation(rows["train"], rows["test"], validation or {})
    data = {task: TaskData("classification", splits, [_token(name) for name in coin.class_names(subsets)])}
    ranges = {e.video_id: coin.clip_range(e) for examples in subsets.values() for e in examples}
    videos = {video_id: VideoInfo(role, None, *ranges[video_id]) for video_id, role in _roles(data).items()}
    return SourceData(data, videos, {"splits": f"subsets of {annotations}", "validation": note})


def read_source(arguments: Mapping[str, Any]) -> SourceData:
    """SourceData from a dict naming the source and its loader's arguments (the workflow's form):
    {"source": "lvu", "split_dir", "tasks"} | {"source": "breakfast", "video_dir", "task",
    "lists_dir", "train_participants", "test_participants", "validation"} |
    {"source": "coin", "annotations", "task", "validation"}."""
    source = arguments["source"]
    if source == "lvu":
        return lvu_source(arguments["split_dir"], arguments["tasks"])
    if source == "breakfast":
        return breakfast_source(
            arguments["video_dir"],
            arguments["task"],
            arguments.get("lists_dir"),
            tuple(arguments.get("train_participants", breakfast.TRAIN_PARTICIPANTS)),
            tuple(arguments.get("test_participants", breakfast.TEST_PARTICIPANTS)),
            arguments.get("validation"),
        )
    if source == "coin":
        return coin_source(arguments["annotations"], arguments["task"], arguments.get("validation"))
    raise ValueError(f"unknown source {source!r}; expected lvu, breakfast or coin")


# ----------------------------------------------------------------------------------- output


def write_task_splits(data: TaskData, out_dir) -> list[Path]:
    """``<out_dir>/{train,val,test}.csv`` of one task (vis4mer.sources.splits layout); returns the paths."""
    paths = []
    for split in SPLITS:
        path = Path(out_dir) / f"{split}.csv"
        write_split_csv(path, data.splits[split])
        paths.append(path)
    return paths


def class_rows(label_names: Sequence[str]) -> list[SplitRow]:
    """One row per class id, for vis4mer.training's `label_rows`: the model then gets an
    output for every class of the task, named as here, whether or not a split contains it."""
    return [SplitRow(f"<class {index}>", index, name) for index, name in enumerate(label_names)]


def paper_result(source: str, task: str) -> dict[str, Any] | None:
    """{"value", "metric", "unit", "source"} of the paper's test result, or None."""
    if source == "lvu" and task in lvu.TASKS:
        spec = lvu.TASKS[task]
        unit = "%" if spec.metric == "accuracy" else "MSE (paper targets)"
        return {"value": spec.paper_result, "metric": spec.metric, "unit": unit, "source": f"{PAPER}, Table 1 (LVU)"}
    if source in PAPER_RESULTS:
        return {"value": PAPER_RESULTS[source], "metric": "accuracy", "unit": "%", "source": f"{PAPER} ({source})"}
    return None


def videos_from_manifests(video_ids: Iterable[str], manifests: Iterable) -> tuple[dict[str, Path], dict[str, str]]:
    """({id: file} of the ids the download stage got, {id: why not} for the others) from
    download manifests (vis4mer.download); an id in no manifest is reported as such."""
    from vis4mer.download import read_manifest

    records = {}
    for manifest in manifests:
        records.update(read_manifest(manifest))
    videos, missing = {}, {}
    for video_id in video_ids:
        record = records.get(video_id)
        if record is None:
            missing[video_id] = "not in the download manifests of its shard"
        elif record.status in ("downloaded", "local") and record.path:
            videos[video_id] = Path(record.path)
        else:
            missing[video_id] = f"download {record.status}: {record.message or 'no message'}"
    return videos, missing
