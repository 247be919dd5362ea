"""Dataset kinds ("sources"): one module per kind behind one interface, and their registry.

A dataset of the pipeline (config ``datasets.<name>``) names its kind in ``source``. Each kind
is one module of this package whose ``SOURCE`` is a :class:`Source` subclass:

    demo        vis4mer.sources.demo       the synthetic order task (vis4mer.demo_data), generated
                                           by the rule demo_videos
    local       vis4mer.sources.local      videos <video_dir>/<id>.<ext>, split files
                                           <split_dir>/<task>/{train,val,test}.csv read in place
    lvu         vis4mer.sources.lvu        LVU 1.0 (split files read or fetched; videos downloaded)
    breakfast   vis4mer.sources.breakfast  Breakfast Actions (videos found in video_dir)
    coin        vis4mer.sources.coin       COIN (COIN.json; videos downloaded; annotated ranges)

A source object (:func:`open_source`) answers, for the stages and without Snakemake: the video
ids, the split rows and settings of each task, which videos have a file and why the others
have none, time ranges, roles (training video or not), the split files and what writes them,
and the notes for all.json. The kind's class attributes say how its data arrives (downloads,
split files written by the rule splits, a generated dataset). Benchmarks with their own
loader (lvu, breakfast, coin) produce a :class:`SourceData` in one common form: per task the
train/val/test rows with the targets as the loader computes them (LVU regression: the
paper's targets) and the whole class-id space (ids no split contains included); per video
its role and, where known, its file (Breakfast) or annotated range (COIN).

Adding a kind: a module ``vis4mer/sources/<kind>.py`` with ``SOURCE = <its Source class>``,
its name in KINDS, and its block in workflow/schemas/config.schema.yaml.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence

from vis4mer.download import read_manifest
from vis4mer.sources.splits import ID_COLUMN, LABEL_COLUMN, SPLITS, SplitRow, write_split_csv

KINDS = ("demo", "local", "lvu", "breakfast", "coin")
PAPER = "ViS4mer (Islam & Bertasius, ECCV 2022)"

logger = logging.getLogger(__name__)


class SourceError(ValueError):
    """A dataset's source files cannot be read; the message names the dataset and its config key."""


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


def roles(tasks: Mapping[str, TaskData]) -> dict[str, str]:
    """{video id: "train" if it is in a train split of some task, else "test"}, sorted by id."""
    every = {row.video_id for data in tasks.values() for rows in data.splits.values() for row in rows}
    train = {row.video_id for data in tasks.values() for row in data.splits["train"]}
    return {video_id: "train" if video_id in train else "test" for video_id in sorted(every)}


class Source:
    """A dataset of one kind: `name` (its key under ``datasets``) and `settings` (that config
    section, validated, schema defaults filled in). Files are read when first needed, once.

    `results` is the pipeline's results folder; `fetched` the output of the kind's
    `fetch_checkpoint` when the dataset needs it (:meth:`needs_fetch`).
    """

    kind: ClassVar[str]
    downloads: ClassVar[bool] = False  # video ids are YouTube ids: the videos come from the download stage
    writes_splits: ClassVar[bool] = False  # the rule splits writes results/<name>/splits/ from the source files
    generated: ClassVar[bool] = False  # videos and split files are generated (rule demo_videos)
    swin_features: ClassVar[bool] = True  # Video Swin features can be read from its video files
    fetch_checkpoint: ClassVar[str | None] = None  # the checkpoint rule fetching its files, if it has one
    files_key: ClassVar[str] = ""  # the config key(s) naming its files, for error messages

    def __init__(self, name: str, settings: Mapping[str, Any], *, results="results", fetched: str | None = None):
        self.name = name
        self.settings = settings
        self.results = Path(results)
        self.fetched = fetched

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ------------------------------------------------------------------- config

    @classmethod
    def config_errors(cls, name: str, settings: Mapping[str, Any]) -> Iterator[str]:
        """What is wrong with the dataset's settings beyond the schema, one message per
        problem, each naming its key (``datasets.<name>...``)."""
        for task, spec in settings["tasks"].items():
            if spec.get("label_transform") and spec["type"] != "regression":
                yield f"datasets.{name}.tasks.{task}.label_transform is for regression tasks only"

    @classmethod
    def needs_fetch(cls, settings: Mapping[str, Any]) -> bool:
        """True when the files come from the kind's fetch_checkpoint (not configured)."""
        return False

    @classmethod
    def paper_result(cls, task: str) -> dict[str, Any] | None:
        """{"value", "metric", "unit", "source"} of ViS4mer's test result on `task`, or None."""
        return None

    # ------------------------------------------------------------------- the data

    def read(self) -> SourceData:
        """The dataset's SourceData (tasks, videos, notes), read from its files."""
        raise NotImplementedError

    @cached_property
    def data(self) -> SourceData:
        try:
            data = self.read()
        except (OSError, ValueError) as error:
            raise SourceError(f"dataset {self.name!r} ({self.kind}, see datasets.{self.name}.{self.files_key}): {error}") from error
        for problem in self.split_errors(data):
            raise SourceError(f"dataset {self.name!r}: {problem}")
        for task, task_data in data.tasks.items():
            for split in SPLITS:
                if not task_data.splits[split]:
                    logger.warning(
                        "dataset %r: task %s: the %s split (%s) lists no videos%s", self.name, task, split,
                        self.split_origin(task, split), ": nothing is evaluated (the metric is n/a)" if split == "test" else "",
                    )
        return data

    def split_errors(self, data: SourceData) -> Iterator[str]:
        """Unless ``allow_split_overlap``: each video in two splits of a task (leakage: trained
        on, or selected on, what it is tested on). The test split used as the validation split
        on purpose (validation strategy test) is no overlap."""
        if self.settings["allow_split_overlap"]:
            return
        same_val_test = (data.notes.get("validation") or {}).get("strategy") == "test"
        for task, task_data in data.tasks.items():
            splits = task_data.splits
            for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
                if (first, second) == ("val", "test") and same_val_test:
                    continue
                shared = sorted({r.video_id for r in splits[first]} & {r.video_id for r in splits[second]})
                if shared:
                    more = f" ... ({len(shared)} in all)" if len(shared) > 10 else ""
                    yield (
                        f"task {task}: {len(shared)} video(s) in both the {first} split ({self.split_origin(task, first)}) and "
                        f"the {second} split ({self.split_origin(task, second)}): {', '.join(shared[:10])}{more}. A video in "
                        f"two splits leaks into the result: remove it from one, or set datasets.{self.name}.allow_split_overlap: "
                        "true to accept it"
                    )

    def split_origin(self, task: str, split: str) -> str:
        """Where the rows of a task's split come from, for messages: the split file read."""
        return self.split_file(task, split)

    def video_ids(self) -> tuple[str, ...]:
        """Every video id of every task and split, sorted."""
        return tuple(self.data.videos)

    def tasks(self) -> dict[str, TaskData]:
        return self.data.tasks

    def videos(self) -> dict[str, VideoInfo]:
        return self.data.videos

    def notes(self) -> dict[str, Any]:
        """What all.json records about the data (split protocol, validation strategy)."""
        return self.data.notes

    def task_settings(self, task: str) -> dict[str, Any]:
        """What the train and evaluate stages need to read the task's split files: type,
        id_column, label_column, label_transform, and where the source has them the class
        names (the whole class-id space) and the regression target's derivation."""
        raise NotImplementedError

    def task_spec(self, task: str) -> Mapping[str, Any]:
        """The task's config section; a ValueError lists the tasks otherwise."""
        tasks = self.settings["tasks"]
        if task not in tasks:
            raise ValueError(f"dataset {self.name!r} has no task {task!r} (tasks: {sorted(tasks)})")
        return tasks[task]

    # ------------------------------------------------------------------- videos

    def missing_reason(self, video_id: str) -> str:
        return f"no video file for {video_id} under {self.settings['video_dir']} (datasets.{self.name}.video_dir)"

    def video_files(self, ids: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
        """({id: file} of the `ids` whose file is known now, {id: why not} of the others).
        Only for kinds whose files are known when the DAG is built (not downloads)."""
        if self.downloads:
            raise TypeError(f"{self.kind} videos come from the download stage: read them from its manifests (videos_from_manifests)")
        videos = self.videos()
        found, missing = {}, {}
        for video_id in ids:
            path = videos[video_id].path
            if path:
                found[video_id] = path
            else:
                missing[video_id] = self.missing_reason(video_id)
        return found, missing

    def video_inputs(self, ids: Iterable[str]) -> list[str]:
        """The files a stage reading these videos depends on (existing files only: a video
        without one is recorded as skipped, with its reason, not waited for)."""
        found, _ = self.video_files(ids)
        return [path for path in found.values() if os.path.exists(path)]

    def ranges(self, ids: Iterable[str]) -> dict[str, list[float | None]]:
        """{id: [start, end]} in seconds of the `ids` that are used only in part (COIN)."""
        videos = self.videos()
        return {v: [videos[v].start, videos[v].end] for v in ids if videos[v].start is not None or videos[v].end is not None}

    def keep_last_s(self, ids: Iterable[str]) -> dict[str, float] | None:
        """{id: seconds} to keep at the end of each video (LVU's trim_preview), None when not trimming."""
        return None

    def durations(self) -> dict[str, float] | None:
        """{video id: seconds} where the dataset's files say it before any video is decoded
        (LVU's lvu_durations.csv), else None; for estimates (vis4mer doctor)."""
        return None

    def spread_seconds(self, ids: Iterable[str]) -> dict[str, float] | None:
        """{id: seconds} of the videos whose frames are spread over the whole file, seconds + 1 of
        them (LVU under recipe item lvu_frame_times spread), None when sampling at frames.fps."""
        return None

    def roles(self) -> dict[str, str]:
        """{id: "train" | "test"}: train for a video of some task's train split."""
        return {video_id: info.role for video_id, info in self.videos().items()}

    def frames_inputs(self) -> dict[str, str]:
        """Files the frames stage depends on besides the videos (LVU durations)."""
        return {}

    # ------------------------------------------------------------------- split files

    def split_file(self, task: str, split: str) -> str:
        """Where the stages read the task's split file."""
        return str(self.results / self.name / "splits" / task / f"{split}.csv")

    def split_inputs(self, task: str) -> dict[str, Any]:
        """The source files the rule splits reads for `task` (writes_splits kinds)."""
        raise NotImplementedError(f"{self.kind} datasets have no splits rule")

    def split_arguments(self, task: str) -> dict[str, Any]:
        """The arguments of :func:`read_source` that write `task`'s split files (the params
        of the rule splits: changing one rewrites them)."""
        raise NotImplementedError(f"{self.kind} datasets have no splits rule")

    # ------------------------------------------------------------------- all.json

    def summary_info(self) -> dict[str, Any]:
        """What all.json reports beside the metrics: source, seeds, paper numbers, notes,
        and the unit of a feature frame for Video Swin features."""
        info: dict[str, Any] = {"source": self.kind, "seeds": list(self.settings.get("seeds") or [])}
        info["paper"] = {task: reference for task in self.settings["tasks"] if (reference := self.paper_result(task))}
        if notes := self.notes():
            info["notes"] = notes
        if self.settings["features"]["family"] == "swin":
            info["frame_unit"] = "segment of 32 frames (Video Swin); window_frames counts segments"
        return info


class Benchmark(Source):
    """A benchmark read with its own loader (`read_source`): the rule splits writes its split
    files in the common layout, with the targets and class ids the loader computes."""

    writes_splits = True
    single_task: ClassVar[bool] = False  # exactly one task, of type classification
    paper_accuracy: ClassVar[float | None] = None  # ViS4mer's test accuracy (%) on its one task

    @classmethod
    def config_errors(cls, name, settings):
        tasks = settings["tasks"]
        for task, spec in tasks.items():
            for column in ("id_column", "label_column", "label_transform"):
                if column in spec:
                    yield (
                        f"datasets.{name}.tasks.{task}.{column}: not used with source {cls.kind} (targets and ids "
                        f"come from vis4mer.sources.{cls.kind}); remove it"
                    )
        if cls.single_task and (len(tasks) != 1 or next(iter(tasks.values()))["type"] != "classification"):
            yield f"datasets.{name}.tasks: {cls.kind} has exactly one task, of type classification (got {sorted(tasks)})"

    @classmethod
    def paper_result(cls, task):
        if cls.paper_accuracy is None:
            return None
        return {"value": cls.paper_accuracy, "metric": "accuracy", "unit": "%", "source": f"{PAPER} ({cls.kind})"}

    @classmethod
    def read_source(cls, arguments: Mapping[str, Any]) -> SourceData:
        """SourceData from :meth:`split_arguments`-style arguments."""
        raise NotImplementedError

    def arguments(self, tasks: Sequence[str]) -> dict[str, Any]:
        """read_source's arguments for `tasks` (several only where the kind has several)."""
        raise NotImplementedError

    def read(self) -> SourceData:
        return self.read_source(self.arguments(list(self.settings["tasks"])))

    def split_arguments(self, task):
        self.task_spec(task)
        return self.arguments([task])

    def split_origin(self, task, split):
        return f"the {split} split the {self.kind} loader makes from datasets.{self.name}.{self.files_key}"

    def task_settings(self, task):
        spec = self.task_spec(task)
        return {
            "type": spec["type"],
            "id_column": ID_COLUMN,
            "label_column": LABEL_COLUMN,
            "label_transform": {},
            "label_names": list(self.data.tasks[task].label_names),
        }


def source_class(kind: str) -> type[Source]:
    """The Source class of a kind (its module is imported on first use)."""
    if kind not in KINDS:
        raise ValueError(f"unknown source {kind!r}; expected one of {', '.join(KINDS)}")
    return importlib.import_module(f"vis4mer.sources.{kind}").SOURCE


def open_source(name: str, settings: Mapping[str, Any], **options) -> Source:
    """The source of dataset `name` (`settings`: its validated config section); `options`:
    Source's `results` and `fetched`."""
    return source_class(settings["source"])(name, settings, **options)


def read_source(arguments: Mapping[str, Any]) -> SourceData:
    """SourceData from a dict naming the source and its loader's arguments (the params of the
    rule splits, :meth:`Benchmark.split_arguments`)."""
    kind = source_class(arguments["source"])
    if not issubclass(kind, Benchmark):
        raise ValueError(f"source {arguments['source']!r} has no loader of its own; expected one of lvu, breakfast, coin")
    return kind.read_source(arguments)


def paper_result(kind: str, task: str) -> dict[str, Any] | None:
    """{"value", "metric", "unit", "source"} of the paper's test result, or None."""
    return source_class(kind).paper_result(task)


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


def videos_from_manifests(video_ids: Iterable[str], manifests: Iterable) -> tuple[dict[str, Path], dict[str, str]]:
    """({id: file} of the ids the download stage got, {id: why not} for the others) from
    download manifests (vis4mer.download); an id in no manifest is reported as such."""
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


def shard_videos(ids: Sequence[str], planned: Mapping[str, Any], manifests: Sequence | None) -> tuple[dict[str, Path], dict[str, str]]:
    """({id: file}, {id: why no file}) of a shard's videos for the frames and features
    stages: from the download `manifests` when the dataset is downloaded, else as planned
    (`planned["videos"]`, `planned["missing"]`, from :meth:`Source.video_files`)."""
    if manifests is not None:
        return videos_from_manifests(ids, manifests)
    return {v: Path(path) for v, path in planned["videos"].items()}, dict(planned["missing"])
