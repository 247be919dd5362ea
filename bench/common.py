"""Shared benchmark plumbing: machine description, isolated timed runs, the training step every
model benchmark times, device rates (GEMM, copy), JSON and PNG output, and the command line.

Output goes to bench/results/, or to $BENCH_RESULTS_DIR when set (the tests use a tmp dir).
Every file is named <name>_<device tag> so CPU and GPU results sit side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import queue as queue_module
import re
import resource
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
RESULTS_ENV = "BENCH_RESULTS_DIR"

# Set by parse_args(--inline): run cases in this process instead of a fresh one each.
_INLINE = False


# ---- where results go -----------------------------------------------------------------------
def results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or RESULTS)


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other jobs on a shared machine make CPU timings noisy
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info |= {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
    return info


def device_tag() -> str:
    if torch.cuda.is_available():
        return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_")
    return "cpu"


def output_path(name: str, suffix: str) -> Path:
    """results_dir()/<name>_<device tag><suffix>, the directory created."""
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}_{device_tag()}{suffix}"


def _finite(value):
    # JSON has no NaN/inf: write them as null
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json(name: str, payload: dict) -> Path:
    path = output_path(name, ".json")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite({"machine": machine(), **payload}), indent=2) + "\n")
    os.replace(tmp, path)
    return path


# ---- timing and memory ----------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mib(field: str) -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def _reset_cpu_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_now_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _rss_mib("VmRSS") or 0.0


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_cpu_peak()


def peak_mib(device: torch.device) -> float:
    """Peak since reset_peak: CUDA allocator, or VmHWM (falling back to the lifetime ru_maxrss)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _rss_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node.children)


def cpu_allocated_peak_mib(fn) -> float:
    """Peak of what torch allocates on the CPU during one call of fn, above what was allocated at
    its start, in MiB (what CUDA's max_memory_allocated gives on a GPU; CPU tensors have no
    allocator statistics).

    fn runs twice under torch.profiler(profile_memory=True) and the second call is read from the
    allocator's events: the profiler sees only frees of blocks allocated while it ran, and the
    first call allocates what the second frees (e.g. the previous step's gradients). Unlike
    peak RSS this does not count what glibc's malloc keeps resident after frees, so it is the
    same on every run.
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
        with record_function("measured call"):
            fn()
    tree = prof.profiler.kineto_results.experimental_event_tree()
    measured = next(node for node in _walk(tree) if node.name == "measured call")
    events = sorted(
        (node for node in _walk(measured.children) if node.tag == _EventType.Allocation), key=lambda node: node.start_time_ns
    )
    if not events:
        return 0.0
    start = events[0].extra_fields.total_allocated - events[0].extra_fields.alloc_size
    return max(0, max(event.extra_fields.total_allocated for event in events) - start) / 2**20


def time_repeated(fn, device: torch.device, warmup: int, repeats: int, allocated: bool = False) -> dict:
    """Wall time of fn() in seconds (median and fastest of `repeats`), and memory in MiB.

    peak_mib: the peak over the timed calls (CUDA allocator, or the process's RSS on CPU);
    peak_extra_mib: that peak less what was resident before the first call (model, inputs and,
    on CPU, the runtime), i.e. what the calls themselves need (activations, gradients, optimiser
    state, workspaces).
    allocated: also report allocated_extra_mib, what torch itself allocates above what it held
    before (CUDA: peak_extra_mib itself; CPU: cpu_allocated_peak_mib, two more calls after the
    timed ones). On CPU peak RSS also holds what malloc keeps after frees: at the CPU preset's
    L=4096 it varied by 10-20 MiB between identical runs, while this figure does not vary.
    """
    device = torch.device(device)
    synchronize(device)
    before = memory_now_mib(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    reset_peak(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = peak_mib(device)
    result = {
        "seconds": statistics.median(times),
        "min_seconds": min(times),
        "peak_mib": round(peak, 1),
        "peak_extra_mib": round(max(peak - before, 0.0), 1),
        "repeats": repeats,
    }
    if allocated:
        result["allocated_extra_mib"] = result["peak_extra_mib"] if device.type == "cuda" else round(cpu_allocated_peak_mib(fn), 1)
    return result


def _run_case(fn, args) -> dict:
    try:
        return fn(*args)
    except torch.cuda.OutOfMemoryError:
        return {"error": "oom"}
    except Exception as error:  # report and keep benchmarking the other cases
        return {"error": f"{type(error).__name__}: {error}"}


def _child(queue, fn, args):
    queue.put(_run_case(fn, args))


def isolated(fn, *args) -> dict:
    """Run fn(*args) in a fresh process so each case's peak memory is its own.

    An exception in the case comes back as {"error": ...}; CUDA out-of-memory as
    {"error": "oom"}; a child that dies without answering (e.g. the kernel's OOM killer) as
    {"error": "process exited with code N"}. With --inline, fn runs here instead.
    """
    if _INLINE:
        return _run_case(fn, args)
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, fn, args))
    process.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not process.is_alive():
                result = {"error": f"process exited with code {process.exitcode} without a result"}
                break
    process.join()
    return result


def fastest(timing: dict) -> float | None:
    """The time ratios are taken from: the fastest repeat (other jobs on a shared machine only
    ever add time, so the minimum is the least noisy estimate; on a quiet GPU it is ~ the median)."""
    return timing.get("min_seconds")


def side_by_side(cases: dict, rounds: int = 1, key=None) -> dict:
    """Run the alternatives of one comparison, each isolated, round-robin (A B A B ...) for
    `rounds` rounds, and keep for each the round whose time key(result) is smallest.

    cases: {name: (fn, *args)}; key: result -> seconds (default: fastest(result)); results
    without a time (errors) are kept only when no round gave one. Load from other jobs that
    comes and goes then falls on both alternatives alike instead of on whichever ran during it.
    """
    key = key or fastest
    best: dict = {}
    for _ in range(rounds):
        for name, (fn, *args) in cases.items():
            result = isolated(fn, *args)
            seconds, held = key(result), best.get(name)
            if held is None or (seconds is not None and (key(held) is None or seconds < key(held))):
                best[name] = result
    rounds_run = {"rounds": rounds}
    return {name: result | rounds_run if isinstance(result, dict) else result for name, result in best.items()}


def ratio(numerator, denominator) -> float | None:
    """numerator / denominator rounded to 3 significant digits; None when either is missing."""
    if not isinstance(numerator, (int, float)) or not isinstance(denominator, (int, float)) or denominator == 0:
        return None
    return float(f"{numerator / denominator:.3g}")


# ---- the measured workloads shared by several scripts ----------------------------------------
ATTENTION_BACKENDS = ("auto", "math")


def train_step_case(
    model_name: str, size: dict, device: str, autocast: bool = False, backend: str = "auto", attention: str = "auto"
) -> dict:
    """One training step (forward, cross-entropy, backward, AdamW step) timed at `size`, with
    time_repeated's allocated_extra_mib.

    size: batch, length, d_input, d_model, n_layers, warmup, repeats. With autocast the
    forward runs under torch.autocast(bfloat16): the linears in bf16, while the S4 layer turns
    autocast off around its kernel and FFT convolution (they stay fp32). `backend` is ViS4mer's
    Cauchy kernel backend ("auto": the CUDA extension on GPU, torch on CPU). `attention` is the
    Transformer's SDPA backend: "auto" (PyTorch's choice: flash or memory-efficient kernels,
    linear memory in L) or "math" (softmax(QKᵀ)V, which materialises the L×L matrix, as the
    attention the paper compared with did).
    """
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from vis4mer import build_model, build_optimizer
    from vis4mer.kernels import select_cauchy_backend

    if attention not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {attention!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")

    torch.manual_seed(0)
    dev = torch.device(device)
    batch, length = size["batch"], size["length"]
    extra = {"backend": backend} if model_name == "vis4mer" else {}
    model = build_model(model_name, size["d_input"], length, 10, size["d_model"], size["n_layers"], dropout=0.0, **extra).to(dev)
    optimizer = build_optimizer(model)
    x = torch.randn(batch, length, size["d_input"], device=dev)
    target = torch.randint(0, 10, (batch,), device=dev)

    attention_context = (lambda: sdpa_kernel([SDPBackend.MATH])) if attention == "math" else contextlib.nullcontext

    def step():
        optimizer.zero_grad(set_to_none=True)
        with attention_context():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(x)
            F.cross_entropy(logits.float(), target).backward()
        optimizer.step()

    result = {"model": model_name, "length": length, "autocast_bf16": autocast}
    if model_name == "vis4mer":
        result["cauchy_backend"] = select_cauchy_backend(backend, dev, torch.complex64).name
    if model_name == "transformer":
        result["attention"] = attention
    return result | time_repeated(step, dev, size["warmup"], size["repeats"], allocated=True)


def matmul_rate(device: str, dtype: str, n: int, repeats: int) -> dict:
    """FLOP/s of an n×n×n GEMM (2n³ flops) in `dtype` ("float32" or "bfloat16").

    On CUDA, float32 is true fp32 unless TF32 is enabled (recorded as allow_tf32).
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, device=dev, dtype=getattr(torch, dtype))
    timing = time_repeated(lambda: torch.mm(a, b), dev, warmup=1, repeats=repeats)
    result = {"dtype": dtype, "n": n, "flop_per_s": 2 * n**3 / fastest(timing), "min_seconds": fastest(timing)}
    if dev.type == "cuda":
        result["allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return result


def copy_bandwidth(device: str, mib: int, repeats: int) -> dict:
    """Bytes/s of a large tensor copy, counting the read and the write (2 × size per copy)."""
    dev = torch.device(device)
    src = torch.ones(mib * 2**20 // 4, device=dev)
    dst = torch.empty_like(src)
    timing = time_repeated(lambda: dst.copy_(src), dev, warmup=1, repeats=repeats)
    return {"mib": mib, "bytes_per_s": 2 * src.numel() * 4 / fastest(timing), "min_seconds": fastest(timing)}


# ---- plots ----------------------------------------------------------------------------------
def _figure(panels: int, title: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2 * panels, 4.0))
    axes = [figure.add_subplot(1, panels, i + 1) for i in range(panels)]
    if title:
        figure.suptitle(title)
    return figure, axes


def save_figure(name: str, figure) -> Path:
    """Write `figure` as results_dir()/<name>_<device tag>.png (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    path = output_path(name, ".png")
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.png")
    figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def plot_lines(name: str, panels: list[dict], title: str = "") -> Path:
    """One panel per dict: xlabel, ylabel, series {label: (xs, ys)} (None ys are skipped),
    optional log (log-log axes, default True), xticks (labelled as plain numbers) and notes
    [(x, y, text)] written at points."""
    figure, axes = _figure(len(panels), title)
    for axis, panel in zip(axes, panels):
        for label, (xs, ys) in panel["series"].items():
            points = [(x, y) for x, y in zip(xs, ys) if isinstance(y, (int, float))]
            if points:
                axis.plot(*zip(*points), "o-", label=label)
        for x, y, text in panel.get("notes", []):
            axis.annotate(text, (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        if panel.get("log", True):
            axis.set_xscale("log")
            axis.set_yscale("log")
        if panel.get("xticks"):
            from matplotlib.ticker import NullLocator

            axis.set_xticks(panel["xticks"], labels=[str(x) for x in panel["xticks"]])
            axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xlabel(panel["xlabel"])
        axis.set_ylabel(panel["ylabel"])
        if panel.get("title"):
            axis.set_title(panel["title"])
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    return save_figure(name, figure)


def plot_bars(name: str, panels: list[dict], title: str = "") -> Path:
    """One horizontal bar chart per dict: xlabel, bars {label: value} (None values are shown as
    "n/a"), optional title, log (log x axis) and reference (a vertical line, e.g. 1 for ratios)."""
    figure, axes = _figure(len(panels), title)
    for axis, panel in zip(axes, panels):
        labels = list(panel["bars"])
        values = [panel["bars"][label] for label in labels]
        heights = [value if isinstance(value, (int, float)) else 0 for value in values]
        axis.barh(range(len(labels)), heights, color="tab:blue")
        axis.set_yticks(range(len(labels)), labels=labels, fontsize=8)
        axis.invert_yaxis()
        for i, value in enumerate(values):
            text = f"{value:.3g}" if isinstance(value, (int, float)) else "n/a"
            axis.annotate(text, (heights[i], i), textcoords="offset points", xytext=(3, 0), va="center", fontsize=8)
        if panel.get("log"):
            axis.set_xscale("log")
        if panel.get("reference") is not None:
            axis.axvline(panel["reference"], color="black", linewidth=1, linestyle=":")
        axis.set_xlabel(panel["xlabel"])
        if panel.get("title"):
            axis.set_title(panel["title"], fontsize=10)
        axis.grid(True, axis="x", alpha=0.3)
    return save_figure(name, figure)


# ---- command line ---------------------------------------------------------------------------
def set_threads(threads: int) -> None:
    """Use `threads` CPU threads here and in every case process started after this (spawned
    children read OMP_NUM_THREADS at start-up; torch and keops' OpenMP code both honour it)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def parts_argument(parts: tuple[str, ...]):
    """An add_arguments for parse_args: --parts, a comma-separated subset of `parts` to run
    (default: all of them), e.g. only what a machine without video decoders can run."""

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = sorted(set(chosen) - set(parts))
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"--parts takes a comma-separated subset of {', '.join(parts)}; got {text!r}")
        return [part for part in parts if part in chosen]

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--parts", type=parse, default=list(parts), help=f"comma-separated subset of {','.join(parts)} (default: all)")

    return add


def parse_args(doc: str, presets: dict, argv: list[str] | None = None, add_arguments=None) -> tuple[argparse.Namespace, dict]:
    """--preset (default cpu), --device (default cuda when available), --threads and --inline,
    and whatever add_arguments(parser) adds; returns (args, the preset's dict).

    --threads: CPU threads for every case; default 1 on CPU. On a machine shared with other
    jobs a multi-threaded run waits at each OpenMP barrier for whichever thread another job has
    descheduled. The CPU-preset ViS4mer step at L=256 (2 cores): 0.017 s idle; with one core
    kept busy, 0.037 s on 2 threads and 0.019 s on 1; during a `make bench` beside other jobs,
    1.6 s on 2 threads. 0 keeps torch's default.
    --inline runs each case in this process (fast, for tests; peak memory is then reset between
    cases but the process is shared).
    """
    global _INLINE
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=presets, default="cpu")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per case (default: 1 on CPU; 0: torch's default)")
    parser.add_argument("--inline", action="store_true", help="run every case in this process (no isolation)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.device == "cpu" else 0
    if args.threads > 0:
        set_threads(args.threads)
    _INLINE = args.inline
    return args, presets[args.preset]
