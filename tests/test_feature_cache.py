"""runtime.feature_cache: the same windows from memory as from the shards (and as the dataset's
items), the refusals (too little memory, gpu without CUDA), the batches' reused memory, the
config key, and a run that ends as the uncached one does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _sources import config_with
from _synthetic_features import separable_dataset, write_feature_shard
from vis4mer import feature_cache
from vis4mer.config import ConfigError, validate_config
from vis4mer.feature_cache import FeatureCache, FeatureCacheError, WindowBatches, cache_bytes, check_fits
from vis4mer.feature_store import FeatureStore
from vis4mer.sources.splits import SplitRow
from vis4mer.training import ModelSpec, RunOptions, TrainOutputs, TrainSettings, train_model, training_loader
from vis4mer.windows import RandomWindowDataset

CPU = torch.device("cpu")
BREAKFAST = {"source": "breakfast", "video_dir": "videos", "tasks": {"activity": {"type": "classification"}}}


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    lengths = {"a": 12, "b": 3, "c": 7, "d": 9, "e": 5}  # b, e: shorter than the 6-frame window (padded)
    videos = {v: rng.normal(size=(n, 4, 5)).astype(np.float32) for v, n in lengths.items()}
    shards = [write_feature_shard(tmp_path / "s0.h5", {v: videos[v] for v in "abc"}),
              write_feature_shard(tmp_path / "s1.h5", {v: videos[v] for v in "de"})]
    return FeatureStore(shards)


def batches(store, cache: str, tokens: str, clip_frames: str, epochs: int = 3, num_workers: int = 0):
    rows = [SplitRow(v, i % 2) for i, v in enumerate(store.video_ids)]
    dataset = RandomWindowDataset(store, rows, 6, tokens, "classification", seed=7, epoch_draws="windows", clip_frames=clip_frames)
    if cache == "plain":  # the dataset's own items, collated as torch does (the loader before the cache)
        loader = DataLoader(dataset, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(3))
    else:
        options = RunOptions(device="cpu", progress=False, feature_cache=cache, num_workers=num_workers)
        loader = training_loader(dataset, 2, options, CPU, torch.Generator().manual_seed(3))
    out = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        out += list(loader)
    return out


@pytest.mark.parametrize(("tokens", "clip_frames"), [("all", "window"), ("cls", "window"), ("all", "spread")])
def test_cached_windows_are_the_windows_read_from_the_shards(store, tokens, clip_frames):
    items = batches(store, "plain", tokens, clip_frames)
    from_shards = batches(store, "none", tokens, clip_frames)
    from_ram = batches(store, "ram", tokens, clip_frames)
    assert len(from_ram) == len(from_shards) == len(items) == 3 * 3  # 5 draws per epoch in batches of 2
    for (x, y, padded), *others in zip(items, from_shards, from_ram):
        for x_other, y_other, padded_other in others:
            assert x_other.dtype == x.dtype == torch.float32 and x_other.shape == x.shape
            assert torch.equal(x_other, x) and torch.equal(y_other, y) and torch.equal(padded_other, padded)
    if clip_frames == "window":
        assert any(bool(padded.any()) for _, _, padded in from_ram)  # short videos were drawn, zero-padded


def test_the_order_does_not_depend_on_workers_or_cache(store):
    with_workers = batches(store, "none", "all", "window", epochs=2, num_workers=2)
    cached = batches(store, "ram", "all", "window", epochs=2, num_workers=2)  # workers unused with a cache
    assert all(torch.equal(a[0], b[0]) for a, b in zip(with_workers, cached))


def test_the_cache_holds_the_stored_dtype_and_only_the_tokens_used(store):
    cache = FeatureCache.load(store, store.video_ids, "cls", "ram", CPU, progress=False)
    assert cache.dtype == torch.float16 and cache.videos["a"].shape == (12, 1, 5)
    assert cache_bytes(store, store.video_ids, "cls") == (12 + 3 + 7 + 9 + 5) * 1 * 5 * 2
    assert cache_bytes(store, ["a", "a"], "all") == 12 * 4 * 5 * 2
    np.testing.assert_array_equal(cache.videos["c"].float().numpy(), store.read("c", tokens="cls"))


def test_a_cache_that_does_not_fit_is_refused_before_loading(store, monkeypatch):
    monkeypatch.setattr(feature_cache, "host_memory", lambda: (2**30, 10 * 2**30))  # 1 GiB free of 10
    monkeypatch.setattr(feature_cache, "cache_bytes", lambda *args: 3 * 2**30)
    monkeypatch.setattr(FeatureStore, "read_into", lambda *args: pytest.fail("read before the size check"))
    with pytest.raises(FeatureCacheError) as error:
        FeatureCache.load(store, store.video_ids, "all", "ram", CPU, progress=False)
    message = str(error.value)
    assert message.startswith("runtime.feature_cache: ram does not fit: the features of 5 training videos (tokens all, float16) take 3.00 GiB")
    assert "1.00 GiB free of 10.00 GiB" in message and "Set runtime.feature_cache: none" in message


def test_fit_counts_the_reserve_and_every_process_copy():
    check_fits("ram", needed=7 * 2**30, available=9 * 2**30, total=10 * 2**30, what="x", memory="RAM")  # 9 - 2 reserved
    with pytest.raises(FeatureCacheError, match=r"2 copies \(one per process of the run\) of x take 14.00 GiB"):
        check_fits("ram", needed=7 * 2**30, available=9 * 2**30, total=10 * 2**30, what="x", memory="RAM", copies=2)
    with pytest.raises(FeatureCacheError, match="7.01 GiB usable"):
        check_fits("gpu", needed=7 * 2**30 + 2**25, available=9 * 2**30 + 2**23, total=10 * 2**30, what="x", memory="device")


def test_gpu_cache_needs_cuda(store):
    with pytest.raises(FeatureCacheError, match=r"runtime.feature_cache: gpu needs the run on a CUDA device, but it runs on cpu"):
        FeatureCache.load(store, store.video_ids, "all", "gpu", CPU, progress=False)


def test_batches_reuse_memory_only_once_nothing_holds_it():
    collate = WindowBatches(length=4, dim=3, device=CPU)
    item = lambda value: (torch.full((4, 3), value, dtype=torch.float16), torch.tensor(0), False)  # noqa: E731
    first = collate([item(1.0)])[0]
    kept_view = first[:, :2]
    pointer = first.data_ptr()
    del first
    second = collate([item(2.0)])[0]
    assert second.data_ptr() != pointer and bool((kept_view == 1.0).all())  # a view still held it
    del kept_view
    third = collate([item(3.0)])[0]
    assert third.data_ptr() == pointer and bool((third == 3.0).all()) and bool((second == 2.0).all())


def test_short_windows_are_zero_padded_at_the_end():
    x, y, padded = WindowBatches(length=4, dim=2, device=CPU)([(torch.ones(4, 2), 1, False), (torch.ones(2, 2), 0, True)])
    assert x[1].tolist() == [[1, 1], [1, 1], [0, 0], [0, 0]] and x[0].sum() == 8
    assert y.tolist() == [1, 0] and padded.tolist() == [False, True]


def test_the_config_key_defaults_to_none_and_rejects_other_values():
    config = validate_config(config_with("x", BREAKFAST))
    assert config["runtime"]["feature_cache"] == "none"
    assert validate_config({**config_with("x", BREAKFAST), "runtime": {"feature_cache": "gpu"}})["runtime"]["feature_cache"] == "gpu"
    with pytest.raises(ConfigError, match="config: runtime.feature_cache: 'disk' is not one of"):
        validate_config({**config_with("x", BREAKFAST), "runtime": {"feature_cache": "disk"}})
    with pytest.raises(ValueError, match="runtime.feature_cache must be one of"):
        RunOptions(feature_cache="disk")


def test_a_run_with_the_ram_cache_ends_as_the_uncached_run(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    logs = {}
    for cache in ("none", "ram"):
        out = TrainOutputs(*(tmp_path / cache / name for name in ("best.pt", "last.pt", "log.csv", "curve.png")))
        result = train_model(
            run_name="toy/sign/vis4mer", task_type="classification", feature_shards=shards,
            train_rows=splits["train"], val_rows=splits["val"],
            model_spec=ModelSpec(arch="vis4mer", d_model=8, n_layers=1, dropout=0.0),
            settings=TrainSettings(window_frames=6, batch_size=4, epochs=2, lr=1e-2, seed=0), outputs=out,
            options=RunOptions(device="cpu", progress=False, eval_batch_size=8, feature_cache=cache),
        )
        logs[cache] = [{k: v for k, v in row.items() if k != "seconds"} for row in result.log]
        assert all(math.isfinite(row["train_loss"]) for row in result.log)
    assert logs["ram"] == logs["none"]
