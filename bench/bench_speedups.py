"""Where the speed comes from: four choices, each measured side by side against the
alternative in one run and reported as a ratio (> 1: our choice is faster or smaller).

  autocast  ViS4mer training step with torch.autocast(bfloat16) (linears in bf16; the S4 layer
            keeps its kernel and FFT convolution in fp32) vs plain fp32.
  fft       the S4 convolution irfft(rfft(u, n) · rfft(k, n), n) on the [B, H, L] shapes of
            ViS4mer's three layers, at n = 2L (at LVU length 2L = 23640 = 2³·3·5·197, a
            factor 197 that FFT libraries handle slowly) vs n = scipy.fft.next_fast_len(2L-1).
  cauchy    the S4 kernel's Cauchy sum (forward + backward) at the first layer's shape:
            CUDA extension vs pykeops vs torch (bench_cauchy's case; CPU: keops vs torch).
  storage   reading batches of windows [B, 60·197, 1024] (60 s at 1 fps, 197 ViT tokens)
            into float32 tensors from HDF5 stored as fp16 vs fp64, cold (page cache dropped
            for the file) and warm; throughput and file size.

    python bench/bench_speedups.py --preset lvu   # B=16, d_model=1024, L=11820, 64 videos (GPU)
    python bench/bench_speedups.py --preset cpu   # B=2, d_model=128, L=4096, 6 videos
    python bench/bench_speedups.py --preset lvu --parts fft   # only the FFT lengths
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.fft import next_fast_len

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cauchy  # noqa: E402
from bench_model import backends  # noqa: E402
from common import fastest, parse_args, parts_argument, plot_bars, ratio, side_by_side, time_repeated, train_step_case, write_json  # noqa: E402

LVU_LENGTH = 11820
PARTS = ("autocast", "fft", "cauchy", "storage")
PRESETS = {
    "lvu": dict(
        step=dict(batch=16, d_input=1024, d_model=1024, n_layers=3, length=LVU_LENGTH, warmup=2, repeats=5),
        # fft on an H100/H200: 6 processes (~4 s each to start) of ~0.1 s of FFTs: ~30 s for --parts fft
        fft=dict(shapes=[(16, 1024, 11820), (16, 512, 5910), (16, 256, 2955)], warmup=2, repeats=10),
        cauchy=dict(heads=1024, length=11820, d_state=64, warmup=2, repeats=5),
        storage=dict(videos=64, frames=60, tokens=197, dim=1024, batch=16),
        rounds=1,
    ),
    "cpu": dict(
        step=dict(batch=2, d_input=128, d_model=128, n_layers=3, length=4096, warmup=1, repeats=3),
        fft=dict(shapes=[(2, 128, 11820), (2, 64, 5910), (2, 32, 2955)], warmup=1, repeats=5),
        cauchy=dict(heads=256, length=2955, d_state=64, warmup=1, repeats=3),
        storage=dict(videos=6, frames=60, tokens=197, dim=1024, batch=2),
        rounds=2,  # alternatives run round-robin, the fastest round kept: other jobs share this CPU
    ),
    "tiny": dict(
        step=dict(batch=1, d_input=16, d_model=16, n_layers=2, length=64, warmup=0, repeats=1),
        fft=dict(shapes=[(1, 4, 99)], warmup=0, repeats=1),
        cauchy=dict(heads=4, length=64, d_state=8, warmup=0, repeats=1),
        storage=dict(videos=2, frames=3, tokens=5, dim=16, batch=1),
        rounds=1,
    ),
}


def prime_factors(n: int) -> list[int]:
    """Prime factors of n with multiplicity, ascending (23640 -> [2, 2, 2, 3, 5, 197])."""
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors + ([n] if n > 1 else [])


def fft_lengths(length: int) -> dict:
    """FFT sizes for a linear convolution of two length-L signals: the naive 2L and the fast
    size the S4 layer uses, the smallest 5-smooth (2^a 3^b 5^c) n >= 2L - 1."""
    naive, fast = 2 * length, next_fast_len(2 * length - 1, real=True)
    return {"naive": naive, "fast": fast, "naive_factors": prime_factors(naive), "fast_factors": prime_factors(fast)}


# ---- FFT length ------------------------------------------------------------------------------
def fft_case(batch: int, heads: int, length: int, n_fft: int, device: str, warmup: int, repeats: int) -> dict:
    dev = torch.device(device)
    torch.manual_seed(0)
    u = torch.randn(batch, heads, length, device=dev, requires_grad=True)
    k = torch.randn(heads, length, device=dev, requires_grad=True)

    def convolution():
        return torch.fft.irfft(torch.fft.rfft(u, n=n_fft) * torch.fft.rfft(k, n=n_fft), n=n_fft)[..., :length]

    def forward():
        with torch.no_grad():
            convolution()

    def forward_backward():
        torch.autograd.grad(convolution().sum(), (u, k))

    return {
        "n_fft": n_fft,
        "forward": time_repeated(forward, dev, warmup, repeats),
        "forward_backward": time_repeated(forward_backward, dev, warmup, repeats),
    }


def measure_fft(preset: dict, device: str, rounds: int) -> list[dict]:
    rows = []
    for batch, heads, length in preset["shapes"]:
        sizes = fft_lengths(length)
        row = {"shape": [batch, heads, length], **sizes}
        cases = {
            which + "_timing": (fft_case, batch, heads, length, sizes[which], device, preset["warmup"], preset["repeats"])
            for which in ("naive", "fast")
        }
        row |= side_by_side(cases, rounds, key=lambda r: fastest(r.get("forward_backward", {})))
        for phase in ("forward", "forward_backward"):
            row[f"{phase}_ratio"] = ratio(fastest(row["naive_timing"].get(phase, {})), fastest(row["fast_timing"].get(phase, {})))
        print("fft", row, flush=True)
        rows.append(row)
    return rows


# ---- bf16 autocast ----------------------------------------------------------------------------
def measure_autocast(size: dict, device: str, rounds: int) -> dict:
    cases = {precision: (train_step_case, "vis4mer", size, device, precision == "bf16") for precision in ("fp32", "bf16")}
    fp32, bf16 = side_by_side(cases, rounds).values()
    result = {
        "fp32": fp32,
        "bf16_autocast": bf16,
        "time_ratio": ratio(fastest(fp32), fastest(bf16)),
        "memory_ratio": ratio(fp32.get("peak_extra_mib"), bf16.get("peak_extra_mib")),
    }
    print("autocast", result, flush=True)
    return result


# ---- Cauchy backends --------------------------------------------------------------------------
def measure_cauchy(preset: dict, device: str, rounds: int) -> dict:
    cases = {
        name: (bench_cauchy._case, name, preset["heads"], preset["length"], preset["d_state"], device, preset["warmup"], preset["repeats"])
        for name in backends(device)
    }
    timings = side_by_side(cases, rounds, key=lambda r: fastest(r.get("forward_backward", {})))
    seconds = {name: fastest(timing.get("forward_backward", {})) for name, timing in timings.items()}
    ratios = {
        f"{slow}/{fast}": ratio(seconds[slow], seconds[fast])
        for slow, fast in [("torch", "keops"), ("torch", "cuda"), ("keops", "cuda")]
        if slow in seconds and fast in seconds
    }
    result = {"shape": {k: preset[k] for k in ("heads", "length", "d_state")}, "backends": timings, "forward_backward_ratios": ratios}
    print("cauchy", result, flush=True)
    return result


# ---- fp16 vs fp64 feature storage ---------------------------------------------------------------
def _drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def storage_case(dtype: str, preset: dict, directory: str) -> dict:
    """Write `videos` windows [frames, tokens, dim] in `dtype`, then read them back in batches of
    `batch` as float32 [B, frames·tokens, dim] tensors, cold and warm."""
    import h5py

    path = Path(directory) / f"features_{dtype}.h5"
    shape = (preset["frames"], preset["tokens"], preset["dim"])
    window = np.random.default_rng(0).standard_normal(shape, dtype=np.float32).astype(dtype)
    keys = [f"{i:04d}" for i in range(preset["videos"])]
    with h5py.File(path, "w") as handle:
        for key in keys:
            handle.create_dataset(key, data=window)
    _drop_from_page_cache(path)

    def read_all() -> float:
        start = time.perf_counter()
        with h5py.File(path, "r") as handle:
            for first in range(0, len(keys), preset["batch"]):
                arrays = [handle[key][()] for key in keys[first : first + preset["batch"]]]
                batch = torch.from_numpy(np.stack(arrays)).reshape(len(arrays), -1, preset["dim"]).float()
                assert batch.dtype == torch.float32
        return time.perf_counter() - start

    cold = read_all()
    warm = read_all()
    size = path.stat().st_size
    path.unlink()
    batches = -(-len(keys) // preset["batch"])
    return {
        "dtype": dtype,
        "file_bytes": size,
        "cold_seconds_per_batch": cold / batches,
        "warm_seconds_per_batch": warm / batches,
        "cold_file_bytes_per_s": size / cold,
        "cold_windows_per_s": len(keys) / cold,
        "warm_windows_per_s": len(keys) / warm,
    }


def measure_storage(preset: dict, rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_storage_") as directory:
        cases = {dtype: (storage_case, dtype, preset, directory) for dtype in ("float16", "float64")}
        fp16, fp64 = side_by_side(cases, rounds, key=lambda r: r.get("cold_seconds_per_batch")).values()
    result = {
        "layout": preset,
        "float16": fp16,
        "float64": fp64,
        "cold_read_ratio": ratio(fp64.get("cold_seconds_per_batch"), fp16.get("cold_seconds_per_batch")),
        "warm_read_ratio": ratio(fp64.get("warm_seconds_per_batch"), fp16.get("warm_seconds_per_batch")),
        "file_size_ratio": ratio(fp64.get("file_bytes"), fp16.get("file_bytes")),
    }
    print("storage", result, flush=True)
    return result


def headline_bars(results: dict) -> dict:
    """The ratios of the parts that ran, one bar each (> 1: our choice is better)."""
    bars = {}
    if "autocast" in results:
        bars["bf16 autocast vs fp32: step time"] = results["autocast"]["time_ratio"]
        bars["bf16 autocast vs fp32: step memory"] = results["autocast"]["memory_ratio"]
    if "fft" in results:
        first_fft = results["fft"][0]
        bars[f"FFT n={first_fft['fast']} vs {first_fft['naive']}: fwd+bwd"] = first_fft["forward_backward_ratio"]
    if "cauchy" in results:
        bars |= {f"Cauchy {pair}: fwd+bwd": value for pair, value in results["cauchy"]["forward_backward_ratios"].items()}
    if "storage" in results:
        bars["fp16 vs fp64 HDF5: cold read"] = results["storage"]["cold_read_ratio"]
        bars["fp16 vs fp64 HDF5: warm read"] = results["storage"]["warm_read_ratio"]
        bars["fp16 vs fp64 HDF5: file size"] = results["storage"]["file_size_ratio"]
    return bars


def main(argv: list[str] | None = None) -> dict:
    args, preset = parse_args(__doc__, PRESETS, argv, parts_argument(PARTS))
    measures = {
        "autocast": lambda: measure_autocast(preset["step"], args.device, preset["rounds"]),
        "fft": lambda: measure_fft(preset["fft"], args.device, preset["rounds"]),
        "cauchy": lambda: measure_cauchy(preset["cauchy"], args.device, preset["rounds"]),
        "storage": lambda: measure_storage(preset["storage"], preset["rounds"]),
    }
    results = {part: measures[part]() for part in args.parts}
    bars = headline_bars(results)
    name = f"speedups_{args.preset}"
    payload = {"preset": args.preset, "device": args.device, "parts": args.parts, "size": preset, "results": results, "headline": bars}
    path = write_json(name, payload)
    panel = dict(xlabel="ratio (alternative / ours; > 1 means ours is better)", bars=bars, log=True, reference=1)
    print(f"wrote {path} and {plot_bars(name, [panel], f'Where the speed comes from ({args.device}, preset {args.preset})')}")
    return payload


if __name__ == "__main__":
    main()
