"""The training input path: windows/s and MB/s of the training DataLoader
(vis4mer.training.training_loader, as a run builds it) from feature shards resident in the page
cache, without a feature cache (runtime.feature_cache none: HDF5 reads, the preset's num_workers)
and with one (ram; gpu on CUDA), next to the memcpy bandwidth of this machine measured in the
same run, and their ratio.

A delivered window is what the training step gets: float32 [window·tokens, dim] on the
training device (a batch is moved there as the step moves it, and synchronised); MB/s counts
those bytes (1 MB = 10⁶ B) over the fastest epoch. memcpy is bytes copied per second by a large
tensor copy (dst.copy_(src): every byte read once and written once; bench_floor's copy figure
counts both, twice this), host memory on every device; on CUDA also host→device from pinned
memory and device→device, the bounds of the ram and gpu caches there. The ratio is loader
MB/s / memcpy MB/s: 1 would be a loader that only copies each window once at memcpy speed.

Shards: fp16 [frames, 197, 1024] per video, written by vis4mer.shards.ShardWriter as the
features stage writes them (contiguous datasets), into a temporary directory, then read once
so they are in the page cache; the cache's one-off load (read, finiteness check, pinning) is
reported apart (load_seconds).

    python bench/bench_input.py --preset lvu   # 60x197x1024 windows, B=16, 64 videos of 90 frames (2.3 GB)
    python bench/bench_input.py --preset cpu   # 60x197x1024 windows, B=4, 16 videos of 90 frames (0.58 GB)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import copy_bandwidth, fastest, parse_args, plot_bars, ratio, side_by_side, synchronize, time_repeated, write_json  # noqa: E402

PRESETS = {
    "lvu": dict(videos=64, frames=90, tokens=197, dim=1024, window=60, batch=16, epochs=3, workers=(0, 4), copy_mib=2048, rounds=1),
    # workers: 0 only; 2 workers on this 2-core CPU delivered 228 MB/s against 1115 MB/s in-process
    # (each 194 MB batch goes through shared memory, moved by the cores the reading also needs)
    "cpu": dict(videos=16, frames=90, tokens=197, dim=1024, window=60, batch=4, epochs=2, workers=(0,), copy_mib=256, rounds=2),
    "tiny": dict(videos=4, frames=8, tokens=3, dim=16, window=4, batch=2, epochs=2, workers=(0, 2), copy_mib=1, rounds=1),
}
SHARDS = 2


def write_shards(directory: Path, preset: dict) -> list[Path]:
    """SHARDS feature shards of preset["videos"] videos (random fp16 values), as the features stage writes them."""
    from vis4mer.shards import ShardWriter

    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((preset["frames"], preset["tokens"], preset["dim"]), dtype=np.float32).astype(np.float16)
    paths = []
    per_shard = -(-preset["videos"] // SHARDS)
    for shard in range(SHARDS):
        path = directory / f"features_{shard:04d}.h5"
        with ShardWriter(path, "features", attrs={"backbone": "bench", "weights": "random"}) as writer:
            for index in range(shard * per_shard, min(preset["videos"], (shard + 1) * per_shard)):
                writer.add(f"v{index:04d}", tokens, backbone="bench", weights="random", fps=1.0, n_frames=len(tokens),
                           source_video=f"v{index:04d}.mp4")
        paths.append(path)
    return paths


def warm_page_cache(paths: list[Path]) -> dict:
    """Read every shard once (so the loader reads from the page cache); bytes and seconds."""
    start, total = time.perf_counter(), 0
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 24):
                total += len(block)
    return {"bytes": total, "seconds": time.perf_counter() - start}


def loader_case(paths: list[str], preset: dict, feature_cache: str, num_workers: int, device: str) -> dict:
    """One epoch after another of the training loader; the fastest epoch's windows/s and MB/s."""
    from vis4mer.feature_store import FeatureStore
    from vis4mer.sources.splits import SplitRow
    from vis4mer.training import RunOptions, training_loader
    from vis4mer.windows import RandomWindowDataset

    dev = torch.device(device)
    store = FeatureStore(paths)
    rows = [SplitRow(video_id, index % 2) for index, video_id in enumerate(store.video_ids)]
    dataset = RandomWindowDataset(store, rows, preset["window"], "all", "classification", seed=0)
    options = RunOptions(device=device, num_workers=num_workers, progress=False, feature_cache=feature_cache)
    start = time.perf_counter()
    loader = training_loader(dataset, preset["batch"], options, dev, torch.Generator().manual_seed(0))
    load_seconds = time.perf_counter() - start
    epochs = []
    for epoch in range(preset["epochs"]):
        dataset.set_epoch(epoch)
        windows = delivered = 0
        start = time.perf_counter()
        for x, _y, _padded in loader:
            x = x.to(dev, non_blocking=True)  # as the training step does
            windows, delivered = windows + len(x), delivered + x.numel() * x.element_size()
        synchronize(dev)
        epochs.append({"seconds": time.perf_counter() - start, "windows": windows, "bytes": delivered})
    best = min(epochs, key=lambda row: row["seconds"])
    return {
        "feature_cache": feature_cache,
        "num_workers": num_workers,
        "load_seconds": load_seconds if feature_cache != "none" else 0.0,
        "epochs": epochs,
        "min_seconds": best["seconds"],
        "windows_per_s": best["windows"] / best["seconds"],
        "mb_per_s": best["bytes"] / best["seconds"] / 1e6,
        "window_bytes": best["bytes"] // max(best["windows"], 1),
    }


def host_to_device_bandwidth(mib: int, repeats: int) -> dict:
    """Bytes/s of a copy from pinned host memory to the CUDA device."""
    src = torch.ones(mib * 2**20 // 4, pin_memory=True)
    dst = torch.empty_like(src, device="cuda")
    timing = time_repeated(lambda: dst.copy_(src, non_blocking=True), torch.device("cuda"), warmup=1, repeats=repeats)
    return {"mib": mib, "bytes_per_s": src.numel() * 4 / fastest(timing), "min_seconds": fastest(timing)}


def memcpy_rates(preset: dict, device: str, rounds: int) -> dict:
    """Bytes copied per second (MB/s): host memcpy, and on CUDA pinned host→device and device→device."""
    cases = {"host": (copy_bandwidth, "cpu", preset["copy_mib"], 5)}
    if torch.device(device).type == "cuda":
        cases |= {"host_to_device": (host_to_device_bandwidth, preset["copy_mib"], 5), "device": (copy_bandwidth, device, preset["copy_mib"], 5)}
    measured = side_by_side(cases, rounds)
    # copy_bandwidth counts read + write; a memcpy of n bytes copies n
    halve = {"host": 2, "device": 2, "host_to_device": 1}
    return {name: (None if "error" in r else r["bytes_per_s"] / halve[name] / 1e6) for name, r in measured.items()}


def main(argv: list[str] | None = None) -> dict:
    args, preset = parse_args(__doc__, PRESETS, argv)
    caches = ["none", "ram"] + (["gpu"] if torch.device(args.device).type == "cuda" else [])
    with tempfile.TemporaryDirectory(prefix="bench_input_") as directory:
        paths = write_shards(Path(directory), preset)
        warm = warm_page_cache(paths)
        shard_args = [str(path) for path in paths]
        cases = {f"none, {n} workers": (loader_case, shard_args, preset, "none", n, args.device) for n in preset["workers"]}
        cases |= {cache: (loader_case, shard_args, preset, cache, 0, args.device) for cache in caches[1:]}
        loaders = side_by_side(cases, preset["rounds"])
    memcpy = memcpy_rates(preset, args.device, preset["rounds"])
    for name, result in loaders.items():
        result["ratio_to_host_memcpy"] = ratio(result.get("mb_per_s"), memcpy["host"])
        if "host_to_device" in memcpy:  # what bounds each case on a GPU: the copy to it, or copies on it
            result["bound"] = "device" if name == "gpu" else "host_to_device"
            result["ratio_to_bound"] = ratio(result.get("mb_per_s"), memcpy[result["bound"]])
    print("memcpy MB/s", memcpy, "loaders", loaders, sep="\n", flush=True)
    none, ram = loaders["none, 0 workers"], loaders["ram"]
    layout = {key: preset[key] for key in ("videos", "frames", "tokens", "dim", "window", "batch", "epochs")}
    payload = {
        "preset": args.preset,
        "device": args.device,
        "size": layout,
        "shards": {"files": len(paths), "bytes": warm["bytes"], "page_cache_warm_read_seconds": warm["seconds"]},
        "memcpy_mb_per_s": memcpy,
        "results": loaders,
        "headline": {
            "memcpy_mb_per_s": memcpy["host"],
            **{f"{name}_mb_per_s": result.get("mb_per_s") for name, result in loaders.items()},
            **{f"{name}_ratio_to_host_memcpy": result.get("ratio_to_host_memcpy") for name, result in loaders.items()},
            "ram_over_none_speed": ratio(ram.get("mb_per_s"), none.get("mb_per_s")),
        },
    }
    path = write_json(f"input_{args.preset}", payload)
    plot_bars(
        f"input_{args.preset}",
        [
            {"xlabel": "MB/s of float32 windows delivered (memcpy: bytes copied)", "title": "throughput",
             "bars": {**{f"memcpy {name}": value for name, value in memcpy.items()}, **{f"loader, {n}": r.get("mb_per_s") for n, r in loaders.items()}}},
            {"xlabel": "loader MB/s / host memcpy MB/s", "title": "fraction of memcpy (goal 0.5 with a cache)", "reference": 0.5,
             "bars": {n: r.get("ratio_to_host_memcpy") for n, r in loaders.items()}},
        ],
        title=f"training input path: [{preset['window']}·{preset['tokens']}, {preset['dim']}] windows, batch {preset['batch']}, {args.device}",
    )
    print(f"wrote {path}", flush=True)
    return payload


if __name__ == "__main__":
    main()
