"""COIN (Tang et al., CVPR 2019) task classification as ViS4mer uses it.

The official annotation file ``COIN.json``::

    {"database": {"<youtube id>": {
        "class": "MakeSandwich", "recipe_type": 67, "subset": "training" | "testing",
        "start": 12.0, "end": 201.5, "duration": 214.2, "video_url": "...",
        "annotation": [{"segment": [12.0, 30.5], "id": "...", "label": "..."}, ...]}}}

Each video is one example whose label is its task: ``recipe_type`` (0..179, 180 tasks),
named by ``class``. ``start``/``end`` (seconds) bound the annotated part of the video;
features are computed from that range only (``clip_range``, passed to
``vis4mer.swin.extract_swin_features_to_shard`` as ``ranges``). The ``training`` /
``testing`` subsets are ViS4mer's train / test splits.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vis4mer.sources import Benchmark, SourceData, TaskData, VideoInfo, roles
from vis4mer.sources.splits import SplitRow, as_field
from vis4mer.sources.validation import with_validation

N_CLASSES = 180
SUBSETS = {"training": "train", "testing": "test"}
REQUIRED_KEYS = ("class", "recipe_type", "subset", "start", "end")


@dataclass(frozen=True)
class Example:
    """One COIN video: `target` is the task id (recipe_type), `label_name` its class name."""

    video_id: str  # YouTube id
    target: int
    label_name: str
    start: float  # seconds: the annotated range of the video
    end: float


def clip_range(example: Example) -> tuple[float, float]:
    """(start, end) in seconds: the part of the video the features are computed from."""
    return example.start, example.end


def _number(entry: dict, key: str, where: str) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {key!r} is {value!r}, expected a finite number of seconds")
    return float(value)


def _parse_entry(video_id: str, entry, where: str) -> tuple[str, Example]:
    """(split, Example) of one database entry; ValueError naming `where` (file and id) otherwise."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: entry is a {type(entry).__name__}, expected an object")
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing} (an entry needs {list(REQUIRED_KEYS)})")
    target, name, subset = entry["recipe_type"], entry["class"], entry["subset"]
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < N_CLASSES:
        raise ValueError(f"{where}: 'recipe_type' is {target!r}, expected an integer in 0..{N_CLASSES - 1}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'class' is {name!r}, expected a non-empty name")
    if subset not in SUBSETS:
        raise ValueError(f"{where}: 'subset' is {subset!r}, expected one of {list(SUBSETS)}")
    start, end = _number(entry, "start", where), _number(entry, "end", where)
    if not 0 <= start < end:
        raise ValueError(f"{where}: annotated range start={start} end={end} is empty or negative")
    return SUBSETS[subset], Example(video_id, target, name, start, end)


def read_coin(json_path) -> dict[str, list[Example]]:
    """{"train": [...], "test": [...]} from COIN.json, each list sorted by video id.

    Raises FileNotFoundError for a missing file and ValueError naming the file (and the
    video id or key) for invalid JSON, a missing ``database``, an entry without one of
    REQUIRED_KEYS, a recipe_type outside 0..179, an unknown subset, a start/end that is not
    a number or an empty range, or one recipe_type named by two different classes.
    """
    path = Path(json_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    database = document.get("database") if isinstance(document, dict) else None
    if not isinstance(database, dict) or not database:
        raise ValueError(f"{path}: expected a non-empty object under the key 'database'")
    splits: dict[str, list[Example]] = {split: [] for split in SUBSETS.values()}
    named_by: dict[int, tuple[str, str]] = {}  # recipe_type -> (class, first video naming it)
    for video_id in sorted(database):
        where = f"{path}: video {video_id!r}"
        if not video_id or "/" in video_id:
            raise ValueError(f"{where}: a video id must be non-empty and contain no '/'")
        split, example = _parse_entry(video_id, database[video_id], where)
        name, first = named_by.setdefault(example.target, (example.label_name, video_id))
        if name != example.label_name:
            raise ValueError(
                f"{where}: recipe_type {example.target} is class {example.label_name!r}, "
                f"but {name!r} for video {first!r}"
            )
        splits[split].append(example)
    return splits


def class_names(splits: dict[str, list[Example]]) -> list[str]:
    """Class names indexed by recipe_type (length N_CLASSES); ids no video has are ``class_<id>``."""
    names = {example.target: example.label_name for examples in splits.values() for example in examples}
    return [names.get(target, f"class_{target}") for target in range(N_CLASSES)]


# ----------------------------------------------------------------------------------- source


def source_data(annotations, task: str, validation: Mapping[str, Any] | None = None) -> SourceData:
    """COIN task classification (one task named `task`) from COIN.json in the common form:
    recipe_type is the class, the training/testing subsets the splits, start-end each video's
    range; the validation split per `validation` (vis4mer.sources.validation: by class)."""
    subsets = read_coin(annotations)
    for split in ("train", "test"):
        if not subsets[split]:
            raise ValueError(f"{annotations}: no video of the {'training' if split == 'train' else 'testing'} subset")
    rows = {split: [SplitRow(e.video_id, e.target, as_field(e.label_name)) for e in examples] for split, examples in subsets.items()}
    splits, note = with_validation(rows["train"], rows["test"], validation or {})
    data = {task: TaskData("classification", splits, [as_field(name) for name in class_names(subsets)])}
    ranges = {e.video_id: clip_range(e) for examples in subsets.values() for e in examples}
    videos = {video_id: VideoInfo(role, None, *ranges[video_id]) for video_id, role in roles(data).items()}
    return SourceData(data, videos, {"splits": f"subsets of {annotations}", "validation": note})


class CoinSource(Benchmark):
    """COIN: the tasks of COIN.json (``annotations``), videos through the download stage,
    features of each video's annotated range only; one task."""

    kind = "coin"
    downloads = True
    single_task = True
    paper_accuracy = 88.41  # ViS4mer's test accuracy (%), Islam & Bertasius, ECCV 2022
    files_key = "annotations"

    @classmethod
    def read_source(cls, arguments):
        return source_data(arguments["annotations"], arguments["task"], arguments["validation"])

    def arguments(self, tasks):
        (task,) = tasks
        return {"source": self.kind, "annotations": self.settings["annotations"], "task": task, "validation": dict(self.settings["validation"])}

    def split_inputs(self, task):
        return {"source": self.settings["annotations"]}


SOURCE = CoinSource
