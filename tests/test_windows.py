"""Windows over stored features: random training windows, all windows at a stride, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _synthetic_features import write_feature_shard
from vis4mer.feature_store import FeatureStore
from vis4mer.labels import describe_labels, read_task_rows
from vis4mer.sources.local import resolve_videos
from vis4mer.windows import AllWindowsDataset, RandomWindowDataset, pad_window, random_window_start, tokens_per_frame, window_starts
from vis4mer.shards import IncompleteShardError
from vis4mer.sources.splits import SplitRow


def ramp(n_frames: int, tokens: int = 2, dim: int = 3) -> np.ndarray:
    """Frame i holds the value i everywhere, so windows can be read back exactly."""
    return np.broadcast_to(np.arange(n_frames, dtype=np.float32)[:, None, None], (n_frames, tokens, dim)).copy()


@pytest.fixture
def store(tmp_path):
    shard = write_feature_shard(
        tmp_path / "shard_0000.h5",
        {"long": ramp(10), "short": ramp(4) + 1.0, "exact": ramp(6)},
        skipped={"broken": "decord: cannot open file"},
    )
    return FeatureStore([shard])


# ------------------------------------------------------------------ window arithmetic


def test_window_starts_cover_video_at_stride_and_include_the_tail():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(10, 4, 3) == [0, 3, 6]
    # 0, 4 and the last full window at 6 (stride would skip frames 8-9 otherwise)
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(10, 4, 1) == list(range(7))
    assert window_starts(4, 4, 1) == [0]
    assert window_starts(3, 60, 1) == [0]  # shorter than the window: one padded window


def test_window_starts_rejects_bad_arguments():
    with pytest.raises(ValueError):
        window_starts(0, 4, 1)
    with pytest.raises(ValueError):
        window_starts(10, 4, 0)


def test_random_window_start_is_uniform_over_full_windows():
    rng = np.random.default_rng(0)
    starts = [random_window_start(10, 4, rng) for _ in range(2000)]
    assert set(starts) == set(range(7))  # every full-window position, never beyond
    counts = np.bincount(starts)
    assert counts.min() > 2000 / 7 * 0.7
    assert {random_window_start(3, 60, rng) for _ in range(20)} == {0}


def test_pad_window_pads_zeros_at_the_end():
    frames = ramp(3) + 5.0
    padded, n_valid = pad_window(frames, 5)
    assert n_valid == 3 and padded.shape == (5, 2, 3)
    np.testing.assert_array_equal(padded[:3], frames)  # content first, unchanged
    assert not padded[3:].any()
    same, n = pad_window(ramp(5), 5)
    assert n == 5 and same.shape == (5, 2, 3)
    with pytest.raises(ValueError):
        pad_window(ramp(6), 5)


def test_tokens_per_frame():
    assert tokens_per_frame(17, "all") == 17
    assert tokens_per_frame(17, "cls") == 1
    with pytest.raises(ValueError, match="tokens"):
        tokens_per_frame(17, "patch")


# ------------------------------------------------------------------ feature store


def test_feature_store_indexes_shards_and_reports_missing(store):
    assert store.video_ids == ["exact", "long", "short"]
    assert (store.n_tokens, store.dim) == (2, 3)
    assert store.n_frames("long") == 10
    assert store.attrs["backbone"] == "synthetic" and store.attrs["weights"] == "random"
    assert "broken" not in store and "long" in store
    assert "decord: cannot open file" in store.missing_reason("broken")
    assert store.missing_reason("nowhere") == "absent from the feature shards"
    present, missing = store.partition([SplitRow("long", 0), SplitRow("broken", 1), SplitRow("nowhere", 0)])
    assert [r.video_id for r in present] == ["long"]
    assert set(missing) == {"broken", "nowhere"}
    np.testing.assert_array_equal(store.read("long", 2, 5)[:, 0, 0], [2, 3, 4])
    assert store.read("long", 8, 20).shape == (2, 2, 3)  # clipped at the end
    assert store.read("long", tokens="cls").shape == (10, 1, 3)


def test_feature_store_refuses_half_written_shard(tmp_path):
    shard = write_feature_shard(tmp_path / "ok.h5", {"a": ramp(3)})
    broken = tmp_path / "broken.h5"
    broken.write_bytes(shard.read_bytes()[:100])  # truncated copy
    with pytest.raises(IncompleteShardError, match="broken.h5"):
        FeatureStore([shard, broken])


def test_feature_store_rejects_mixed_feature_shapes(tmp_path):
    a = write_feature_shard(tmp_path / "a.h5", {"a": ramp(3, tokens=2)})
    b = write_feature_shard(tmp_path / "b.h5", {"b": ramp(3, tokens=5)})
    with pytest.raises(ValueError, match="one backbone"):
        FeatureStore([a, b])


# ------------------------------------------------------------------ torch datasets


def test_random_windows_flatten_frames_and_pad_short_clips(store):
    rows = [SplitRow("long", 0), SplitRow("short", 1), SplitRow("exact", 0)]
    dataset = RandomWindowDataset(store, rows, window_frames=6, tokens="all", task_type="classification", seed=3)
    x, y, padded = dataset[0]  # long: 10 frames, a random full window
    assert x.shape == (6 * 2, 3) and x.dtype == torch.float32 and y.dtype == torch.long
    frame_values = x[::2, 0].tolist()
    start = int(frame_values[0])
    assert frame_values == list(range(start, start + 6)) and 0 <= start <= 4 and not padded
    # tokens of one frame are consecutive in the flattened sequence
    assert torch.equal(x[0], x[1])

    x, y, padded = dataset[1]  # short: 4 frames (values 1..4) zero-padded at the end
    assert padded and int(y) == 1
    assert x[::2, 0].tolist() == [1, 2, 3, 4, 0, 0]

    _, _, padded = dataset[2]  # exactly the window: not padded
    assert not padded


def test_random_windows_depend_on_seed_and_epoch_only(store):
    rows = [SplitRow("long", 0)]
    a = RandomWindowDataset(store, rows, 4, "all", "classification", seed=1)
    b = RandomWindowDataset(store, rows, 4, "all", "classification", seed=1)
    starts_a, starts_b = [], []
    for epoch in range(12):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        starts_a.append(int(a[0][0][0, 0]))
        starts_b.append(int(b[0][0][0, 0]))
    assert starts_a == starts_b  # reproducible
    assert len(set(starts_a)) > 1  # a new window per epoch


def test_random_windows_cls_tokens_and_regression_labels(store):
    dataset = RandomWindowDataset(store, [SplitRow("long", 2.5)], 6, "cls", "regression")
    x, y, _ = dataset[0]
    assert x.shape == (6, 3) and y.dtype == torch.float32 and float(y) == 2.5


def test_datasets_refuse_rows_without_features(store):
    with pytest.raises(ValueError, match="no features"):
        RandomWindowDataset(store, [SplitRow("broken", 0)], 4, "all", "classification")


def test_all_windows_enumerates_every_window_at_stride(store):
    rows = [SplitRow("long", 0), SplitRow("short", 1)]
    dataset = AllWindowsDataset(store, rows, window_frames=4, tokens="all", stride_frames=3)
    assert dataset.items == [(0, 0), (0, 3), (0, 6), (1, 0)]
    starts = [int(dataset[i][0][0, 0]) for i in range(3)]
    assert starts == [0, 3, 6]
    x, clip, padded = dataset[3]
    assert clip == 1 and not padded  # 4 frames = window
    dataset = AllWindowsDataset(store, rows, window_frames=6, tokens="all", stride_frames=1)
    assert len(dataset) == 5 + 1  # long: starts 0..4; short: one padded window
    x, clip, padded = dataset[5]
    assert clip == 1 and padded and x[::2, 0].tolist() == [1, 2, 3, 4, 0, 0]


# ------------------------------------------------------------------ labels and videos


def test_describe_labels():
    rows = [SplitRow("a", 0, "cat"), SplitRow("b", 2, "dog")]
    assert describe_labels("classification", rows) == (3, ["cat", "1", "dog"])
    assert describe_labels("regression", [SplitRow("a", 0.5)]) == (1, [])
    with pytest.raises(ValueError, match="two names"):
        describe_labels("classification", rows, [SplitRow("c", 0, "bird")])
    with pytest.raises(ValueError, match="regression"):
        describe_labels("classification", [SplitRow("a", 0.5)])


def test_resolve_videos_prefers_listed_extension_order(tmp_path):
    (tmp_path / "a.mkv").write_bytes(b"x")
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.webm").write_bytes(b"x")
    (tmp_path / "c.txt").write_bytes(b"x")
    videos = resolve_videos(["a", "b", "c"], tmp_path, ["mp4", "mkv", "webm"])
    assert videos["a"].name == "a.mp4"
    assert videos["b"].name == "b.webm"
    assert videos["c"] == tmp_path / "c.mp4" and not videos["c"].exists()


def test_read_task_rows_lvu_regression_labels(tmp_path):
    like = tmp_path / "like.csv"
    like.write_text("like_count dislike_count youtube_id imdb_id\n90 10 a tt1\n30 10 b tt2\n")
    rows = read_task_rows(like, "youtube_id", "like_count", {"ratio_with": "dislike_count", "scale": 10.0, "offset": -9.0})
    assert [(r.video_id, pytest.approx(r.label)) for r in rows] == [("a", 0.0), ("b", -1.5)]
    views = tmp_path / "views.csv"
    views.write_text("view_count youtube_id imdb_id\n1000 a tt1\n10 b tt2\n")
    rows = read_task_rows(views, "youtube_id", "view_count", {"log": True, "offset": -np.log(100.0)})
    assert [r.label for r in rows] == pytest.approx([np.log(10.0), -np.log(10.0)])
    assert read_task_rows(views, "youtube_id", "view_count")[0].label == 1000
    with pytest.raises(ValueError, match="unknown label_transform"):
        read_task_rows(views, "youtube_id", "view_count", {"sqrt": True})


# ------------------------------------------------------------------ epoch draws and spread clips


def tagged(n_frames: int, tag: int) -> np.ndarray:
    """[n, 1, 2]: frame i holds (tag, i), so a clip tells its video and its frames."""
    array = np.zeros((n_frames, 1, 2), dtype=np.float32)
    array[:, 0, 0], array[:, 0, 1] = tag, np.arange(n_frames)
    return array


def tagged_store(tmp_path, lengths: dict[str, int]) -> FeatureStore:
    return FeatureStore([write_feature_shard(tmp_path / "tagged.h5", {v: tagged(n, i) for i, (v, n) in enumerate(lengths.items())})])


def test_windows_epochs_draw_every_video_and_window_pair_uniformly(tmp_path):
    """LVU, the reference's epoch: N draws with replacement of a (video, start) pair, uniform over
    all pairs, so a video comes up in proportion to its windows, max(1, n_frames - window + 1)."""
    lengths = {"a": 61, "b": 63, "c": 30}  # 60-frame windows: 2, 4 and 1 (padded) windows
    store = tagged_store(tmp_path, lengths)
    rows = [SplitRow(v, 0) for v in lengths]
    dataset = RandomWindowDataset(store, rows, 60, "all", "classification", seed=5, epoch_draws="windows")
    pairs = []
    for epoch in range(1500):
        dataset.set_epoch(epoch)
        assert len(dataset) == 3  # N(videos) draws per epoch
        for index in range(len(dataset)):
            x, _, _ = dataset[index]
            pairs.append((int(x[0, 0]), int(x[0, 1])))  # (video tag, start frame)
    counts = {pair: pairs.count(pair) for pair in set(pairs)}
    assert set(counts) == {(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0)}
    expected = len(pairs) / 7
    assert all(abs(count - expected) < 4 * np.sqrt(expected) for count in counts.values()), counts
    # with replacement: some epochs draw one video twice
    assert any(len(set(RandomWindowDataset(store, rows, 60, "all", "classification", seed=s, epoch_draws="windows").draws)) < 3
               for s in range(5))


def test_windows_epoch_draw_frequencies_follow_the_duration_weights(tmp_path):
    durations = {"short": 40, "one_minute": 60, "two": 120, "five": 300, "ten": 600}
    store = tagged_store(tmp_path, {v: d + 1 for v, d in durations.items()})  # duration + 1 frames per video
    rows = [SplitRow(v, 0) for v in durations]
    dataset = RandomWindowDataset(store, rows, 60, "all", "classification", seed=0, epoch_draws="windows")
    drawn = np.zeros(len(rows))
    n_epochs = 4000
    for epoch in range(n_epochs):
        dataset.set_epoch(epoch)
        drawn += np.bincount(dataset.draws, minlength=len(rows))
    weights = np.array([max(1, d + 1 - 60 + 1) for d in durations.values()], dtype=float)  # 1, 2, 62, 242, 542
    np.testing.assert_allclose(drawn / drawn.sum(), weights / weights.sum(), atol=0.01)
    assert drawn.sum() == n_epochs * len(rows)


def test_videos_epochs_draw_each_video_once(tmp_path):
    store = tagged_store(tmp_path, {"a": 61, "b": 300, "c": 30})
    dataset = RandomWindowDataset(store, [SplitRow(v, 0) for v in "abc"], 60, "all", "classification", seed=1)
    for epoch in range(5):
        dataset.set_epoch(epoch)
        assert sorted(int(dataset[i][0][0, 0]) for i in range(3)) == [0, 1, 2]


@pytest.mark.parametrize("n_segments", [512, 256, 300])  # Breakfast / COIN long videos, a short dense one
def test_spread_clips_are_sorted_distinct_segments_over_the_whole_video(tmp_path, n_segments):
    store = tagged_store(tmp_path, {"v": n_segments})
    dataset = RandomWindowDataset(store, [SplitRow("v", 0)], 64, "all", "classification", seed=2, clip_frames="spread")
    seen = np.zeros(n_segments)
    for epoch in range(400):
        dataset.set_epoch(epoch)
        x, _, padded = dataset[0]
        frames = x[:, 1].numpy().astype(int)
        assert len(frames) == 64 and not padded
        assert np.all(np.diff(frames) > 0)  # distinct and in time order
        seen[frames] += 1
    assert seen.min() > 0  # every segment, first and last included, is drawn sometimes
    np.testing.assert_allclose(seen.mean(), 400 * 64 / n_segments)


def test_spread_clips_of_short_videos_repeat_segments_instead_of_padding(tmp_path):
    store = tagged_store(tmp_path, {"short": 40, "exact": 64})
    rows = [SplitRow("short", 0), SplitRow("exact", 0)]
    dataset = RandomWindowDataset(store, rows, 64, "cls", "classification", clip_frames="spread")
    x, _, padded = dataset[0]
    assert not padded and x[:, 1].int().tolist() == [i * 40 // 64 for i in range(64)]  # 0, 0, 1, 1, 2, 3, 3, ...
    x, _, padded = dataset[1]
    assert not padded and x[:, 1].int().tolist() == list(range(64))
