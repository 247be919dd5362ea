"""The LVU benchmark (Wu & Krähenbühl, CVPR 2021): its nine tasks, their split files and targets.

Layout of a split directory (the `lvu_1.0` release)::

    lvu_1.0/<task>/{train,val,test}.csv     space-separated, one header line
    lvu_1.0/lvu_durations.csv               comma-separated "videoid,duration" (seconds)

Classification files have the columns ``class_id class_name youtube_id imdb_id``;
``like_ratio`` has ``like_count dislike_count youtube_id imdb_id`` and ``view_count`` has
``view_count youtube_id imdb_id``. Class ids are used exactly as written: the class-id space
of a task is ``range(n_outputs)`` even where some ids never occur (director and writer have
10 classes but ids 2, 3 / 3, 4, 8 appear in no split), so predictions, checkpoints and
confusion matrices stay comparable with the original release. ``class_name`` ``\\N`` (an SQL
NULL in the writer files) means "no name".

Regression targets follow the reference implementation (ViS4mer's ``datasets/lvu_dataset.py``,
itself taken from the LVU code): a mean is subtracted so the targets are roughly zero-mean.

- like_ratio: ``10 * like / (like + dislike) - 9.138220535629456``  (like ratio in 0..10 units)
- view_count: ``log(views) - 11.76425435683139``                     (natural log of views)

MSE is shift-invariant, so the paper's MSE numbers are in these units (like ratio x10, log views).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

from vis4mer.labels import LabelTransform
from vis4mer.recipe import dataset_recipe
from vis4mer.sources import PAPER, Benchmark, SourceData, TaskData, VideoInfo, roles
from vis4mer.sources.splits import SPLITS, SplitRow, as_field

DURATIONS_FILE = "lvu_durations.csv"

CLASSIFICATION_COLUMNS = ("class_id", "class_name", "youtube_id", "imdb_id")
LIKE_RATIO_COLUMNS = ("like_count", "dislike_count", "youtube_id", "imdb_id")
VIEW_COUNT_COLUMNS = ("view_count", "youtube_id", "imdb_id")
DURATION_COLUMNS = ("videoid", "duration")

# "\N" is how the LVU release writes a missing class name (writer class 0).
NULL_NAME = "\\N"

# Means subtracted from the regression targets (reference code, full precision).
LIKE_RATIO_MEAN = 9.138220535629456  # mean of 10 * like / (like + dislike)
LOG_VIEW_COUNT_MEAN = 11.76425435683139  # mean of ln(view_count)


# The regression targets, as LabelTransforms of the raw columns: the loader below applies them,
# the pipeline records them in checkpoints, and vis4mer.predict inverts them.
TARGETS = {
    "like_ratio": LabelTransform("like_count", ratio_with="dislike_count", scale=10.0, offset=-LIKE_RATIO_MEAN),
    "view_count": LabelTransform("view_count", log=True, offset=-LOG_VIEW_COUNT_MEAN),
}


@dataclass(frozen=True)
class TaskSpec:
    """One LVU task.

    `n_outputs` is the model's output width: the number of classes (the task's declared
    class-id space, including ids absent from the files) or 1 for regression.
    `paper_result` is ViS4mer's test result: accuracy in percent for classification, MSE in
    target units for regression. `target` is the regression target (TARGETS), None for
    classification, whose target is the class id itself. `target_from_raw` /
    `raw_from_target` map between the raw quantity as the reference code states it (like
    ratio in 0..10 units, i.e. `raw_scale` x the target's ratio; view count) and the target.
    """

    name: str
    kind: Literal["classification", "regression"]
    n_outputs: int
    metric: Literal["accuracy", "mse"]
    paper_result: float
    columns: tuple[str, ...]
    target: LabelTransform | None = field(default=None, repr=False)
    raw_scale: float = 1.0

    @property
    def target_from_raw(self) -> Callable[[float], float] | None:
        if self.target is None:
            return None
        return lambda raw: float(self.target.from_quantity(raw / self.raw_scale))

    @property
    def raw_from_target(self) -> Callable[[float], float] | None:
        if self.target is None:
            return None
        return lambda target: self.target.invert(target) * self.raw_scale


def _classification(name: str, n_classes: int, paper_accuracy: float) -> TaskSpec:
    return TaskSpec(name, "classification", n_classes, "accuracy", paper_accuracy, CLASSIFICATION_COLUMNS)


# paper_result: ViS4mer, Islam & Bertasius, "Long Movie Clip Classification with State-Space
# Video Models", ECCV 2022 (arXiv:2204.01692), Table 1 (LVU test set, ViS4mer row):
# relation 57.14, speak 40.79, scene 67.44, director 62.61, genre 54.71, writer 48.80,
# year 44.75 (top-1 accuracy, %); like 0.26, views 3.63 (MSE). Class counts as in the
# reference training script (run_lvu.py).
TASKS: dict[str, TaskSpec] = {
    "relationship": _classification("relationship", 4, 57.14),
    "way_speaking": _classification("way_speaking", 5, 40.79),
    "scene": _classification("scene", 6, 67.44),
    "director": _classification("director", 10, 62.61),
    "writer": _classification("writer", 10, 48.80),
    "year": _classification("year", 9, 44.75),
    "genre": _classification("genre", 4, 54.71),
    "like_ratio": TaskSpec("like_ratio", "regression", 1, "mse", 0.26, LIKE_RATIO_COLUMNS, TARGETS["like_ratio"], raw_scale=10.0),
    "view_count": TaskSpec("view_count", "regression", 1, "mse", 3.63, VIEW_COUNT_COLUMNS, TARGETS["view_count"]),
}


@dataclass(frozen=True)
class Example:
    """One row of a split file: `target` is the class id (int) or the regression target (float)."""

    video_id: str
    target: int | float
    label_name: str | None = None


def task_spec(task: str) -> TaskSpec:
    """The TaskSpec of `task`; a ValueError lists the known tasks otherwise."""
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown LVU task {task!r}; known tasks: {', '.join(TASKS)}") from None


def split_path(split_dir, task: str, split: str) -> Path:
    """``<split_dir>/<task>/<split>.csv``, after checking task and split names."""
    task_spec(task)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return Path(split_dir) / task / f"{split}.csv"


def _read_rows(path: Path, columns: tuple[str, ...], sep: str | None) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: field}) for each data row; checks header and field counts."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty file; expected the header {' '.join(columns)!r}")
    header = [f.strip() for f in lines[0][1].split(sep)]
    if tuple(header) != columns:
        raise ValueError(f"{path}: header has columns {header}, expected {list(columns)}")
    if len(lines) == 1:
        raise ValueError(f"{path}: no data rows after the header")
    rows = []
    for number, line in lines[1:]:
        fields = [f.strip() for f in line.split(sep)]
        if len(fields) != len(columns):
            raise ValueError(f"{path}:{number}: {len(fields)} fields, expected {len(columns)} ({' '.join(columns)})")
        rows.append((number, dict(zip(columns, fields))))
    return rows


def _parse_count(text: str, column: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{where}: {column} {text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{where}: {column} {value} is negative")
    return value


def _parse_example(spec: TaskSpec, row: dict[str, str], where: str) -> Example:
    video_id = row["youtube_id"]
    if spec.name == "like_ratio":
        like = _parse_count(row["like_count"], "like_count", where)
        dislike = _parse_count(row["dislike_count"], "dislike_count", where)
        if like + dislike == 0:
            raise ValueError(f"{where}: video {video_id} has like_count + dislike_count == 0 (ratio undefined)")
        return Example(video_id, float(spec.target.apply([like], [dislike])[0]))
    if spec.name == "view_count":
        views = _parse_count(row["view_count"], "view_count", where)
        if views == 0:
            raise ValueError(f"{where}: video {video_id} has view_count 0 (log undefined)")
        return Example(video_id, float(spec.target.apply([views])[0]))
    try:
        class_id = int(row["class_id"])
    except ValueError:
        raise ValueError(f"{where}: class_id {row['class_id']!r} is not an integer") from None
    if not 0 <= class_id < spec.n_outputs:
        raise ValueError(
            f"{where}: class_id {class_id} is out of range for task {spec.name} "
            f"({spec.n_outputs} classes: 0..{spec.n_outputs - 1})"
        )
    name = row["class_name"]
    return Example(video_id, class_id, None if name == NULL_NAME else name)


def read_task_split(split_dir, task: str, split: str) -> list[Example]:
    """Examples of one task and split, in file order.

    Raises FileNotFoundError for a missing file and ValueError, naming the file (and line),
    for a wrong header, a row with the wrong number of fields, a class id that is not an
    integer or is outside ``range(n_outputs)``, non-numeric or negative counts, a zero
    like + dislike or view count, a video listed twice, or one class id with two names.
    """
    spec = task_spec(task)
    path = split_path(split_dir, task, split)
    examples: list[Example] = []
    first_line: dict[str, int] = {}
    names: dict[int, tuple[str | None, int]] = {}
    for number, row in _read_rows(path, spec.columns, sep=None):
        where = f"{path}:{number}"
        example = _parse_example(spec, row, where)
        if example.video_id in first_line:
            first = first_line[example.video_id]
            raise ValueError(f"{where}: video {example.video_id} is listed twice (first on line {first})")
        first_line[example.video_id] = number
        if spec.kind == "classification":
            name, name_line = names.setdefault(example.target, (example.label_name, number))
            if name != example.label_name:
                raise ValueError(
                    f"{where}: class_id {example.target} is named {example.label_name!r}, "
                    f"but {name!r} on line {name_line}"
                )
        examples.append(example)
    return examples


def label_names(split_dir, task: str) -> list[str]:
    """Class names of a classification task, indexed by class id (length n_outputs).

    Names come from the class_name column of all three splits; ids that never occur, or
    whose name is ``\\N``, are called ``class_<id>``. Raises ValueError if the splits name
    one id differently, or for a regression task.
    """
    spec = task_spec(task)
    if spec.kind != "classification":
        raise ValueError(f"task {task} is a regression task; it has no class names")
    found: dict[int, tuple[str, str]] = {}  # class id -> (name, split that named it)
    for split in SPLITS:
        for example in read_task_split(split_dir, task, split):
            if example.label_name is None:
                continue
            name, where = found.setdefault(example.target, (example.label_name, split))
            if name != example.label_name:
                raise ValueError(
                    f"{task}: class_id {example.target} is named {name!r} in {where}.csv "
                    f"but {example.label_name!r} in {split}.csv"
                )
    return [found[i][0] if i in found else f"class_{i}" for i in range(spec.n_outputs)]


def read_durations(split_dir) -> dict[str, float]:
    """Video durations in seconds from ``<split_dir>/lvu_durations.csv`` (``videoid,duration``)."""
    path = Path(split_dir) / DURATIONS_FILE
    durations: dict[str, float] = {}
    for number, row in _read_rows(path, DURATION_COLUMNS, sep=","):
        where = f"{path}:{number}"
        video_id, text = row["videoid"], row["duration"]
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"{where}: duration {text!r} is not a number") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{where}: duration {seconds} is not a finite non-negative number of seconds")
        if video_id in durations and durations[video_id] != seconds:
            raise ValueError(f"{where}: video {video_id} has two durations ({durations[video_id]} and {seconds})")
        durations[video_id] = seconds
    return durations


def all_video_ids(split_dir) -> list[str]:
    """Sorted unique YouTube ids over every task and split (the videos to download)."""
    return sorted(
        {example.video_id for task in TASKS for split in SPLITS for example in read_task_split(split_dir, task, split)}
    )


# ----------------------------------------------------------------------------------- source


def source_data(split_dir, tasks: Iterable[str]) -> SourceData:
    """The given LVU tasks from an lvu_1.0 directory in the common form (vis4mer.sources):
    classification keeps the files' class ids and the task's whole class-id space, regression
    the paper's targets (TARGETS)."""
    data = {}
    for task in tasks:
        spec = task_spec(task)
        splits = {
            split: [
                SplitRow(e.video_id, e.target, None if e.label_name is None else as_field(e.label_name))
                for e in read_task_split(split_dir, task, split)
            ]
            for split in SPLITS
        }
        names = [as_field(name) for name in label_names(split_dir, task)] if spec.kind == "classification" else []
        data[task] = TaskData(spec.kind, splits, names)
    if not data:
        raise ValueError("no LVU task given")
    videos = {video_id: VideoInfo(role) for video_id, role in roles(data).items()}
    return SourceData(data, videos, {"targets": "vis4mer.sources.lvu (classification: class ids of the files; regression: the paper's targets)"})


class LvuSource(Benchmark):
    """LVU 1.0: split files from ``split_dir`` (or fetched from ``splits_url`` by the checkpoint
    lvu_splits when it is null), videos through the download stage, optionally trimmed to the
    clip LVU annotated (``trim_preview``, lvu_durations.csv)."""

    kind = "lvu"
    downloads = True
    fetch_checkpoint = "lvu_splits"
    files_key = "split_dir"

    @classmethod
    def config_errors(cls, name, settings):
        yield from super().config_errors(name, settings)
        key = f"datasets.{name}"
        for task, spec in settings["tasks"].items():
            if task not in TASKS:
                yield f"{key}.tasks.{task}: not an LVU task (LVU tasks: {', '.join(TASKS)})"
            elif spec["type"] != TASKS[task].kind:
                yield f"{key}.tasks.{task}.type is {spec['type']}, but LVU's {task} is a {TASKS[task].kind} task"
        if settings["trim_preview"] and settings["features"]["family"] != "vit":
            yield f"{key}.trim_preview needs features.family vit (the frames stage trims the videos)"

    @classmethod
    def needs_fetch(cls, settings):
        return not settings["split_dir"]

    @classmethod
    def paper_result(cls, task):
        if task not in TASKS:
            return None
        spec = TASKS[task]
        unit = "%" if spec.metric == "accuracy" else "MSE (paper targets)"
        return {"value": spec.paper_result, "metric": spec.metric, "unit": unit, "source": f"{PAPER}, Table 1 (LVU)"}

    @classmethod
    def read_source(cls, arguments):
        return source_data(arguments["split_dir"], arguments["tasks"])

    @property
    def split_dir(self) -> str:
        """The lvu_1.0 directory: configured, or the one the checkpoint lvu_splits fetched."""
        split_dir = self.settings["split_dir"] or self.fetched
        if not split_dir:
            raise ValueError(f"dataset {self.name!r}: split_dir is null and no fetched lvu_1.0 directory was given")
        return str(split_dir)

    def arguments(self, tasks):
        return {"source": self.kind, "split_dir": self.split_dir, "tasks": list(tasks)}

    def task_settings(self, task):
        settings = super().task_settings(task)
        if task in TARGETS:  # how the split files' targets derive from the raw columns (for vis4mer predict)
            settings["target"] = TARGETS[task].as_config()
        return settings

    def split_origin(self, task, split):
        return os.path.join(self.split_dir, task, f"{split}.csv")

    def split_inputs(self, task):
        if self.needs_fetch(self.settings):
            return {"source": self.split_dir}  # the fetched directory
        return {"source": [os.path.join(self.split_dir, task, f"{split}.csv") for split in SPLITS]}

    def _durations(self, why: str) -> dict[str, float]:
        """lvu_durations.csv, read once; `why` it is needed names the setting in errors."""
        if getattr(self, "_read_durations", None) is None:
            try:
                self._read_durations = read_durations(self.split_dir)
            except (OSError, ValueError) as error:
                raise ValueError(f"dataset {self.name!r} ({why}, see datasets.{self.name}.split_dir): {error}") from error
        return self._read_durations

    def durations(self):
        path = Path(self.split_dir) / DURATIONS_FILE
        return read_durations(self.split_dir) if path.is_file() else None

    def keep_last_s(self, ids):
        if not self.settings["trim_preview"]:
            return None
        durations = self._durations("trim_preview")
        return {v: durations[v] for v in ids if v in durations}

    def spread_seconds(self, ids):
        # the durations are the frames job's params (a changed duration re-runs it), no input file
        if dataset_recipe(self.settings).lvu_frame_times != "spread":
            return None
        durations = self._durations("recipe item lvu_frame_times spread")
        return {v: durations[v] for v in ids if v in durations}

    def frames_inputs(self):
        if not self.settings["trim_preview"]:
            return {}
        return {"durations": os.path.join(self.split_dir, DURATIONS_FILE)}


SOURCE = LvuSource
