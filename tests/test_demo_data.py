"""The synthetic order dataset: deterministic, balanced, and its events survive decoding."""

import json
from collections import Counter

import numpy as np
import pytest

from vis4mer.demo_data import generate_demo_dataset
from vis4mer.frames import decode_video
from vis4mer.sources.splits import read_split_csv

SMALL = dict(size=32, fps=4.0, min_seconds=12.0, max_seconds=14.0, event_seconds=(2.0, 2.5), min_gap_seconds=4.0)


def red_and_blue_seconds(frames):
    """frames: uint8 [T, S, S, 3] -> (seconds where >= 5% of pixels are event red, ... blue)."""
    r, g, b = (frames[..., c].astype(int) for c in range(3))
    red = ((r > 150) & (g < 90) & (b < 90)).mean(axis=(1, 2)) >= 0.05
    blue = ((b > 150) & (r < 90) & (g < 120)).mean(axis=(1, 2)) >= 0.05
    return np.flatnonzero(red), np.flatnonzero(blue)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo_dataset(out, n_videos=6, seed=3, **SMALL)


def test_same_seed_same_dataset(small_dataset, tmp_path):
    out, metadata = small_dataset
    again = generate_demo_dataset(tmp_path, n_videos=6, seed=3, **SMALL)
    assert again == metadata
    assert (tmp_path / "videos.json").read_text() == (out / "videos.json").read_text()
    for video_id in metadata["videos"]:
        name = f"videos/{video_id}.mp4"
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
        first = decode_video(out / "videos" / f"{video_id}.mp4", 4.0, 32)[0][0]
        assert first.tobytes() == decode_video(tmp_path / "videos" / f"{video_id}.mp4", 4.0, 32)[0][0].tobytes()
    for split in ("train", "val", "test"):
        path = f"splits/order/{split}.csv"
        assert (tmp_path / path).read_text() == (out / path).read_text()


def test_other_seed_other_dataset(small_dataset, tmp_path):
    _, metadata = small_dataset
    assert generate_demo_dataset(tmp_path, n_videos=6, seed=4, **SMALL)["videos"] != metadata["videos"]


def test_labels_balanced_and_splits_stratified(small_dataset):
    out, metadata = small_dataset
    assert Counter(v["label"] for v in metadata["videos"].values()) == {0: 3, 1: 3}
    rows = {split: read_split_csv(out / "splits" / "order" / f"{split}.csv") for split in ("train", "val", "test")}
    all_ids = [row.video_id for split_rows in rows.values() for row in split_rows]
    assert sorted(all_ids) == sorted(metadata["videos"])
    for split_rows in rows.values():
        assert Counter(row.label for row in split_rows)[0] == Counter(row.label for row in split_rows)[1]
        for row in split_rows:
            assert row.label == metadata["videos"][row.video_id]["label"]
            assert row.label_name == ("a_first", "b_first")[row.label]
    assert json.loads((out / "videos.json").read_text()) == metadata


def test_event_timing_respects_the_constraints(small_dataset):
    _, metadata = small_dataset
    for video in metadata["videos"].values():
        a, b = video["events"]["A"], video["events"]["B"]
        first, second = (a, b) if video["label"] == 0 else (b, a)
        assert second["start_s"] - first["end_s"] >= SMALL["min_gap_seconds"]
        assert min(a["end_s"] - a["start_s"], b["end_s"] - b["start_s"]) >= SMALL["event_seconds"][0]
        assert SMALL["min_seconds"] <= video["duration_s"] <= SMALL["max_seconds"]


def test_default_sized_events_are_visible_in_order_at_1_fps(tmp_path):
    """Default geometry (64 px, 4 fps, 30-60 s, events >= 3 s, >= 10 s apart): after
    H.264 and 1 fps decoding, red frames come before blue ones iff label 0."""
    metadata = generate_demo_dataset(tmp_path, n_videos=4, seed=0)
    for video_id, video in metadata["videos"].items():
        frames, _, _ = decode_video(tmp_path / "videos" / f"{video_id}.mp4", 1.0, 64)
        assert len(frames) == int(video["duration_s"])
        red, blue = red_and_blue_seconds(frames)
        assert len(red) >= 2 and len(blue) >= 2, video_id
        assert (red.max() < blue.min()) == (video["label"] == 0), video_id
        assert (blue.max() < red.min()) == (video["label"] == 1), video_id


def test_bad_arguments_are_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="cannot hold two events"):
        generate_demo_dataset(tmp_path, n_videos=2, min_seconds=5, max_seconds=6)
    with pytest.raises(ValueError, match="split_fractions"):
        generate_demo_dataset(tmp_path, n_videos=2, split_fractions=(0.5, 0.2, 0.2))
    assert list(tmp_path.iterdir()) == []
