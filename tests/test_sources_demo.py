"""vis4mer.sources.demo: a generated dataset answers before it is generated, and its answers are
what the generator then writes (ids, split rows, files), without Snakemake."""

from __future__ import annotations

import os

import pytest

from _sources import config_with, dataset_settings
from vis4mer import sources
from vis4mer.config import ConfigError, check_config, validate_config
from vis4mer.demo_data import generate_demo_dataset
from vis4mer.sources.splits import read_split_csv

DEMO = {"n_videos": 6, "seed": 3, "size": 32, "fps": 4.0, "min_seconds": 12.0, "max_seconds": 14.0,
        "event_seconds": [2.0, 2.5], "min_gap_seconds": 4.0, "split_fractions": [0.5, 0.25, 0.25]}


def demo_source(results, **demo) -> sources.Source:
    settings = dataset_settings("dm", {"source": "demo", "demo": {**DEMO, **demo}, "tasks": {"order": {"type": "classification"}}})
    return sources.open_source("dm", settings, results=results)


def test_demo_answers_before_generation_what_the_generator_writes(tmp_path):
    source = demo_source(tmp_path)
    assert source.video_ids() == tuple(f"demo_{i:04d}" for i in range(6))
    planned = source.tasks()["order"]
    assert not (tmp_path / "dm").exists()  # nothing read or written so far
    generate_demo_dataset(tmp_path / "dm", **{key: tuple(v) if isinstance(v, list) else v for key, v in DEMO.items()})
    for split in ("train", "val", "test"):
        assert read_split_csv(source.split_file("order", split)) == planned.splits[split]
    found, missing = source.video_files(source.video_ids())
    assert missing == {} and found == {vid: str(tmp_path / "dm" / "videos" / f"{vid}.mp4") for vid in source.video_ids()}
    assert all(os.path.exists(path) for path in found.values())


def test_demo_inputs_settings_and_roles(tmp_path):
    source = demo_source(tmp_path)
    assert source.generated and not source.downloads and not source.writes_splits
    assert source.video_inputs(["demo_0000"]) == [str(tmp_path / "dm" / "videos")]  # the generator's output folder
    assert source.task_settings("order") == {"type": "classification", "id_column": "youtube_id", "label_column": "class_id",
                                             "label_transform": {}}
    train = {row.video_id for row in source.tasks()["order"].splits["train"]}
    assert {vid for vid, role in source.roles().items() if role == "train"} == train and len(train) == 4  # round(0.5 x 3) of each label
    assert source.ranges(source.video_ids()) == {} and source.keep_last_s(source.video_ids()) is None
    assert source.notes() == {} and source.summary_info() == {"source": "demo", "seeds": [], "paper": {}}
    assert demo_source(tmp_path, n_videos=9).video_ids()[-1] == "demo_0008"


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({"tasks": {"genre": {"type": "classification"}}}, r"datasets.dm.tasks must be exactly \{order: ...\} for a demo dataset"),
        ({"tasks": {"order": {"type": "regression"}}}, "datasets.dm.tasks.order.type must be classification"),
        ({"tasks": {"order": {"type": "classification", "label_transform": {"log": True}}}},
         "datasets.dm.tasks.order.label_transform is for regression tasks only"),
        ({"features": {"family": "swin", "backbone": "swin_test_patch244_window877"}, "frames": {"size": 64}},
         "datasets.dm.features.family swin is not available for source demo"),
    ],
)
def test_demo_config_errors_name_the_key(dataset, expected):
    config = validate_config(config_with("dm", {"source": "demo", "demo": {}, "tasks": {"order": {"type": "classification"}}, **dataset}))
    with pytest.raises(ConfigError, match=expected):
        check_config(config)
