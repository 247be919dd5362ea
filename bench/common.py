"""Shared benchmark plumbing: machine description, isolated timed runs, atomic JSON output."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info |= {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
    return info


def device_tag() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name().replace(" ", "_").lower()
    return "cpu"


def time_repeated(fn, device: torch.device, warmup: int, repeats: int) -> dict:
    """Median wall time of fn() in seconds, and peak memory (CUDA allocator or process RSS) in MiB."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    )
    return {"seconds": statistics.median(times), "peak_mib": round(peak, 1), "repeats": repeats}


def _child(queue, fn, args):
    try:
        queue.put(fn(*args))
    except Exception as error:  # report and keep benchmarking the other cases
        queue.put({"error": f"{type(error).__name__}: {error}"})


def isolated(fn, *args) -> dict:
    """Run fn(*args) in a fresh process so each case's peak memory is its own."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, fn, args))
    process.start()
    result = queue.get()
    process.join()
    return result


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}_{device_tag()}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    os.replace(tmp, path)
    return path
