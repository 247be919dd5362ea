"""vis4mer.sources.local: a dataset of your own videos and split files, read in place: ids from
the split files, label transforms, which videos have a file and why the others have none,
roles, task settings and errors, without Snakemake."""

from __future__ import annotations

import pytest

from _sources import config_with, dataset_settings
from vis4mer import sources
from vis4mer.config import ConfigError, check_config, validate_config
from vis4mer.sources.splits import SplitRow, write_split_csv

TASKS = {"genre": {"type": "classification"}, "views": {"type": "regression", "label_column": "views",
                                                         "label_transform": {"log": True}}}


def write_dataset(root):
    """genre: ids a-d; views (a `views` column, the labels in class_id too): ids c-f; no file for f."""
    for split, ids in (("train", ["a", "b"]), ("val", ["c"]), ("test", ["d"])):
        write_split_csv(root / "splits" / "genre" / f"{split}.csv", [SplitRow(v, i % 2, "x") for i, v in enumerate(ids)])
    for split, ids in (("train", ["c"]), ("val", ["e"]), ("test", ["f"])):
        rows = "".join(f"{v} 100 -\n" for v in ids)
        (root / "splits" / "views" / f"{split}.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / "splits" / "views" / f"{split}.csv").write_text("youtube_id views imdb_id\n" + rows)
    (root / "videos").mkdir()
    for name in ("a.mp4", "b.mkv", "b.mp4", "c.webm", "d.mov", "e.avi"):
        (root / "videos" / name).write_bytes(b"")
    return root


def local_source(root, tasks=TASKS, **settings):
    dataset = {"source": "local", "video_dir": str(root / "videos"), "split_dir": str(root / "splits"), "tasks": tasks, **settings}
    return sources.open_source("mine", dataset_settings("mine", dataset))


def test_local_ids_rows_and_files(tmp_path):
    root = write_dataset(tmp_path)
    source = local_source(root)
    assert source.video_ids() == ("a", "b", "c", "d", "e", "f")  # the union of the split files
    assert [r.label for r in source.tasks()["views"].splits["train"]] == [pytest.approx(4.605170185988092)]  # log 100
    found, missing = source.video_files(source.video_ids())
    assert found["b"] == str(root / "videos" / "b.mp4")  # video_extensions order: mp4 before mkv
    assert found["c"] == str(root / "videos" / "c.webm")
    assert missing == {"f": f"no video file for f under {root / 'videos'} (datasets.mine.video_dir)"}
    assert source.video_inputs(["e", "f"]) == [str(root / "videos" / "e.avi")]  # a missing file is no input
    assert source.roles() == {"a": "train", "b": "train", "c": "train", "d": "test", "e": "test", "f": "test"}
    assert source.split_file("views", "val") == str(root / "splits" / "views" / "val.csv")
    assert source.notes() == {} and source.summary_info()["paper"] == {}


def test_local_task_settings_default_to_the_dataset_columns(tmp_path):
    source = local_source(write_dataset(tmp_path))
    assert source.task_settings("genre") == {"type": "classification", "id_column": "youtube_id", "label_column": "class_id",
                                             "label_transform": {}}
    assert source.task_settings("views") == {"type": "regression", "id_column": "youtube_id", "label_column": "views",
                                             "label_transform": {"log": True}}


def test_a_missing_split_file_names_the_file_and_the_key(tmp_path):
    root = write_dataset(tmp_path)
    (root / "splits" / "views" / "train.csv").unlink()
    with pytest.raises(sources.SourceError, match=r"dataset 'mine' \(local, see datasets.mine.split_dir\): split file .*views/train.csv does not exist"):
        local_source(root).video_ids()


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ({"genre": {"type": "classification", "label_transform": {"log": True}}}, "datasets.mine.tasks.genre.label_transform is for regression tasks only"),
        ({"views": {"type": "regression", "label_transform": {"scale": 0}}}, "datasets.mine.tasks.views.label_transform.scale is 0"),
    ],
)
def test_local_config_errors_name_the_key(tasks, expected):
    config = validate_config(config_with("mine", {"source": "local", "video_dir": "v", "split_dir": "s", "tasks": tasks}))
    with pytest.raises(ConfigError, match=expected):
        check_config(config)
