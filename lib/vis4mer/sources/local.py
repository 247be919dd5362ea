"""Local datasets: videos in a folder, split files in the LVU layout read where they are.

    <video_dir>/<video_id>.<ext>                 the first of video_extensions that exists
    <split_dir>/<task>/{train,val,test}.csv      vis4mer.sources.splits, with each task's
                                                 id_column and label_column (dataset defaults),
                                                 and a regression task's label_transform
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from vis4mer.labels import LabelTransform, read_task_rows
from vis4mer.sources import Source, SourceData, TaskData, VideoInfo, roles
from vis4mer.sources.splits import SPLITS


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

    def task_settings(self, task):
        spec = self.task_spec(task)
        return {
            "type": spec["type"],
            "id_column": spec.get("id_column", self.settings["id_column"]),
            "label_column": spec.get("label_column", self.settings["label_column"]),
            "label_transform": dict(spec.get("label_transform", {})),
        }

    def read(self):
        tasks = {}
        for task in self.settings["tasks"]:
            spec = self.task_settings(task)
            splits = {}
            for split in SPLITS:
                path = self.split_file(task, split)
                if not os.path.exists(path):
                    raise FileNotFoundError(
                        f"split file {path} does not exist "
                        f"(expected <split_dir>/<task>/<split>.csv with split_dir={self.settings['split_dir']!r})"
                    )
                splits[split] = read_task_rows(path, spec["id_column"], spec["label_column"], spec["label_transform"])
            tasks[task] = TaskData(spec["type"], splits)
        video_roles = roles(tasks)
        if not video_roles:
            raise ValueError("the split files list no videos")
        files = resolve_videos(video_roles, self.settings["video_dir"], list(self.settings["video_extensions"]))
        videos = {v: VideoInfo(role, str(files[v]) if files[v].exists() else None) for v, role in video_roles.items()}
        return SourceData(tasks, videos)


SOURCE = LocalSource
