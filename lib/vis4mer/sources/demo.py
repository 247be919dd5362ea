"""The demo dataset: the synthetic order task of vis4mer.demo_data, generated into
results/<dataset>/ by the rule demo_videos (videos/<id>.mp4, splits/order/*.csv).

Everything about it follows from its settings (``demo``: n_videos, seed, split_fractions,
...), so the source answers before anything is generated: the ids, the split rows and the
video files are those the generator writes.
"""

from __future__ import annotations

from vis4mer import demo_data
from vis4mer.sources import Source, SourceData, TaskData, VideoInfo, roles
from vis4mer.sources.splits import ID_COLUMN, LABEL_COLUMN


class DemoSource(Source):
    kind = "demo"
    generated = True
    swin_features = False  # the generated videos are too small for Video Swin
    files_key = "demo"

    @classmethod
    def config_errors(cls, name, settings):
        yield from super().config_errors(name, settings)
        tasks = settings["tasks"]
        if set(tasks) != {demo_data.TASK}:
            yield (
                f"datasets.{name}.tasks must be exactly {{{demo_data.TASK}: ...}} for a demo dataset "
                f"(the generator writes only that task), got {sorted(tasks)}"
            )
        elif tasks[demo_data.TASK]["type"] != "classification":
            yield f"datasets.{name}.tasks.{demo_data.TASK}.type must be classification"

    @property
    def video_dir(self) -> str:
        return str(self.results / self.name / "videos")

    def read(self):
        demo = self.settings["demo"]
        splits = demo_data.demo_splits(demo["n_videos"], demo["seed"], tuple(demo["split_fractions"]))
        tasks = {demo_data.TASK: TaskData("classification", splits, list(demo_data.LABEL_NAMES))}
        videos = {v: VideoInfo(role, f"{self.video_dir}/{v}.mp4") for v, role in roles(tasks).items()}
        return SourceData(tasks, videos)

    def task_settings(self, task):
        spec = self.task_spec(task)
        return {"type": spec["type"], "id_column": ID_COLUMN, "label_column": LABEL_COLUMN, "label_transform": {}}

    def video_inputs(self, ids):
        return [self.video_dir]  # the generator's output folder: its files do not exist before it runs


SOURCE = DemoSource
