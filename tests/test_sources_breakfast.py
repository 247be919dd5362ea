"""vis4mer.sources.breakfast's source: Breakfast in the common form (participant splits and
holdout, ViS4mer's lists) and what the workflow asks of a Breakfast dataset (video files and
the reason for the missing ones, roles, split inputs and arguments, errors), without Snakemake."""

from __future__ import annotations

from pathlib import Path

import pytest

from _sources import config_with, dataset_settings
from _workflow_media import write_breakfast
from vis4mer import sources
from vis4mer.config import ConfigError, check_config, validate_config
from vis4mer.sources import breakfast

BREAKFAST_LISTS = Path(__file__).resolve().parents[2] / "shared/data/breakfast"
HEADER = "file_name,duration,action,class_id\n"


@pytest.fixture(scope="module")
def breakfast_archive(tmp_path_factory):
    return write_breakfast(tmp_path_factory.mktemp("breakfast"))


def test_breakfast_source_by_participants_with_participant_holdout(breakfast_archive):
    data = breakfast.source_data(breakfast_archive, "activity", validation={"fraction": 0.25, "seed": 0})
    task = data.tasks["activity"]
    assert task.label_names == list(breakfast.CLASSES)
    splits = {split: {r.video_id for r in rows} for split, rows in task.splits.items()}
    assert splits["test"] == {"P47-cam01-P47_cereals", "P47-cam01-P47_coffee", "P48-webcam02-P48_cereals"}
    participants = {split: {vid.split("-")[0] for vid in ids} for split, ids in splits.items()}
    assert len(participants["val"]) == 1 and not participants["val"] & participants["train"]  # whole participants
    assert participants["train"] | participants["val"] == {"P03", "P04", "P05", "P06"}
    assert "P05-stereo-P05_coffee_ch1" not in data.videos  # the other stereo channel
    assert data.videos["P05-stereo-P05_coffee_ch0"].path.endswith("P05_coffee_ch0.avi")
    assert data.notes["validation"]["strategy"] == "holdout" and data.notes["validation"]["held_out_groups"] == sorted(participants["val"])
    # the same seed gives the same holdout; test as validation is the reference code's protocol
    again = breakfast.source_data(breakfast_archive, "activity", validation={"fraction": 0.25, "seed": 0})
    assert again.tasks["activity"].splits == task.splits
    reference = breakfast.source_data(breakfast_archive, "activity", validation={"strategy": "test"})
    assert reference.tasks["activity"].splits["val"] == reference.tasks["activity"].splits["test"]
    assert "optimistic" in reference.notes["validation"]["description"]


def test_breakfast_source_from_lists_records_missing_videos(breakfast_archive, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    header = "file_name,duration,action,class_id\n"
    (lists / "train.csv").write_text(header + "P03-cam01-P03_cereals,3,cereals,0\nP04-webcam01-P04_coffee,2,coffee,1\n"
                                     "P05-cam02-P05_cereals,2,cereals,0\nP09-cam01-P09_coffee,2,coffee,1\n")
    (lists / "test.csv").write_text(header + "P47-cam01-P47_coffee,2,coffee,1\n")
    data = breakfast.source_data(breakfast_archive, "activity", lists, validation={"fraction": 0.3})
    assert data.videos["P09-cam01-P09_coffee"].path is None  # listed, not on disk: missing downstream
    assert "P06-cam01-P06_cereals" not in data.videos  # on disk, in no list
    assert [r.video_id for r in data.tasks["activity"].splits["test"]] == ["P47-cam01-P47_coffee"]


@pytest.mark.skipif(not BREAKFAST_LISTS.is_dir(), reason="ViS4mer's Breakfast lists not found")
def test_breakfast_shared_lists_split_sizes(breakfast_archive):
    data = breakfast.source_data(breakfast_archive, "activity", BREAKFAST_LISTS)
    splits = data.tasks["activity"].splits
    assert len(splits["train"]) + len(splits["val"]) == 1357 and len(splits["test"]) == 355
    assert {r.video_id.split("-")[0] for r in splits["val"]}.isdisjoint({r.video_id.split("-")[0] for r in splits["train"]})


def write_lists(lists: Path) -> Path:
    """Split lists naming P09-cam01-P09_coffee, which is not in the archive."""
    lists.mkdir()
    (lists / "train.csv").write_text(HEADER + "P03-cam01-P03_cereals,3,cereals,0\nP04-webcam01-P04_coffee,2,coffee,1\n"
                                     "P05-cam02-P05_cereals,2,cereals,0\nP09-cam01-P09_coffee,2,coffee,1\n")
    (lists / "test.csv").write_text(HEADER + "P47-cam01-P47_coffee,2,coffee,1\n")
    return lists


def breakfast_source(archive, **settings) -> breakfast.BreakfastSource:
    dataset = {"source": "breakfast", "video_dir": str(archive), "tasks": {"activity": {"type": "classification"}}, **settings}
    return sources.open_source("bf", dataset_settings("bf", dataset))


def test_breakfast_dataset_files_known_when_planned_and_missing_with_reason(breakfast_archive, tmp_path):
    source = breakfast_source(breakfast_archive, lists_dir=str(write_lists(tmp_path / "lists")), validation={"strategy": "test"})
    ids = source.video_ids()
    assert ids == ("P03-cam01-P03_cereals", "P04-webcam01-P04_coffee", "P05-cam02-P05_cereals", "P09-cam01-P09_coffee",
                   "P47-cam01-P47_coffee")
    found, missing = source.video_files(ids)
    assert found["P03-cam01-P03_cereals"] == str(breakfast_archive / "P03" / "cam01" / "P03_cereals.avi")
    assert missing == {"P09-cam01-P09_coffee": f"no video file for P09-cam01-P09_coffee under {breakfast_archive} (datasets.bf.video_dir)"}
    assert source.video_inputs(ids) == list(found.values())  # a missing video is no input of the stage
    assert source.roles() == {**{vid: "train" for vid in ids[:4]}, "P47-cam01-P47_coffee": "test"}
    assert source.ranges(ids) == {}
    assert not source.downloads and source.writes_splits
    settings = source.task_settings("activity")
    assert settings["label_names"] == list(breakfast.CLASSES) and settings["id_column"] == "youtube_id"
    info = source.summary_info()
    assert info["paper"] == {"activity": {"value": 88.17, "metric": "accuracy", "unit": "%", "source": f"{sources.PAPER} (breakfast)"}}
    assert info["notes"]["validation"]["strategy"] == "test" and "frame_unit" not in info  # ViT features: a frame is a frame
    swin = breakfast_source(breakfast_archive, frames={"size": 64}, features={"family": "swin", "backbone": "swin_test_patch244_window877", "weights": "random"})
    assert swin.summary_info()["frame_unit"].startswith("segment of 32 frames")


def test_breakfast_split_rule_inputs_and_arguments(breakfast_archive, tmp_path):
    by_participants = breakfast_source(breakfast_archive, validation={"fraction": 0.25})
    assert by_participants.split_inputs("activity") == {"source": str(breakfast_archive)}
    arguments = by_participants.split_arguments("activity")
    assert arguments == {
        "source": "breakfast", "video_dir": str(breakfast_archive), "task": "activity", "lists_dir": None,
        "train_participants": [3, 46], "test_participants": [47, 54],
        "validation": {"strategy": "holdout", "fraction": 0.25, "seed": 0},  # the schema's defaults filled in
    }
    assert sources.read_source(arguments).tasks == by_participants.tasks()
    lists = write_lists(tmp_path / "lists")
    from_lists = breakfast_source(breakfast_archive, lists_dir=str(lists))
    assert from_lists.split_inputs("activity") == {"source": [str(lists / "train.csv"), str(lists / "test.csv")]}


def test_a_broken_split_list_names_the_dataset_and_its_keys(breakfast_archive, tmp_path):
    lists = write_lists(tmp_path / "lists")
    (lists / "test.csv").write_text("file_name,duration\n")
    with pytest.raises(sources.SourceError, match=r"see datasets.bf.video_dir \(or lists_dir\)\): .*test.csv: header is"):
        breakfast_source(breakfast_archive, lists_dir=str(lists)).video_ids()


def test_breakfast_has_one_classification_task():
    config = validate_config(config_with("bf", {"source": "breakfast", "video_dir": "x", "tasks": {"a": {"type": "classification"},
                                                                                               "b": {"type": "classification"}}}))
    with pytest.raises(ConfigError, match=r"datasets.bf.tasks: breakfast has exactly one task, of type classification \(got \['a', 'b'\]\)"):
        check_config(config)
