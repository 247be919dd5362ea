"""vis4mer.sources (LVU, Breakfast, COIN in the pipeline's common form) and the library
additions the dataset workflows use: partial decoding in vis4mer.frames, per-video segment
limits and skipped ids in vis4mer.swin, mirror-only downloads in vis4mer.download."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from _workflow_media import (
    GENRE_NAMES,
    LVU_GENRE,
    LVU_LIKES,
    write_breakfast,
    write_coin,
    write_lvu_split_dir,
    write_video,
)
from vis4mer import sources
from vis4mer.sources import breakfast, lvu
from vis4mer.download import download_shard, read_manifest
from vis4mer.frames import decode_videos_to_shard, sample_indices, time_range
from vis4mer.sources.splits import SplitRow, read_split_csv

LVU_DIR = Path(__file__).resolve().parents[2] / "shared/data/lvu_1.0"
BREAKFAST_LISTS = Path(__file__).resolve().parents[2] / "shared/data/breakfast"


# ----------------------------------------------------------------------------- LVU


def test_lvu_source_targets_class_space_and_roles(tmp_path):
    split_dir = write_lvu_split_dir(tmp_path)
    data = sources.lvu_source(split_dir, ["genre", "like_ratio"])
    genre, like = data.tasks["genre"], data.tasks["like_ratio"]
    assert genre.kind == "classification" and genre.label_names == GENRE_NAMES
    assert [(r.video_id, r.label) for r in genre.splits["train"]] == LVU_GENRE["train"]
    assert like.kind == "regression" and like.label_names == []
    v01 = like.splits["train"][0]
    assert v01.video_id == "v01" and v01.label == pytest.approx(10 * 900 / 1000 - lvu.LIKE_RATIO_MEAN)
    # a video is "train" if some task trains on it: v01 (both), v10 (like_ratio only); v08 only tests
    assert data.videos["v01"].role == "train" and data.videos["v10"].role == "train"
    assert data.videos["v08"].role == "test" and data.videos["v12"].role == "test"
    assert list(data.videos) == sorted(data.videos)
    # written in the common layout, read back by vis4mer.sources.splits
    sources.write_task_splits(like, tmp_path / "out" / "like_ratio")
    rows = read_split_csv(tmp_path / "out" / "like_ratio" / "test.csv")
    assert [r.video_id for r in rows] == [vid for vid, *_ in LVU_LIKES["test"]]
    assert rows[0].label == pytest.approx(like.splits["test"][0].label)


def test_lvu_targets_as_label_transforms_agree_with_vis4mer_lvu(tmp_path):
    from vis4mer.labels import read_task_rows

    split_dir = write_lvu_split_dir(tmp_path)
    expected = {r.video_id: r.label for r in sources.lvu_source(split_dir, ["like_ratio"]).tasks["like_ratio"].splits["val"]}
    target = sources.LVU_TARGETS["like_ratio"]
    rows = read_task_rows(split_dir / "like_ratio" / "val.csv", "youtube_id", target["label_column"], target["label_transform"])
    assert {r.video_id: r.label for r in rows} == pytest.approx(expected)


@pytest.mark.skipif(not LVU_DIR.is_dir(), reason=f"LVU split files not found at {LVU_DIR}")
def test_lvu_source_on_the_release_keeps_every_class_id():
    data = sources.lvu_source(LVU_DIR, list(lvu.TASKS))
    assert len(data.videos) == 9996
    for task, spec in lvu.TASKS.items():
        if spec.kind == "classification":
            assert len(data.tasks[task].label_names) == spec.n_outputs
    assert data.tasks["director"].label_names[2] == "class_2"  # an id no split contains


def test_paper_results():
    assert sources.paper_result("lvu", "genre")["value"] == 54.71
    assert sources.paper_result("lvu", "view_count") == {
        "value": 3.63, "metric": "mse", "unit": "MSE (paper targets)", "source": f"{sources.PAPER}, Table 1 (LVU)"}
    assert sources.paper_result("breakfast", "activity")["value"] == 88.17
    assert sources.paper_result("coin", "task")["value"] == 88.41
    assert sources.paper_result("local", "genre") is None


def test_class_rows_name_every_class():
    assert sources.class_rows(["a", "b"]) == [SplitRow("<class 0>", 0, "a"), SplitRow("<class 1>", 1, "b")]


# ----------------------------------------------------------------------------- Breakfast


@pytest.fixture(scope="module")
def breakfast_archive(tmp_path_factory):
    return write_breakfast(tmp_path_factory.mktemp("breakfast"))


def test_breakfast_source_by_participants_with_participant_holdout(breakfast_archive):
    data = sources.breakfast_source(breakfast_archive, "activity", validation={"fraction": 0.25, "seed": 0})
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
    again = sources.breakfast_source(breakfast_archive, "activity", validation={"fraction": 0.25, "seed": 0})
    assert again.tasks["activity"].splits == task.splits
    reference = sources.breakfast_source(breakfast_archive, "activity", validation={"strategy": "test"})
    assert reference.tasks["activity"].splits["val"] == reference.tasks["activity"].splits["test"]
    assert "optimistic" in reference.notes["validation"]["description"]


def test_breakfast_source_from_lists_records_missing_videos(breakfast_archive, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    header = "file_name,duration,action,class_id\n"
    (lists / "train.csv").write_text(header + "P03-cam01-P03_cereals,3,cereals,0\nP04-webcam01-P04_coffee,2,coffee,1\n"
                                     "P05-cam02-P05_cereals,2,cereals,0\nP09-cam01-P09_coffee,2,coffee,1\n")
    (lists / "test.csv").write_text(header + "P47-cam01-P47_coffee,2,coffee,1\n")
    data = sources.breakfast_source(breakfast_archive, "activity", lists, validation={"fraction": 0.3})
    assert data.videos["P09-cam01-P09_coffee"].path is None  # listed, not on disk: missing downstream
    assert "P06-cam01-P06_cereals" not in data.videos  # on disk, in no list
    assert [r.video_id for r in data.tasks["activity"].splits["test"]] == ["P47-cam01-P47_coffee"]


@pytest.mark.skipif(not BREAKFAST_LISTS.is_dir(), reason="ViS4mer's Breakfast lists not found")
def test_breakfast_shared_lists_split_sizes(breakfast_archive):
    data = sources.breakfast_source(breakfast_archive, "activity", BREAKFAST_LISTS)
    splits = data.tasks["activity"].splits
    assert len(splits["train"]) + len(splits["val"]) == 1357 and len(splits["test"]) == 355
    assert {r.video_id.split("-")[0] for r in splits["val"]}.isdisjoint({r.video_id.split("-")[0] for r in splits["train"]})


def test_holdout_errors():
    rows = [SplitRow("a", 0), SplitRow("b", 1)]
    with pytest.raises(ValueError, match="at least 2 groups"):
        sources.holdout_by_group(rows, {"a": "P03", "b": "P03"}, 0.5, 0)
    with pytest.raises(ValueError, match="is empty"):  # one video per class: nothing to hold out
        sources._with_validation(rows, rows, {"fraction": 0.1})
    with pytest.raises(ValueError, match="strategy"):
        sources._with_validation(rows, rows, {"strategy": "kfold"})


# ----------------------------------------------------------------------------- COIN


def test_coin_source_ranges_and_stratified_holdout(tmp_path):
    annotations = write_coin(tmp_path, tmp_path / "served")
    data = sources.coin_source(annotations, "task", {"fraction": 0.2, "seed": 1})
    task = data.tasks["task"]
    assert len(task.label_names) == 180 and task.label_names[2] == "ChangeTire" and task.label_names[1] == "class_1"
    val = task.splits["val"]
    assert sorted(r.label for r in val) == [0, 2]  # one of each class's 3 training videos
    assert len(task.splits["train"]) == 4 and {r.video_id for r in task.splits["test"]} == {"c07", "c08", "gone_c"}
    assert (data.videos["c01"].start, data.videos["c01"].end) == (1.0, 5.0)
    assert data.videos["c01"].role in ("train", "test") and data.videos["c07"].role == "test"
    assert data.videos[val[0].video_id].role == "test"  # held out: encoded like a test video


def test_read_source_dispatch(tmp_path):
    annotations = write_coin(tmp_path, tmp_path / "served")
    data = sources.read_source({"source": "coin", "annotations": str(annotations), "task": "t", "validation": {"strategy": "test"}})
    assert list(data.tasks) == ["t"]
    with pytest.raises(ValueError, match="unknown source"):
        sources.read_source({"source": "kinetics"})


# ----------------------------------------------------------------------------- library additions


def test_time_range_and_sample_indices_from_a_start():
    assert time_range(12.0) == (0.0, 12.0)
    assert time_range(12.0, keep_last_s=8) == (4.0, 12.0)
    assert time_range(6.0, keep_last_s=8) == (0.0, 6.0)  # shorter than the clip: kept whole
    assert time_range(12.0, 1.0, 5.0) == (1.0, 5.0)
    with pytest.raises(ValueError, match="no frames"):
        time_range(3.0, 5.0, 9.0)
    np.testing.assert_array_equal(sample_indices(120, 10.0, 1.0, 4.0), [40, 50, 60, 70, 80, 90, 100, 110])
    np.testing.assert_array_equal(sample_indices(120, 10.0, 1.0, 1.0, 5.0), [10, 20, 30, 40])


def test_decode_part_of_a_video_and_skipped_ids(tmp_path):
    path = write_video(tmp_path / "v.mp4", 12, fps=4)
    out = tmp_path / "frames.h5"
    manifest = decode_videos_to_shard(
        {"whole": path, "trimmed": path, "ranged": path}, out, fps=1.0, size=16,
        ranges={"ranged": (2.0, 5.0)}, keep_last_s={"trimmed": 8.0}, skipped={"gone": "download unavailable: 404"},
    )
    assert manifest["gone"] == {"status": "skipped", "message": "download unavailable: 404"}
    with h5py.File(out) as shard:
        assert shard["videos/whole"].shape[0] == 12 and "start_s" not in shard["videos/whole"].attrs
        assert shard["videos/trimmed"].shape[0] == 8 and shard["videos/trimmed"].attrs["start_s"] == 4.0
        np.testing.assert_array_equal(shard["videos/trimmed"][0], shard["videos/whole"][4])
        assert shard["videos/ranged"].shape[0] == 3 and shard["videos/ranged"].attrs["end_s"] == 5.0
        np.testing.assert_array_equal(shard["videos/ranged"][0], shard["videos/whole"][2])
    with pytest.raises(ValueError, match="both given and skipped"):
        decode_videos_to_shard({"a": path}, tmp_path / "x.h5", fps=1.0, size=16, skipped={"a": "no"})


def test_swin_segments_per_video_and_skipped_ids(tmp_path):
    from vis4mer.swin import extract_swin_features_to_shard

    path = write_video(tmp_path / "v.mp4", 12, fps=8, width=64, height=64)  # 96 frames: 3 segments
    manifest = extract_swin_features_to_shard(
        {"train_video": path, "test_video": path}, tmp_path / "f.h5", "swin_test_patch244_window877", None,
        max_segments={"train_video": 3, "test_video": 1}, batch_size=2, device="cpu", size=64, num_threads=1,
        skipped={"gone": "download unavailable: HTTP Error 404"},
    )
    assert manifest["gone"]["status"] == "skipped" and "404" in manifest["gone"]["message"]
    with h5py.File(tmp_path / "f.h5") as shard:
        assert shard["videos/train_video"].shape == (3, 4, 128) and shard["videos/test_video"].shape == (1, 4, 128)
        assert shard.attrs["max_segments"] == 3
    with pytest.raises(ValueError, match="no number for 1 videos"):
        extract_swin_features_to_shard({"a": path}, tmp_path / "g.h5", "swin_test_patch244_window877", None,
                                       max_segments={}, batch_size=1, device="cpu", size=64)


def test_download_without_network_uses_mirrors_only(tmp_path):
    mirror = tmp_path / "mirror"
    write_video(mirror / "here.mp4", 1)
    records = download_shard(["here", "elsewhere"], tmp_path / "videos", tmp_path / "m.json",
                             url_template="http://127.0.0.1:9/{id}.mp4", local_dirs=[mirror], network=False)
    assert records["here"].status == "local" and (tmp_path / "videos" / "here.mp4").is_file()
    assert records["elsewhere"].status == "failed" and "downloading is off" in records["elsewhere"].message
    assert records["elsewhere"].attempts == 0
    assert read_manifest(tmp_path / "m.json") == records


def test_videos_from_manifests(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"ids": {
        "a": {"status": "downloaded", "message": "", "path": "videos/a.mp4", "attempts": 1},
        "b": {"status": "unavailable", "message": "HTTP Error 404: Not Found", "path": None, "attempts": 1},
    }, "counts": {}}))
    videos, missing = sources.videos_from_manifests(["a", "b", "c"], [manifest])
    assert videos == {"a": Path("videos/a.mp4")}
    assert missing == {"b": "download unavailable: HTTP Error 404: Not Found", "c": "not in the download manifests of its shard"}
