"""Shard files: atomic writes, the manifest, and refusing incomplete files."""

import h5py
import numpy as np
import pytest

from vis4mer.shards import (
    IncompleteShardError,
    ShardPlan,
    ShardWriter,
    is_complete,
    open_shard,
    read_manifest,
    shard_groups,
)


def test_shard_groups_sorts_deduplicates_and_chunks():
    assert shard_groups(["c", "a", "b", "a", "d"], 2) == [["a", "b"], ["c", "d"]]
    assert shard_groups(["b", "a", "c"], 2) == [["a", "b"], ["c"]]
    assert shard_groups([], 3) == []
    with pytest.raises(ValueError):
        shard_groups(["a"], 0)


def test_shard_plan_cuts_the_ids_once_for_frames_and_downloads():
    ids = [f"v{i:02d}" for i in reversed(range(14))]
    plan = ShardPlan.of("d", ids, 5, download_shard_size=7)  # shards 0-4, 5-9, 10-13; downloads 0-6, 7-13
    assert len(plan) == 3 and plan.names() == ["0000", "0001", "0002"]
    assert plan.shard(1) == ("v05", "v06", "v07", "v08", "v09")
    assert plan.download_shard(1) == tuple(f"v{i:02d}" for i in range(7, 14))
    assert list(plan.downloads_of(0)) == [0] and list(plan.downloads_of(1)) == [0, 1] and list(plan.downloads_of(2)) == [1]
    every = {vid for index in range(len(plan)) for j in plan.downloads_of(index) for vid in plan.download_shard(j)}
    assert every == set(ids)
    with pytest.raises(IndexError, match="dataset 'd' has 3 shards, not shard 0003"):
        plan.shard(3)
    with pytest.raises(IndexError, match="dataset 'd' has 2 download shards, not shard 0002"):
        plan.download_shard(2)
    no_downloads = ShardPlan.of("d", ids, 5)
    assert no_downloads.download_shards == ()
    with pytest.raises(ValueError, match="no download stage"):
        no_downloads.downloads_of(0)


def test_write_then_read(tmp_path):
    path = tmp_path / "shard.h5"
    frames = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)  # [T, S, S, 3]
    with ShardWriter(path, "frames", attrs={"fps": 1.0}) as shard:
        shard.add("vid_a", frames, n_frames=np.int64(2), source_video="a.mp4")
        shard.skip("vid_b", "decoder said no", source_video="b.mp4")
    assert is_complete(path)
    assert not list(tmp_path.glob("*.tmp-*"))
    with open_shard(path) as handle:
        assert handle.attrs["kind"] == "frames" and handle.attrs["fps"] == 1.0
        np.testing.assert_array_equal(handle["videos/vid_a"][()], frames)
        assert handle["videos/vid_a"].attrs["source_video"] == "a.mp4"
        assert "vid_b" not in handle["videos"]
    assert read_manifest(path) == {
        "vid_a": {"status": "ok", "message": "", "n_frames": 2, "source_video": "a.mp4"},
        "vid_b": {"status": "skipped", "message": "decoder said no", "source_video": "b.mp4"},
    }


def test_exception_leaves_no_target_and_no_temp_file(tmp_path):
    path = tmp_path / "shard.h5"
    with pytest.raises(KeyError):
        with ShardWriter(path, "frames") as shard:
            shard.add("vid_a", np.zeros((1, 2, 2, 3), np.uint8))
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_the_previous_target(tmp_path):
    path = tmp_path / "shard.h5"
    with ShardWriter(path, "frames") as shard:
        shard.add("old", np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(RuntimeError):
        with ShardWriter(path, "frames") as shard:
            shard.add("new", np.zeros((1, 2, 2, 3), np.uint8))
            raise RuntimeError("crash mid-shard")
    assert list(read_manifest(path)) == ["old"]


def test_half_written_shard_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "half.h5"
    with h5py.File(path, "w") as handle:  # what a crash mid-write would leave
        handle.create_dataset("videos/vid_a", data=np.zeros(3))
    with pytest.raises(IncompleteShardError, match=r"half\.h5 is incomplete.*delete .*rebuild"):
        open_shard(path)
    assert not is_complete(path)


def test_non_hdf5_file_is_refused(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_text("not hdf5")
    with pytest.raises(IncompleteShardError, match=r"junk\.h5 is not a readable HDF5 shard"):
        read_manifest(path)
    assert not is_complete(path)
    assert not is_complete(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        open_shard(tmp_path / "missing.h5")


def test_duplicate_and_invalid_ids_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        with ShardWriter(tmp_path / "s.h5", "frames") as shard:
            shard.add("vid", np.zeros(1))
            shard.skip("vid", "again")
    with pytest.raises(ValueError, match="cannot name"):
        with ShardWriter(tmp_path / "s.h5", "frames") as shard:
            shard.add("a/b", np.zeros(1))
    assert list(tmp_path.iterdir()) == []


# ---- the layout the training reads rely on ------------------------------------------------------

FRAME = (8, 1024)  # tokens x dim: 16 KiB per float16 frame, so a 6-frame window (96 KiB) is past HDF5's 64 KiB sieve buffer


def test_features_are_stored_contiguous_and_uncompressed(tmp_path):
    path = tmp_path / "f.h5"
    with ShardWriter(path, "features") as shard:
        shard.add("v", np.zeros((20, *FRAME), dtype=np.float16), n_frames=20)
    with open_shard(path) as handle:
        dataset = handle["videos"]["v"]
        assert dataset.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
        assert dataset.chunks is None and dataset.compression is None


def test_a_window_and_a_whole_video_are_one_contiguous_read_each(tmp_path, monkeypatch):
    """What a FeatureStore reads from the file: a window of consecutive frames (training, no
    cache) is one read of exactly its bytes, and a whole video (evaluation, loading the cache)
    is one read too: the frames of a video lie back to back in the file."""
    import io

    from vis4mer import feature_store

    path = tmp_path / "f.h5"
    video = np.random.default_rng(0).normal(size=(20, *FRAME)).astype(np.float16)
    with ShardWriter(path, "features") as shard:
        shard.add("v", video, n_frames=20)
    reads: list[int] = []

    class CountingFile(io.FileIO):
        def readinto(self, buffer):
            n = super().readinto(buffer)
            reads.append(n)
            return n

    monkeypatch.setattr(feature_store, "open_shard", lambda p: h5py.File(CountingFile(p, "rb"), "r"))
    store = feature_store.FeatureStore([path])
    store.read("v", 0, 1)  # opens the file, reads the metadata
    frame_bytes = FRAME[0] * FRAME[1] * 2
    reads.clear()
    window = store.read("v", 5, 11)
    assert [n for n in reads if n >= frame_bytes] == [6 * frame_bytes]
    np.testing.assert_array_equal(window, video[5:11].astype(np.float32))
    reads.clear()
    out = np.empty_like(video)
    store.read_into("v", out)
    store.close()  # the HDF5 file before its Python file object (closing it later can crash h5py)
    assert [n for n in reads if n >= frame_bytes] == [20 * frame_bytes]
    np.testing.assert_array_equal(out, video)
