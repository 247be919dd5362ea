"""Breakfast: scanning the archive layout, ids, labels, splits, and ViS4mer's split lists."""

import logging
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vis4mer.sources.breakfast import (
    ARCHIVE_DIR,
    CLASSES,
    parse_video_id,
    read_breakfast_list,
    scan_breakfast,
    split_breakfast,
    split_of,
)

SHARED_LISTS = Path(__file__).resolve().parents[2] / "shared/data/breakfast"

# Relative paths under the archive folder; the stereo pairs keep only _ch0.
VIDEO_FILES = [
    "P03/cam01/P03_cereals.avi",
    "P03/cam01/P03_coffee.avi",
    "P03/stereo/P03_cereals_ch0.avi",
    "P03/stereo/P03_cereals_ch1.avi",
    "P03/webcam01/P03_salat.avi",
    "P46/cam02/P46_tea.avi",
    "P47/cam01/P47_friedegg.avi",
    "P47/stereo/P47_juice_ch1.avi",
    "P47/stereo/P47_juice_ch0.avi",
    "P54/webcam02/P54_scrambledegg.avi",
]
REJECTED_FILES = ["P03/cam01/P03_waffles.avi", "P03/cam01/P04_milk.avi", "P03/cam01/P03.avi"]
EXPECTED = {  # video id -> (activity, class id, split)
    "P03-cam01-P03_cereals": ("cereals", 0, "train"),
    "P03-cam01-P03_coffee": ("coffee", 1, "train"),
    "P03-stereo-P03_cereals_ch0": ("cereals", 0, "train"),
    "P03-webcam01-P03_salat": ("salat", 9, "train"),
    "P46-cam02-P46_tea": ("tea", 2, "train"),
    "P47-cam01-P47_friedegg": ("friedegg", 4, "test"),
    "P47-stereo-P47_juice_ch0": ("juice", 7, "test"),
    "P54-webcam02-P54_scrambledegg": ("scrambledegg", 5, "test"),
}


def write_avi(path, n_frames=12, fps=15, width=64, height=48):
    """A tiny MPEG-4 Part 2 AVI (the archive's container), frame k a flat grey of level 10 * k."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(n_frames):
            grey = np.full((height, width, 3), 10 * k, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """<tmp>/BreakfastII_15fps_qvga_sync/P../<camera>/*.avi plus files the scan must leave out."""
    parent = tmp_path_factory.mktemp("breakfast")
    root = parent / ARCHIVE_DIR
    for relative in VIDEO_FILES + REJECTED_FILES:
        write_avi(root / relative)
    (root / "P03/cam01/P03_cereals.txt").write_text("not a video\n")
    return root


def test_scan_ids_labels_and_stereo_channel(archive, caplog):
    with caplog.at_level(logging.WARNING, logger="vis4mer"):
        examples = scan_breakfast(archive)
    assert [example.video_id for example in examples] == sorted(EXPECTED)
    for example in examples:
        activity, target, _ = EXPECTED[example.video_id]
        assert (example.label_name, example.target) == (activity, target)
        assert example.path == archive / example.participant / example.camera / f"{example.video_id.split('-')[2]}.avi"
        assert example.path.is_file() and parse_video_id(example.video_id)[2] == activity
    assert sum("left out 3 files" in record.message for record in caplog.records) == 1
    for rejected in REJECTED_FILES:
        assert rejected in caplog.text


def test_scan_accepts_the_folder_holding_the_archive(archive):
    assert scan_breakfast(archive.parent) == scan_breakfast(archive)


def test_scan_of_a_folder_without_videos_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no participant folders"):
        scan_breakfast(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_breakfast(tmp_path / "absent")


def test_split_by_participant(archive):
    splits = split_breakfast(scan_breakfast(archive))
    for split in ("train", "test"):
        assert sorted(example.video_id for example in splits[split]) == sorted(
            video_id for video_id, (_, _, expected_split) in EXPECTED.items() if expected_split == split
        )
    custom = split_breakfast(scan_breakfast(archive), train=(40, 50), test=(3, 3))
    assert {example.participant for example in custom["train"]} == {"P46", "P47"}
    assert {example.participant for example in custom["test"]} == {"P03"}  # P54 is in neither
    assert split_of("P54", train=(40, 50), test=(3, 3)) is None
    with pytest.raises(ValueError, match="overlap"):
        split_breakfast([], train=(3, 46), test=(46, 54))


def test_scanned_ids_round_trip_through_a_split_list(archive, tmp_path):
    examples = scan_breakfast(archive)
    lines = ["file_name,duration,action,class_id"]
    lines += [f"{example.video_id},1,{example.label_name},{example.target}" for example in examples]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    listed = read_breakfast_list(tmp_path / "list.csv")
    assert [(e.video_id, e.target, e.participant, e.camera) for e in listed] == [
        (e.video_id, e.target, e.participant, e.camera) for e in examples
    ]


def test_scanned_videos_feed_the_swin_stage(archive, tmp_path):
    from vis4mer.shards import read_manifest
    from vis4mer.swin import extract_swin_features_to_shard

    videos = {example.video_id: example.path for example in scan_breakfast(archive)[:2]}
    manifest = extract_swin_features_to_shard(
        videos, tmp_path / "breakfast.h5", "swin_test_patch244_window877", None, max_segments=4, batch_size=1, size=64
    )
    assert {video_id: entry["n_segments"] for video_id, entry in manifest.items()} == dict.fromkeys(videos, 1)
    assert manifest == read_manifest(tmp_path / "breakfast.h5")


BAD_ROWS = [
    ("P03-cam01-P03_cereals,56,cereals,1", "class_id '1' for 'cereals'"),
    ("P03-cam01-P03_cereals,56,coffee,1", "shows 'cereals' but its action is 'coffee'"),
    ("P03-cam01-P03_waffles,56,waffles,10", "unknown Breakfast activity 'waffles'"),
    ("P03-cam01-P04_cereals,56,cereals,0", "not a Breakfast video id"),
    ("P03_cereals,56,cereals,0", "not a Breakfast video id"),
    ("P03-cam01-P03_cereals,long,cereals,0", "duration 'long'"),
    ("P03-cam01-P03_cereals,56,cereals", "3 fields"),
    ("P03-cam01-P03_tea,5,tea,2\nP03-cam01-P03_tea,5,tea,2", "listed twice"),
]


@pytest.mark.parametrize("row, message", BAD_ROWS)
def test_split_list_errors_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "train.csv"
    path.write_text("file_name,duration,action,class_id\n" + row + "\n")
    with pytest.raises(ValueError, match=message) as error:
        read_breakfast_list(path)
    assert f"{path}:" in str(error.value)


def test_split_list_header_is_checked(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("video,duration,action,class_id\nP03-cam01-P03_tea,5,tea,2\n")
    with pytest.raises(ValueError, match="expected file_name,duration,action,class_id"):
        read_breakfast_list(path)


@pytest.mark.skipif(not SHARED_LISTS.is_dir(), reason=f"ViS4mer's Breakfast split lists are not at {SHARED_LISTS}")
def test_shared_split_lists():
    lists = {split: read_breakfast_list(SHARED_LISTS / f"{split}.csv") for split in ("train", "test")}
    assert {split: len(examples) for split, examples in lists.items()} == {"train": 1357, "test": 355}
    for split, examples in lists.items():
        assert {example.label_name for example in examples} == set(CLASSES)
        assert all(CLASSES[example.target] == example.label_name for example in examples)
        assert all(split_of(example.participant) == split for example in examples)
        assert split_breakfast(examples)[split] == examples
    everything = lists["train"] + lists["test"]
    assert len({example.video_id for example in everything}) == 1712
    cameras = Counter(example.camera for example in everything)
    assert set(cameras) == {"cam01", "cam02", "webcam01", "webcam02", "stereo"}
    stereo = [example.video_id for example in everything if example.camera == "stereo"]
    assert stereo and all(video_id.endswith("_ch0") for video_id in stereo)  # the channel scan_breakfast keeps
