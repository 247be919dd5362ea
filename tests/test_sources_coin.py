"""vis4mer.sources.coin's source: COIN in the common form (classes, ranges, stratified holdout)
and what the workflow asks of a COIN dataset (ids, ranges of a shard, split inputs, paper
number, config errors), without Snakemake."""

from __future__ import annotations

import pytest

from _sources import config_with, dataset_settings
from _workflow_media import COIN_VIDEOS, write_coin
from vis4mer import sources
from vis4mer.config import ConfigError, check_config, validate_config
from vis4mer.sources import coin


def test_coin_source_ranges_and_stratified_holdout(tmp_path):
    annotations = write_coin(tmp_path, tmp_path / "served")
    data = coin.source_data(annotations, "task", {"fraction": 0.2, "seed": 1})
    task = data.tasks["task"]
    assert len(task.label_names) == 180 and task.label_names[2] == "ChangeTire" and task.label_names[1] == "class_1"
    val = task.splits["val"]
    assert sorted(r.label for r in val) == [0, 2]  # one of each class's 3 training videos
    assert len(task.splits["train"]) == 4 and {r.video_id for r in task.splits["test"]} == {"c07", "c08", "gone_c"}
    assert (data.videos["c01"].start, data.videos["c01"].end) == (1.0, 5.0)
    assert data.videos["c01"].role in ("train", "test") and data.videos["c07"].role == "test"
    assert data.videos[val[0].video_id].role == "test"  # held out: encoded like a test video


def test_coin_dataset_ids_ranges_and_split_rule(tmp_path):
    annotations = write_coin(tmp_path, tmp_path / "served")
    settings = dataset_settings("c", {"source": "coin", "annotations": str(annotations), "tasks": {"task": {"type": "classification"}},
                                      "validation": {"fraction": 0.2, "seed": 1}})
    source = sources.open_source("c", settings)
    assert source.video_ids() == tuple(sorted(COIN_VIDEOS))
    assert source.downloads and source.writes_splits
    # the annotated range of each video of a shard (the features stage reads only that part)
    assert source.ranges(["c01", "c07"]) == {"c01": [1.0, 5.0], "c07": [0.5, 4.5]}
    assert source.split_inputs("task") == {"source": str(annotations)}
    assert source.split_arguments("task") == {"source": "coin", "annotations": str(annotations), "task": "task",
                                              "validation": {"fraction": 0.2, "seed": 1, "strategy": "holdout"}}
    assert sources.read_source(source.split_arguments("task")).tasks == source.tasks()
    assert len(source.task_settings("task")["label_names"]) == coin.N_CLASSES
    info = source.summary_info()
    assert info["paper"]["task"]["value"] == 88.41 and "stratified by class" in info["notes"]["validation"]["description"]


def test_coin_download_settings_are_checked():
    dataset = {"source": "coin", "annotations": "COIN.json", "tasks": {"task": {"type": "classification"}}}
    for download, expected in (({"source": ["youtube", "local"], "local_dirs": ["m"]}, "write \\[local, youtube\\]"),
                               ({"source": "local"}, "datasets.c.download.local_dirs is empty")):
        with pytest.raises(ConfigError, match=expected):
            check_config(validate_config(config_with("c", {**dataset, "download": download})))
