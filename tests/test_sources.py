"""vis4mer.sources: the registry of source kinds and what they share (paper numbers, class
rows, reading a benchmark from the splits rule's arguments, a shard's videos from download
manifests), and the library additions the dataset workflows use: partial decoding in
vis4mer.frames, per-video segment limits and skipped ids in vis4mer.swin, mirror-only
downloads in vis4mer.download. Each kind has its own tests/test_sources_<kind>.py."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from _sources import dataset_settings
from _workflow_media import write_coin, write_video
from vis4mer import sources
from vis4mer.download import download_shard, read_manifest
from vis4mer.frames import decode_videos_to_shard, sample_indices, time_range
from vis4mer.sources.splits import SplitRow


def test_every_kind_is_a_source_class_of_its_module():
    for kind in sources.KINDS:
        cls = sources.source_class(kind)
        assert issubclass(cls, sources.Source) and cls.kind == kind
    with pytest.raises(ValueError, match="unknown source 'kinetics'; expected one of demo, local, lvu, breakfast, coin"):
        sources.source_class("kinetics")


def test_open_source_builds_the_kind_of_the_settings(tmp_path):
    settings = dataset_settings("d", {"source": "demo", "demo": {"n_videos": 4}, "tasks": {"order": {"type": "classification"}}})
    source = sources.open_source("d", settings, results=tmp_path)
    assert type(source).kind == "demo" and source.name == "d" and source.settings is settings
    assert source.split_file("order", "val") == str(tmp_path / "d" / "splits" / "order" / "val.csv")


def test_paper_results():
    assert sources.paper_result("lvu", "genre")["value"] == 54.71
    assert sources.paper_result("lvu", "view_count") == {
        "value": 3.63, "metric": "mse", "unit": "MSE (paper targets)", "source": f"{sources.PAPER}, Table 1 (LVU)"}
    assert sources.paper_result("breakfast", "activity")["value"] == 88.17
    assert sources.paper_result("coin", "task")["value"] == 88.41
    assert sources.paper_result("local", "genre") is None


def test_class_rows_name_every_class():
    assert sources.class_rows(["a", "b"]) == [SplitRow("<class 0>", 0, "a"), SplitRow("<class 1>", 1, "b")]


def test_read_source_dispatch(tmp_path):
    annotations = write_coin(tmp_path, tmp_path / "served")
    data = sources.read_source({"source": "coin", "annotations": str(annotations), "task": "t", "validation": {"strategy": "test"}})
    assert list(data.tasks) == ["t"]
    with pytest.raises(ValueError, match="unknown source"):
        sources.read_source({"source": "kinetics"})
    with pytest.raises(ValueError, match="no loader of its own"):  # its split files are not written by the splits rule
        sources.read_source({"source": "local"})


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


def test_shard_videos_from_manifests_or_as_planned(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"ids": {"a": {"status": "downloaded", "message": "", "path": "videos/a.mp4", "attempts": 1}},
                                    "counts": {}}))
    assert sources.shard_videos(["a", "b"], {}, [manifest]) == (
        {"a": Path("videos/a.mp4")}, {"b": "not in the download manifests of its shard"})
    planned = {"videos": {"a": "x/a.avi"}, "missing": {"b": "no video file for b"}}
    assert sources.shard_videos(["a", "b"], planned, None) == ({"a": Path("x/a.avi")}, {"b": "no video file for b"})
