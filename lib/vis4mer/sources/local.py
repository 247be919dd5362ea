"""Local datasets: videos in a folder, split files read where they are.

    <video_dir>/<video_id>.<ext>                 the first of video_extensions that exists
    <split_dir>/<task>/{train,val,test}.csv      vis4mer.sources.splits: the LVU layout
                                                 (space-separated, class_id class_name youtube_id
                                                 ...) or an ordinary CSV (video_id,label and
                                                 optionally label_name, start, end); each task's
                                                 id_column and label_column (dataset defaults,
                                                 else the format's), and a regression task's
                                                 label_transform

A CSV's ``start``/``end`` (seconds) are the part of the video used, as COIN's annotated ranges.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from vis4mer.labels import LabelTransform, read_task_rows
from vis4mer.sources import Source, SourceData, TaskData, VideoInfo, roles
from vis4mer.sources.splits import SPLITS, default_columns, read_csv_ranges, split_format


def resolve_videos(video_ids: Iterable[str], video_dir, extensions: Sequence[str]) -> dict[str, Path]:
    """``{video_id: <video_dir>/<video_id>.<ext>}``, the first extension that exists.

    An id with no file maps to the path with the first extension, which does not
    exist: the frames stage records it as skipped instead of failing the shard.
    """
    video_dir = Path(video_dir)
    available: dict[str, Path] = {}
    if video_dir.is_dir():
        for entry in os.scandir(video_dir):
            stem, dot, ext = entry.name.rpartition(".")
            if dot and ext in extensions:
                known = available.get(stem)
                if known is None or extensions.index(ext) < extensions.index(known.suffix[1:]):
                    available[stem] = Path(entry.path)
    return {vid: available.get(vid, video_dir / f"{vid}.{extensions[0]}") for vid in video_ids}


class LocalSource(Source):
    kind = "local"
    files_key = "split_dir"

    @classmethod
    def config_errors(cls, name, settings):
        yield from super().config_errors(name, settings)
        for task, spec in settings["tasks"].items():
            if spec.get("label_transform") and spec["type"] == "regression":
                try:
                    LabelTransform.from_config(spec.get("label_column"), spec["label_transform"], f"datasets.{name}.tasks.{task}.label_transform")
                except ValueError as error:
                    yield str(error)
        if not os.path.isdir(settings["video_dir"]):
            yield f"datasets.{name}.video_dir: {settings['video_dir']} is not an existing folder (the folder holding <video_id>.<ext>)"

    def split_file(self, task, split):
        return os.path.join(self.settings["split_dir"], task, f"{split}.csv")

    def task_format(self, task) -> str:
        """The format of the task's split files, "lvu" or "csv" (vis4mer.sources.splits); one for all three."""
        formats = {split: split_format(self.split_file(task, split)) for split in SPLITS}
        if len(set(formats.values())) > 1:
            raise ValueError(
                f"task {task}: the split files mix formats ({', '.join(f'{split}.csv: {f}' for split, f in formats.items())}); "
                "write all three in one format"
            )
        return formats["train"]

    def task_settings(self, task):
        spec = self.task_spec(task)
        id_default, label_default = default_columns(self.task_format(task))
        return {
            "type": spec["type"],
            "id_column": spec.get("id_column") or self.settings["id_column"] or id_default,
            "label_column": spec.get("label_column") or self.settings["label_column"] or label_default,
            "label_transform": dict(spec.get("label_transform", {})),
        }

    def read(self):
        tasks = {}
        ranges: dict[str, tuple[tuple[float | None, float | None], str]] = {}  # id -> (range, the file saying so)
        for task in self.settings["tasks"]:
            for split in SPLITS:
                path = self.split_file(task, split)
                if not os.path.exists(path):
                    raise FileNotFoundError(
                        f"split file {path} does not exist "
                        f"(expected <split_dir>/<task>/<split>.csv with split_dir={self.settings['split_dir']!r})"
                    )
            spec, csv_files = self.task_settings(task), self.task_format(task) == "csv"
            splits = {}
            for split in SPLITS:
                path = self.split_file(task, split)
                splits[split] = read_task_rows(path, spec["id_column"], spec["label_column"], spec["label_transform"])
                if csv_files:
                    for video_id, bounds in read_csv_ranges(path, spec["id_column"]).items():
                        known, where = ranges.setdefault(video_id, (bounds, path))
                        if known != bounds:
                            raise ValueError(f"video {video_id} has start/end {list(bounds)} in {path} but {list(known)} in {where}")
            tasks[task] = TaskData(spec["type"], splits)
        video_roles = roles(tasks)
        if not video_roles:
            raise ValueError("the split files list no videos")
        files = resolve_videos(video_roles, self.settings["video_dir"], list(self.settings["video_extensions"]))
        videos = {}
        for video_id, role in video_roles.items():
            start, end = ranges.get(video_id, ((None, None), None))[0]
            videos[video_id] = VideoInfo(role, str(files[video_id]) if files[video_id].exists() else None, start, end)
        return SourceData(tasks, videos)


SOURCE = LocalSource
