"""The project's own training loop (vis4mer.training.train_model) at LVU size on generated
features in HDF5 shards: step time, peak memory and whether the loss stayed finite, without
and with the feature cache (``runtime.feature_cache``, RunOptions.feature_cache) when this
tree has it; and with --torchrun the same run as DistributedDataParallel under torchrun on
one process (vis4mer.launch.train_with_torchrun: NCCL on a GPU, gloo on CPU).

    python bench/bench_training.py --preset lvu             # B=16, 60 frames x 197 tokens x 1024 (L=11820), 30 steps (GPU)
    python bench/bench_training.py --preset lvu --torchrun  # the same shards, DDP on one process
    python bench/bench_training.py --preset tiny            # seconds, on CPU

Features: random fp16 [frames, tokens, dim] per video, written with the project's shard writer
(vis4mer.shards.ShardWriter) into --data (default: a folder under the results dir), reused
when the folder already holds this preset's shards. Step time: a forward pre-hook on the model
stamps each training forward (the device synchronised first); the gap between two stamps of
one epoch is one whole step as the loop runs it (the batch from the DataLoader and its copy to
the device, forward, backward, optimiser step). The first epoch is warm-up (cuFFT plans, the
allocator, the workers' start) and is not timed. Peak memory: CUDA allocator peak (which holds
a gpu feature cache too) or the process's peak RSS on CPU, over the whole run.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import isolated, parse_args, peak_mib, reset_peak, results_dir, synchronize, write_json  # noqa: E402

CLASSES = 10
PRESETS = {
    # 84 videos x 24 MB = 2 GB of shards (~10 s to write); 6 epochs x 5 steps = 30 steps per
    # run (~0.2-0.4 s each, the loader likely the bound without the cache), validation on the
    # last epoch only; two runs (none, gpu cache): ~60-80 s on an H100/H200; --torchrun: one
    # epoch (5 steps) plus torchrun's start, ~20-30 s
    "lvu": dict(frames=60, tokens=197, dim=1024, train_videos=80, val_videos=4, shard_size=42, batch=16, epochs=6,
                d_model=1024, n_layers=3, dropout=0.2, num_workers=4, eval_batch_size=16, cache_modes=["gpu"], torchrun_epochs=1),
    "cpu": dict(frames=60, tokens=17, dim=192, train_videos=16, val_videos=2, shard_size=9, batch=4, epochs=3,
                d_model=128, n_layers=3, dropout=0.2, num_workers=0, eval_batch_size=4, cache_modes=["ram"], torchrun_epochs=1),
    "tiny": dict(frames=6, tokens=3, dim=16, train_videos=8, val_videos=2, shard_size=5, batch=2, epochs=2,
                 d_model=16, n_layers=2, dropout=0.0, num_workers=0, eval_batch_size=4, cache_modes=["ram"], torchrun_epochs=1),
}
DATA_LAYOUT = ("frames", "tokens", "dim", "train_videos", "val_videos", "shard_size")


# ---- the features -------------------------------------------------------------------------
def video_ids(preset: dict) -> dict[str, list[str]]:
    return {
        "train": [f"train{i:04d}" for i in range(preset["train_videos"])],
        "val": [f"val{i:04d}" for i in range(preset["val_videos"])],
    }


def write_features(directory: Path, preset: dict) -> list[Path]:
    """The preset's shards in `directory` (written unless they are there already, complete).

    One random fp16 window per preset, shifted by a per-video offset, so writing costs one
    draw and the copies; labels are video index mod 10.
    """
    from vis4mer.shards import ShardWriter, is_complete, shard_groups

    layout = {key: preset[key] for key in DATA_LAYOUT}
    ids = [video for split in video_ids(preset).values() for video in split]
    groups = shard_groups(ids, preset["shard_size"])
    paths = [directory / f"shard_{index:04d}.h5" for index in range(len(groups))]
    stamp = directory / "layout.json"
    if stamp.exists() and json.loads(stamp.read_text()) == layout and all(map(is_complete, paths)):
        return paths
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    base = np.random.default_rng(0).standard_normal((preset["frames"], preset["tokens"], preset["dim"]), dtype=np.float32)
    base = base.astype(np.float16)
    for path, group in zip(paths, groups):
        with ShardWriter(path, "features", attrs={"backbone": "synthetic", "weights": "random", "fps": 1.0}) as shard:
            for video in group:
                offset = np.float16((int(video[-4:]) % CLASSES) / CLASSES)
                shard.add(video, base + offset, n_frames=preset["frames"], source_video=f"{video}.mp4")
    stamp.write_text(json.dumps(layout))
    return paths


def split_rows(preset: dict):
    from vis4mer.sources.splits import SplitRow

    return {
        split: [SplitRow(video, int(video[-4:]) % CLASSES, f"class{int(video[-4:]) % CLASSES}") for video in ids]
        for split, ids in video_ids(preset).items()
    }


# ---- the feature cache, found at run time ---------------------------------------------------
def feature_cache_carrier():
    """The settings class that carries ``feature_cache`` in this tree (RunOptions, where the
    runtime section's keys go, else TrainSettings), or None when the tree has no feature cache."""
    from vis4mer.training import RunOptions, TrainSettings

    for carrier in (RunOptions, TrainSettings):
        if "feature_cache" in {field.name for field in fields(carrier)}:
            return carrier
    return None


def cache_modes(preset: dict, device: str) -> list[str]:
    """none, then the preset's cache modes this tree and device have (gpu needs CUDA)."""
    if feature_cache_carrier() is None:
        return ["none"]
    return ["none", *(mode for mode in preset["cache_modes"] if mode != "gpu" or device.startswith("cuda"))]


def loader_workers(preset: dict) -> tuple[int, str]:
    """The preset's DataLoader workers, or 0 when /dev/shm (where workers hand batches over)
    cannot hold two batches per worker (a container's 64 MB default would crash them)."""
    workers = preset["num_workers"]
    if workers == 0:
        return 0, "preset"
    batch_bytes = preset["batch"] * preset["frames"] * preset["tokens"] * preset["dim"] * 4
    try:
        usage = shutil.disk_usage("/dev/shm")
    except OSError:
        return 0, "no /dev/shm"
    needed = 2 * workers * batch_bytes
    if usage.free < needed:
        return 0, f"/dev/shm has {usage.free / 2**30:.1f} GiB free, {workers} workers need ~{needed / 2**30:.1f} GiB"
    return workers, "preset"


# ---- one run ------------------------------------------------------------------------------
def _run_kwargs(preset: dict, shards: list[Path], out: Path, device: str, epochs: int, mode: str, workers: int) -> dict:
    from vis4mer.sources.splits import SplitRow
    from vis4mer.training import ModelSpec, RunOptions, TrainOutputs, TrainSettings

    rows = split_rows(preset)
    settings = dict(window_frames=preset["frames"], tokens="all", batch_size=preset["batch"], epochs=epochs,
                    val_every_epochs=epochs, seed=0)
    options = dict(device=device, num_workers=workers, eval_batch_size=preset["eval_batch_size"], progress=False)
    carrier = feature_cache_carrier()
    if carrier is RunOptions:
        options["feature_cache"] = mode
    elif carrier is TrainSettings:
        settings["feature_cache"] = mode
    return dict(
        run_name=f"bench/{mode}", task_type="classification", feature_shards=shards,
        train_rows=rows["train"], val_rows=rows["val"],
        label_rows=[[SplitRow(f"class-{label}", label, f"class{label}") for label in range(CLASSES)]],  # every class an output
        model_spec=ModelSpec("vis4mer", d_model=preset["d_model"], n_layers=preset["n_layers"], dropout=preset["dropout"]),
        settings=TrainSettings(**settings), options=RunOptions(**options),
        outputs=TrainOutputs(out / "best.pt", out / "last.pt", out / "train_log.csv", out / "train_curve.png"),
    )


def _losses(log: list[dict]) -> dict:
    losses = [row["train_loss"] for row in log]
    return {"train_loss": losses, "loss_finite": bool(losses) and all(math.isfinite(x) for x in losses),
            "steps_skipped": sum(row["n_nonfinite_skipped"] for row in log)}


def train_case(preset: dict, shards: list[str], device: str, mode: str, workers: int) -> dict:
    """One run of train_model in this process with `mode` as the feature cache: step times
    from the model's forward pre-hook, peak memory, the losses."""
    from vis4mer import build_model
    from vis4mer.training import train_model

    dev = torch.device(device)
    stamps: list[float] = []

    def stamp(module, _inputs):
        if module.training:  # not validation's forwards
            synchronize(dev)
            stamps.append(time.perf_counter())

    def model_factory(arch, **kwargs):
        model = build_model(arch, **kwargs)
        model.register_forward_pre_hook(stamp)
        return model

    with tempfile.TemporaryDirectory(prefix="bench_training_") as out:
        kwargs = _run_kwargs(preset, [Path(p) for p in shards], Path(out), device, preset["epochs"], mode, workers)
        synchronize(dev)
        reset_peak(dev)
        start = time.perf_counter()
        result = train_model(**kwargs, model_factory=model_factory)
        synchronize(dev)
        wall = time.perf_counter() - start
    per_epoch = -(-preset["train_videos"] // preset["batch"])
    gaps = [b - a for i, (a, b) in enumerate(zip(stamps, stamps[1:]), start=1) if i % per_epoch and i > per_epoch]
    return {
        "feature_cache": mode,
        "steps": len(stamps),
        "steps_timed": len(gaps),
        "step_seconds": statistics.median(gaps) if gaps else None,
        "min_step_seconds": min(gaps) if gaps else None,
        "wall_seconds": round(wall, 2),
        "peak_mib": round(peak_mib(dev), 1),
        "best_val_metric": result.best_val_metric,
        **_losses(result.log),
    }


def torchrun_case(preset: dict, shards: list[str], device: str, workers: int) -> dict:
    """The same run under torchrun on one process (DDP, the backend the launcher picks)."""
    from vis4mer.launch import train_with_torchrun

    with tempfile.TemporaryDirectory(prefix="bench_training_ddp_") as out:
        kwargs = _run_kwargs(preset, [Path(p) for p in shards], Path(out), device, preset["torchrun_epochs"], "none", workers)
        start = time.perf_counter()
        result = train_with_torchrun(1, **kwargs)
        wall = time.perf_counter() - start
    on_gpu = device != "cpu" and torch.cuda.is_available()
    return {"nproc": 1, "backend": "nccl" if on_gpu else "gloo", "epochs": result.epochs_run, "wall_seconds": round(wall, 2),
            "best_val_metric": result.best_val_metric, **_losses(result.log)}


def main(argv: list[str] | None = None) -> dict:
    def add_arguments(parser):
        parser.add_argument("--torchrun", action="store_true", help="the DDP run under torchrun on one process instead")
        parser.add_argument("--data", type=Path, default=None, help="folder for the generated shards (default: under the results dir)")

    args, preset = parse_args(__doc__, PRESETS, argv, add_arguments)
    data = args.data or results_dir() / f"training_data_{args.preset}"
    start = time.perf_counter()
    shards = [str(p) for p in write_features(data, preset)]
    data_seconds = round(time.perf_counter() - start, 2)
    workers, why = loader_workers(preset)
    payload = {"preset": args.preset, "device": args.device, "size": preset, "data": str(data), "data_seconds": data_seconds,
               "num_workers": workers, "num_workers_reason": why}
    if args.torchrun:
        result = isolated(torchrun_case, preset, shards, args.device, workers)
        print("torchrun", result, flush=True)
        payload |= {"result": result, "headline": {k: result.get(k) for k in ("backend", "loss_finite", "wall_seconds")}}
        name = f"ddp_{args.preset}"
    else:
        carrier = feature_cache_carrier()
        payload["feature_cache_option"] = f"{carrier.__name__}.feature_cache" if carrier else "not in this tree"
        runs = []
        for mode in cache_modes(preset, args.device):
            runs.append(isolated(train_case, preset, shards, args.device, mode, workers) | {"feature_cache": mode})
            print("train", runs[-1], flush=True)
        payload |= {"results": runs, "headline": {
            run["feature_cache"]: {k: run.get(k) for k in ("step_seconds", "peak_mib", "loss_finite", "error") if k in run} for run in runs
        }}
        name = f"training_{args.preset}"
    path = write_json(name, payload)
    print(f"wrote {path}")
    failed = [r for r in payload.get("results", [payload.get("result")]) if "error" in r or not r.get("loss_finite")]
    if failed:
        sys.exit(f"{name}: {len(failed)} run(s) failed or had a non-finite loss: {failed}")
    return payload


if __name__ == "__main__":
    main()
