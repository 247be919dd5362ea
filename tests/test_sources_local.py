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


def test_a_video_in_two_splits_of_a_task_is_an_error_naming_the_files_and_ids(tmp_path):
    root = write_dataset(tmp_path)
    write_split_csv(root / "splits" / "genre" / "test.csv", [SplitRow("d", 0, "x"), SplitRow("a", 1, "x")])  # a: train too
    with pytest.raises(sources.SourceError) as error:
        local_source(root).video_ids()
    message = str(error.value)
    assert "dataset 'mine': task genre: 1 video(s) in both the train split" in message
    assert f"({root / 'splits' / 'genre' / 'train.csv'})" in message and f"({root / 'splits' / 'genre' / 'test.csv'})" in message
    assert "genre/test.csv): a. A video in two splits leaks into the result" in message
    assert "or set datasets.mine.allow_split_overlap: true to accept it" in message
    assert local_source(root, allow_split_overlap=True).video_ids() == ("a", "b", "c", "d", "e", "f")  # the opt-in


def test_the_test_split_used_for_validation_on_purpose_is_no_overlap(tmp_path):
    from _workflow_media import write_coin

    annotations = write_coin(tmp_path, tmp_path / "served")
    settings = dataset_settings("c", {"source": "coin", "annotations": str(annotations), "tasks": {"task": {"type": "classification"}},
                                      "validation": {"strategy": "test"}})
    task = sources.open_source("c", settings).tasks()["task"]
    assert task.splits["val"] == task.splits["test"]


def test_an_empty_test_split_is_warned_about_naming_the_file(tmp_path, caplog):
    root = write_dataset(tmp_path)
    (root / "splits" / "genre" / "test.csv").write_text("class_id class_name youtube_id imdb_id\n")
    with caplog.at_level("WARNING"):
        assert local_source(root).video_ids() == ("a", "b", "c", "e", "f")
    assert [r.getMessage() for r in caplog.records] == [
        f"dataset 'mine': task genre: the test split ({root / 'splits' / 'genre' / 'test.csv'}) lists no videos: nothing is evaluated (the metric is n/a)"
    ]


def test_a_video_dir_that_does_not_exist_fails_the_config_check_naming_the_key(tmp_path):
    root = write_dataset(tmp_path)
    config = validate_config(config_with("mine", {"source": "local", "video_dir": str(root / "vidoes"), "split_dir": str(root / "splits"),
                                                  "tasks": TASKS}))
    with pytest.raises(ConfigError, match=rf"config: datasets.mine.video_dir: {root / 'vidoes'} is not an existing folder"):
        check_config(config)


def write_csv_dataset(root):
    """genre as ordinary CSVs (names with spaces and commas, quoted; ranges for some videos);
    views: a regression task with its own label column."""
    files = {
        "genre": {
            "train": 'video_id,label,label_name,start,end\na,0,"road, movie",1.5,6\nb,1,drama,,\n',
            "val": "video_id,label,label_name,start,end\nc,1,drama,2,\n",
            "test": "video_id,label,label_name,start,end\nd,0,\"road, movie\",,4\n",
        },
        "views": {"train": "video_id,views\nc,100\n", "val": "video_id,views\ne,10\n", "test": "video_id,views\nf,1000\n"},
    }
    for task, splits in files.items():
        for split, text in splits.items():
            (root / "splits" / task).mkdir(parents=True, exist_ok=True)
            (root / "splits" / task / f"{split}.csv").write_text(text)
    (root / "videos").mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"):
        (root / "videos" / name).write_bytes(b"")
    return root


def test_a_local_dataset_from_ordinary_csv_files(tmp_path):
    source = local_source(write_csv_dataset(tmp_path))
    assert source.video_ids() == ("a", "b", "c", "d", "e", "f")
    assert source.tasks()["genre"].splits["train"] == [SplitRow("a", 0, "road, movie"), SplitRow("b", 1, "drama")]
    assert [r.label for r in source.tasks()["views"].splits["test"]] == [pytest.approx(6.907755278982137)]  # log 1000
    assert source.task_settings("genre") == {"type": "classification", "id_column": "video_id", "label_column": "label", "label_transform": {}}
    assert source.task_settings("views")["label_column"] == "views"  # the task's own column
    # start/end: the part of the video used (an empty one: from the start / to the end)
    assert source.ranges(source.video_ids()) == {"a": [1.5, 6.0], "c": [2.0, None], "d": [None, 4.0]}
    # what the train and evaluate jobs read back from the same files
    from vis4mer.labels import read_task_rows

    settings = source.task_settings("genre")
    assert read_task_rows(source.split_file("genre", "test"), settings["id_column"], settings["label_column"]) == [SplitRow("d", 0, "road, movie")]


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("genre/val.csv", "c 1 drama -\n", r"task genre: the split files mix formats \(train.csv: csv, val.csv: lvu, test.csv: csv\)"),
        ("genre/val.csv", "video_id,label,start,end\nc,1,3,2\n", r"genre/val.csv:2: end 2.0 is not after start 3.0"),
        ("genre/val.csv", "video_id,label,start\nc,1,soon\n", r"genre/val.csv:2: start 'soon' is not a number of seconds"),
        ("genre/val.csv", "video_id,label\nc,1,x\n", r"genre/val.csv:2: 3 fields, header has 2 \(quote a field that holds a comma\)"),
        ("genre/val.csv", "video,label\nc,1\n", r"genre/val.csv has no column 'video_id'"),
        ("views/train.csv", "video_id,views,start\nc,100,1\n", r"video c has start/end \[1.0, None\] in .*views/train.csv but \[2.0, None\] in .*genre/val.csv"),
    ],
)
def test_csv_split_file_errors_name_the_file_and_line(tmp_path, file, text, expected):
    root = write_csv_dataset(tmp_path)
    (root / "splits" / file).write_text(text)
    with pytest.raises(sources.SourceError, match=expected):
        local_source(root).video_ids()
