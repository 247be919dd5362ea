"""The prepared GPU check (issue 18), run by bench/gpu_check.sh and `make gpu-check`.

On a machine with one CUDA device (an H100/H200) whose `python3` has a CUDA torch (>= 2.11)
but no package index: installs the wheels that travel with the working tree (.whl/, made by
`make gpu-wheels`), then runs in order, each step timed, its output kept in the log folder,
going on past a failing step:

    environment     GPU name, memory, driver, torch/CUDA versions
    wheels          the missing wheels of .whl/ installed into a scratch folder
    keops           the Cauchy sum through pykeops on the GPU vs the torch reference (when it
                    fails, the benchmarks run without keops)
    cuda_build      the CUDA Cauchy extension (python -m vis4mer.kernels.cauchy_cuda --build)
    gpu_tests       the @gpu tests: extension vs float64 forward and both gradients, odd L, S4 layer
    bench_cauchy    \\
    bench_model      } at the lvu preset (B=16, d_model=1024, L up to 11820)
    bench_floor      }
    bench_scaling   /
    fft_lengths     bench_speedups --parts fft: n=2L vs the fast length at the three layer sizes
    vit_bf16        bench_extraction --parts vit: ViT-L/16 frames/s in bf16, batch 256, vs the bf16 roofline
    training        bench_training: 30 steps of the project's training loop at LVU size on HDF5
                    shards, without and with the feature cache when this tree has it
    torchrun_nccl   bench_training --torchrun: DDP under torchrun on one process (NCCL)

then prints a table (step, pass/fail/skip, seconds, headline figure) and writes
<results>/gpu_check_<device tag>.json beside the benchmarks' own JSON (bench/results/ by
default), and <log folder>/summary.md, the README's benchmark rows of this device
(bench/summary.py); --archive packs the logs and this run's results into one .tar.gz.
Each step has a timeout and the whole check a budget (--budget, 480 s: 8 minutes), so one
hang cannot eat the machine's time; a step whose time is gone is skipped, saying so.

--cpu-dry-run runs the same steps on CPU at the tiny presets (in-process cases), skipping
what needs CUDA with the reason, with the results in <log folder>/results unless
$BENCH_RESULTS_DIR says otherwise. GPU_CHECK_FAIL=step[,step] makes those steps fail (to
check that a failing step does not stop the later ones).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
FAIL_ENV = "GPU_CHECK_FAIL"
BUDGET_S = 480  # 8 minutes on one H100/H200
PASS, FAIL, SKIP = "pass", "fail", "skip"

# The environment step: the bench scripts' own machine description and device tag, plus
# what the GPU check needs to know about the device. Prints one JSON line.
ENVIRONMENT_PROBE = r"""
import json, shutil, subprocess, sys
sys.path.insert(0, "bench")
import torch
from common import device_tag, machine

def run(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None

info = machine() | {"device_tag": device_tag(), "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info |= {"gpu_memory_gib": round(props.total_memory / 2**30, 1), "capability": list(torch.cuda.get_device_capability(0)),
             "multiprocessors": props.multi_processor_count, "gpus_visible": torch.cuda.device_count()}
    smi = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    info["driver"] = smi.splitlines()[0] if smi else None
nvcc = run(["nvcc", "--version"])
info["nvcc"] = next((line for line in nvcc.splitlines() if "release" in line), nvcc) if nvcc else None
try:
    info["dev_shm_free_gib"] = round(shutil.disk_usage("/dev/shm").free / 2**30, 1)
except OSError:
    info["dev_shm_free_gib"] = None
print(json.dumps(info))
"""

# The keops step: the Cauchy sum through pykeops on the GPU, forward and both gradients against
# the torch reference (compiling the three formulas the benchmarks use, once for all of them).
KEOPS_PROBE = r"""
import math, time
import torch
import pykeops
from vis4mer.kernels import cauchy_conj, select_cauchy_backend

start, dev = time.perf_counter(), torch.device("cuda")
torch.manual_seed(0)
v = torch.randn(4, 8, 32, dtype=torch.complex64, device=dev, requires_grad=True)
w = ((1.001 + torch.rand(8, 32, device=dev)) * torch.exp(2j * math.pi * torch.rand(8, 32, device=dev))).to(torch.complex64).requires_grad_()
z = torch.exp(-2j * math.pi * torch.arange(51, device=dev) / 100).to(torch.complex64)
outputs = {}
for name in ("keops", "torch"):
    r = cauchy_conj(v, z, w, select_cauchy_backend(name, dev, torch.complex64))
    outputs[name] = (r, *torch.autograd.grad(r.real.sum() + r.imag.sum(), (v, w)))
error = max(float((a - b).detach().norm() / b.detach().norm()) for a, b in zip(outputs["keops"], outputs["torch"]))
print(f"pykeops {pykeops.__version__} on cuda: forward and both gradients within {error:.1e} of the torch reference, "
      f"{time.perf_counter() - start:.0f} s with its compile")
assert error < 1e-4, error
"""


@dataclass
class Context:
    """What the steps share: the interpreter, the mode, the folders and what earlier steps found."""

    python: str
    dry_run: bool
    log_dir: Path
    results: Path
    scratch: Path
    wheels: Path
    env: dict[str, str]
    machine: dict = field(default_factory=dict)
    step_started: float = 0.0  # time.time() at the start of the running step
    site_packages: str | None = None  # where the wheels step installs (on PYTHONPATH from then on)

    @property
    def preset(self) -> str:
        return "tiny" if self.dry_run else "lvu"

    @property
    def tag(self) -> str:
        return self.machine.get("device_tag", "unknown")

    def bench(self, script: str, *extra: str) -> list[str]:
        """The command of a bench script at this mode's preset (the dry run: in this process, on CPU)."""
        args = ["--preset", self.preset] + (["--device", "cpu", "--inline"] if self.dry_run else [])
        return [self.python, str(BENCH / script), *args, *extra]

    def result(self, name: str) -> dict | None:
        """The JSON a bench script wrote for this preset and device during the running step, or
        None (an older file, e.g. of an earlier check, is not this step's result)."""
        path = self.results / f"{name}_{self.preset}_{self.tag}.json"
        if not path.exists() or path.stat().st_mtime < self.step_started - 1:
            return None
        return json.loads(path.read_text())


@dataclass
class Step:
    name: str
    # the command, or a str: the reason the step is skipped
    command: Callable[[Context], list[str] | str]
    expected_s: int  # on an H100/H200, estimated (nothing of it has run on one yet)
    timeout_s: int  # on the GPU, about twice expected_s; the dry run gets DRY_RUN_TIMEOUT_S
    headline: Callable[[Context, str], str] = lambda ctx, log: ""
    # outside the dry run, every other step is skipped when the environment step saw no CUDA device
    without_cuda: bool = False


@dataclass
class Outcome:
    step: str
    status: str
    seconds: float = 0.0
    headline: str = ""
    reason: str = ""
    returncode: int | None = None
    timeout_s: float | None = None
    expected_s: float | None = None
    log: str | None = None


# ---- headline figures, read from each step's JSON or log ---------------------------------------
def _n(value, unit: str = "") -> str:
    return f"{value:.3g}{unit}" if isinstance(value, (int, float)) else "n/a"


def _seconds(timing: dict | None) -> str:
    if not isinstance(timing, dict):
        return "n/a"
    if "error" in timing:
        return timing["error"][:40]
    value = timing.get("min_seconds")
    return _n(value * 1e3, " ms") if isinstance(value, (int, float)) and value < 1 else _n(value, " s")


def _gib(mib) -> str:
    return _n(mib / 1024, " GiB") if isinstance(mib, (int, float)) else "n/a"


def last_line(log: str, pattern: str = r".") -> str:
    lines = [line.strip() for line in log.splitlines() if re.search(pattern, line)]
    return lines[-1][:120] if lines else ""


def environment_headline(ctx: Context, log: str) -> str:
    m = ctx.machine
    if not m:
        return ""
    device = f"{m.get('gpu')}, {m.get('gpu_memory_gib')} GiB, driver {m.get('driver')}" if m.get("cuda_available") else "no CUDA device"
    return f"{device}; torch {m.get('torch')} (CUDA {m.get('torch_cuda')}), python {m.get('python')}"


def cauchy_headline(ctx: Context, log: str) -> str:
    data = ctx.result("cauchy")
    if not data:
        return "no JSON"
    first = data["results"][0]
    parts = [f"{r['backend']} {_seconds(r.get('forward_backward'))}" for r in data["results"] if r.get("H") == first.get("H")]
    return f"fwd+bwd H={first.get('H')} L={first.get('L')}: " + ", ".join(parts)


def model_headline(ctx: Context, log: str) -> str:
    data = ctx.result("model")
    if not data:
        return "no JSON"
    rows = [r for r in data["results"] if r["case"] in ("vis4mer", "transformer")]
    return "; ".join(f"{r['case']} ({r['backend']}) {_seconds(r)}, {_gib(r.get('peak_extra_mib'))}" for r in rows)


def floor_headline(ctx: Context, log: str) -> str:
    data = ctx.result("floor")
    if not data:
        return "no JSON"
    multiples = data["measured_over_floor"]
    return "measured / floor: " + (", ".join(f"{k} {_n(v, '×')}" for k, v in multiples.items()) or "n/a")


def scaling_headline(ctx: Context, log: str) -> str:
    data = ctx.result("scaling")
    if not data:
        return "no JSON"
    head, longest = data["headline"], data["results"][-1]
    lxl = longest.get("transformer_lxl", {})
    lxl_text = lxl["error"] if "error" in lxl else f"time {_n(head.get('time_ratio_lxl'), '×')}"
    return (f"L={head['length']}: Transformer/ViS4mer time {_n(head.get('time_ratio'), '×')}, "
            f"memory {_n(head.get('memory_ratio'), '×')}; L×L: {lxl_text}")


def fft_headline(ctx: Context, log: str) -> str:
    data = ctx.result("speedups")
    if not data or "fft" not in data["results"]:
        return "no JSON"
    return "fwd+bwd n=2L / fast n: " + ", ".join(
        f"L={row['shape'][2]} {_n(row['forward_backward_ratio'], '×')}" for row in data["results"]["fft"]
    )


def vit_headline(ctx: Context, log: str) -> str:
    data = ctx.result("extraction")
    if not data or "vit" not in data:
        return "no JSON"
    head, vit = data["headline"], data["vit"]
    precision = "bf16" if vit.get("autocast_bf16") else "fp32"
    return (f"{_n(head.get('vit_frames_per_s'))} frames/s ({precision}, batch {vit.get('batch')}) = "
            f"{_n(head.get('vit_fraction_of_roofline'))} of the {precision} roofline ({_n(head.get('vit_roofline_frames_per_s'))})")


def training_headline(ctx: Context, log: str) -> str:
    data = ctx.result("training")
    if not data:
        return "no JSON"
    runs = []
    for run in data["results"]:
        if "error" in run:
            runs.append(f"cache {run['feature_cache']}: {run['error'][:40]}")
        else:
            finite = "loss finite" if run.get("loss_finite") else "LOSS NOT FINITE"
            runs.append(f"cache {run['feature_cache']}: {_n(run.get('step_seconds'), ' s')}/step, {_gib(run.get('peak_mib'))}, {finite}")
    if data.get("feature_cache_option") == "not in this tree":
        runs.append("no feature cache in this tree")
    return "; ".join(runs)


def torchrun_headline(ctx: Context, log: str) -> str:
    data = ctx.result("ddp")
    logged = last_line(log, r"joined the process group")
    backend = re.search(r"backend (\w+)", logged)
    if not data:
        return f"no JSON; {logged}" if logged else "no JSON"
    result = data["result"]
    if "error" in result:
        return result["error"][:80]
    finite = "loss finite" if result.get("loss_finite") else "LOSS NOT FINITE"
    return f"backend {backend.group(1) if backend else 'not logged'}, 1 process, {finite}, {_n(result.get('wall_seconds'), ' s')}"


# ---- the steps ---------------------------------------------------------------------------
def _needs_cuda(command):
    return lambda ctx: "needs CUDA (dry run on CPU)" if ctx.dry_run else command(ctx)


def _wheels_command(ctx: Context) -> list[str] | str:
    wheels = sorted(ctx.wheels.glob("*.whl")) if ctx.wheels.is_dir() else []
    if not wheels:
        return f"no wheels in {ctx.wheels} (make gpu-wheels prepares them)"
    site = ctx.scratch / "site"
    # install only what the interpreter lacks; then the later steps see `site` on PYTHONPATH
    script = (
        "import importlib.metadata as m, subprocess, sys\n"
        "site, wheels = sys.argv[1], sys.argv[2:]\n"
        "def installed(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "missing = []\n"
        "for wheel in wheels:\n"
        "    name, version = wheel.rsplit('/', 1)[-1].split('-')[:2]\n"
        "    have = installed(name)\n"
        "    print(f'{name} {version}: ' + (f'present ({have})' if have else 'installing'))\n"
        "    if not have:\n"
        "        missing.append(wheel)\n"
        "if missing:\n"
        "    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile',\n"
        "                    '--no-cache-dir', '--target', site, *missing], check=True)\n"
        "print(f'installed {len(missing)} of {len(wheels)} wheels into {site}')\n"
    )
    ctx.site_packages = str(site)
    ctx.env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return [ctx.python, "-c", script, str(site), *map(str, wheels)]


# Expected seconds on an H100/H200 (estimates: a benchmark case is a fresh process, ~3-4 s to
# import torch and start CUDA, so the process counts dominate): ~460 s in all, inside BUDGET_S.
STEPS = [
    Step("environment", lambda ctx: [ctx.python, "-c", ENVIRONMENT_PROBE], 5, 60, environment_headline, without_cuda=True),
    Step("wheels", _wheels_command, 5, 60, lambda ctx, log: last_line(log, r"installed \d+ of"), without_cuda=True),
    Step("keops", lambda ctx: "keops on CPU: bench_cauchy and bench_model run it" if ctx.dry_run else [ctx.python, "-c", KEOPS_PROBE],
         30, 120, lambda ctx, log: last_line(log, r"^pykeops .* on cuda")),
    Step("cuda_build", _needs_cuda(lambda ctx: [ctx.python, "-m", "vis4mer.kernels.cauchy_cuda", "--build"]), 60, 180,
         lambda ctx, log: last_line(log, r"vis4mer_cauchy (built|was not built)")),
    Step("gpu_tests", _needs_cuda(lambda ctx: [ctx.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "--timeout=120",
                                               "tests/test_cauchy_cuda.py", "tests/test_s4.py"]), 25, 120,
         lambda ctx, log: last_line(log, r"\d+ (passed|failed|error)")),
    Step("bench_cauchy", lambda ctx: ctx.bench("bench_cauchy.py"), 50, 150, cauchy_headline),  # 9 cases (keops compiled already)
    Step("bench_model", lambda ctx: ctx.bench("bench_model.py"), 50, 120, model_headline),  # 7 cases
    Step("bench_floor", lambda ctx: ctx.bench("bench_floor.py"), 30, 90, floor_headline),  # 5 cases
    Step("bench_scaling", lambda ctx: ctx.bench("bench_scaling.py"), 60, 150, scaling_headline),  # 9 cases
    Step("fft_lengths", lambda ctx: ctx.bench("bench_speedups.py", "--parts", "fft"), 30, 60, fft_headline),  # 6 cases
    Step("vit_bf16", lambda ctx: ctx.bench("bench_extraction.py", "--parts", "vit"), 20, 60, vit_headline),  # 2 cases
    Step("training", lambda ctx: ctx.bench("bench_training.py", "--data", str(ctx.scratch / "training_data")), 70, 150,
         training_headline),  # 2 GB of shards, 2 runs of 30 steps
    Step("torchrun_nccl", lambda ctx: ctx.bench("bench_training.py", "--torchrun", "--data", str(ctx.scratch / "training_data")),
         25, 90, torchrun_headline),  # torchrun's start and 5 steps
]
DRY_RUN_TIMEOUT_S = 120


# ---- running ----------------------------------------------------------------------------
def run_command(command: list[str], log_path: Path, env: dict[str, str], timeout_s: float) -> tuple[int | None, float]:
    """Run `command` in the repository root in its own process group, stdout and stderr into
    `log_path`; (exit status or None when it ran past `timeout_s` and was killed, seconds).
    The whole group is killed at the timeout: SIGTERM, then SIGKILL after 10 s."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            process.wait()
            returncode = None
    return returncode, time.perf_counter() - start


def run_step(step: Step, ctx: Context, deadline: float, failing: set[str]) -> Outcome:
    if not (step.without_cuda or ctx.dry_run or ctx.machine.get("cuda_available")):
        return Outcome(step.name, SKIP, reason="no CUDA device visible (environment step); --cpu-dry-run runs the steps on CPU")
    command = step.command(ctx)
    if isinstance(command, str):
        return Outcome(step.name, SKIP, reason=command)
    if step.name in failing:
        command = [ctx.python, "-c", f"import sys; sys.exit('failure injected by {FAIL_ENV}={step.name}')"]
    timeout_s = min(DRY_RUN_TIMEOUT_S if ctx.dry_run else step.timeout_s, deadline - time.monotonic())
    if timeout_s < 5:
        return Outcome(step.name, SKIP, reason="the check's time budget is spent")
    log_path = ctx.log_dir / f"{step.name}.log"
    ctx.step_started = time.time()
    returncode, seconds = run_command(command, log_path, ctx.env, timeout_s)
    log = log_path.read_text(errors="replace")
    if step.name == "environment" and returncode == 0:
        ctx.machine = json.loads(next(line for line in reversed(log.splitlines()) if line.startswith("{")))
    outcome = Outcome(step.name, PASS if returncode == 0 else FAIL, round(seconds, 1), returncode=returncode,
                      timeout_s=round(timeout_s), expected_s=None if ctx.dry_run else step.expected_s,
                      log=str(log_path.relative_to(ctx.log_dir)))
    if returncode is None:
        outcome.reason = f"timed out after {timeout_s:.0f} s"
    elif returncode:
        outcome.reason = f"exit status {returncode}: {last_line(log)}"
    try:
        outcome.headline = step.headline(ctx, log)
    except Exception as error:  # a headline must never stop the check
        outcome.headline = f"(no headline: {type(error).__name__}: {error})"
    return outcome


def table(outcomes: list[Outcome]) -> str:
    lines = ["| step | result | seconds | headline |", "| --- | --- | --- | --- |"]
    for o in outcomes:
        text = "; ".join(filter(None, [o.headline, o.reason]))
        lines.append(f"| {o.step} | {o.status} | {o.seconds:.1f} | {text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-dry-run", action="store_true", help="the same steps at tiny sizes on CPU, skipping what needs CUDA")
    parser.add_argument("--log-dir", type=Path, default=REPO / "logs" / "gpu_check", help="each step's output (emptied first)")
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl", help="wheels to install when missing (make gpu-wheels)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole check (default: %(default)s)")
    parser.add_argument("--archive", type=Path, default=None, help="also write the logs and this run's results as one .tar.gz")
    args = parser.parse_args(argv)

    started = time.time()
    deadline = time.monotonic() + args.budget
    shutil.rmtree(args.log_dir, ignore_errors=True)
    args.log_dir.mkdir(parents=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lib"), *filter(None, [os.environ.get("PYTHONPATH")])])
    if args.cpu_dry_run and not env.get("BENCH_RESULTS_DIR"):
        env["BENCH_RESULTS_DIR"] = str(args.log_dir / "results")
    if args.cpu_dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU, even on a machine with a GPU
    results = Path(env.get("BENCH_RESULTS_DIR") or BENCH / "results")
    scratch = Path(tempfile.mkdtemp(prefix="vis4mer-gpu-check-"))
    ctx = Context(sys.executable, args.cpu_dry_run, args.log_dir, results, scratch, args.wheels, env)
    failing = set(filter(None, os.environ.get(FAIL_ENV, "").split(",")))

    outcomes = []
    try:
        for step in STEPS:
            print(f"== {step.name} ...", flush=True)
            outcome = run_step(step, ctx, deadline, failing)
            outcomes.append(outcome)
            print(f"== {step.name}: {outcome.status} in {outcome.seconds:.1f} s {outcome.reason}".rstrip(), flush=True)
            if outcome.status == FAIL and outcome.log:  # the reply of a remote run may carry only this output
                tail = (args.log_dir / outcome.log).read_text(errors="replace").splitlines()[-8:]
                print("\n".join(f"   | {line[:200]}" for line in tail), flush=True)
            if step.name == "cuda_build" and outcome.status == FAIL:
                env["VIS4MER_EXT_NO_BUILD"] = "1"  # the benchmarks fall back at once instead of each retrying the build
            if step.name == "keops" and outcome.status == FAIL and ctx.site_packages:
                # the wheels' folder holds only pykeops and keopscore: without it the benchmarks
                # leave keops out instead of failing a case per process on it
                env["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep) if p != ctx.site_packages)
                outcome.reason += "; the benchmarks run without keops"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary = {
        "gpu_check": "cpu-dry-run" if args.cpu_dry_run else "gpu",
        "machine": ctx.machine,
        "device": ctx.machine.get("gpu") or "cpu",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "budget_s": args.budget,
        "preset": ctx.preset,
        "injected_failures": sorted(failing),
        "steps": [vars(o) for o in outcomes],
    }
    results.mkdir(parents=True, exist_ok=True)
    summary_path = results / f"gpu_check_{ctx.tag}.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    # the README's benchmark table rows of this device, from the JSON just written
    run_command([ctx.python, str(BENCH / "summary.py"), "--preset", ctx.preset, "--tag", ctx.tag], args.log_dir / "summary.md", env, 60)
    if args.archive:
        written = [p for p in results.iterdir() if p.is_file() and p.stat().st_mtime >= started - 1]
        with tarfile.open(args.archive, "w:gz") as archive:
            archive.add(args.log_dir, arcname="logs")
            for path in written:
                archive.add(path, arcname=f"results/{path.name}")
    print(f"\nGPU check ({summary['gpu_check']}) on {summary['device']}: {summary['seconds']:.0f} s of a {args.budget:.0f} s budget; "
          f"logs in {args.log_dir}, results in {summary_path}")
    print(table(outcomes))
    return 0 if all(o.status != FAIL for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
