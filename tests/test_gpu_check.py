"""bench/gpu_check.sh: the prepared GPU check. Its --cpu-dry-run runs every step here (the CUDA
ones skipped, saying why); a failing step does not stop the later ones; a hanging step is
killed at its timeout with everything it started; the time budget skips what it cannot fit."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
gpu_check = importlib.import_module("gpu_check")

BENCH_JSON = {  # step -> the JSON it writes at the tiny preset on CPU
    "bench_cauchy": "cauchy_tiny_cpu.json",
    "bench_model": "model_tiny_cpu.json",
    "bench_floor": "floor_tiny_cpu.json",
    "bench_scaling": "scaling_tiny_cpu.json",
    "fft_lengths": "speedups_tiny_cpu.json",
    "vit_bf16": "extraction_tiny_cpu.json",
    "training": "training_tiny_cpu.json",
    "torchrun_nccl": "ddp_tiny_cpu.json",
}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The dry run with one step made to fail (bench_model, in the middle)."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    env = {k: v for k, v in os.environ.items() if k != "BENCH_RESULTS_DIR"}
    env |= {"PYTHON": sys.executable, gpu_check.FAIL_ENV: "bench_model"}
    completed = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-dry-run", "--log-dir", str(tmp / "logs"),
         "--wheels", str(tmp / "no-wheels"), "--archive", str(tmp / "check.tar.gz")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    summary = json.loads((tmp / "logs" / "results" / "gpu_check_cpu.json").read_text())
    return completed, summary, tmp


@pytest.mark.slow
def test_dry_run_runs_every_step_or_says_why_not(dry_run):
    completed, summary, tmp = dry_run
    steps = {step["step"]: step for step in summary["steps"]}
    assert list(steps) == [step.name for step in gpu_check.STEPS]
    assert summary["gpu_check"] == "cpu-dry-run" and summary["device"] == "cpu" and summary["machine"]["device_tag"] == "cpu"
    for name in ("cuda_build", "gpu_tests"):
        assert steps[name]["status"] == "skip" and steps[name]["reason"] == "needs CUDA (dry run on CPU)"
    assert steps["keops"]["status"] == "skip" and "bench_cauchy and bench_model run it" in steps["keops"]["reason"]
    assert steps["wheels"]["status"] == "skip" and "make gpu-wheels" in steps["wheels"]["reason"]
    ran = [name for name, step in steps.items() if step["status"] != "skip"]
    assert ran == ["environment", *BENCH_JSON]  # keops: run by bench_cauchy and bench_model on CPU
    for name in ran:
        assert (tmp / "logs" / steps[name]["log"]).read_text().startswith("$ ")  # its output kept
    results = tmp / "logs" / "results"
    for name, file in BENCH_JSON.items():
        if name != "bench_model":
            assert steps[name]["status"] == "pass", (name, steps[name])
            assert steps[name]["headline"] and "no JSON" not in steps[name]["headline"], (name, steps[name])
            assert json.loads((results / file).read_text())["preset"] == "tiny"
    assert "backend gloo" in steps["torchrun_nccl"]["headline"] and "loss finite" in steps["training"]["headline"]


@pytest.mark.slow
def test_a_failing_step_fails_the_check_but_not_the_later_steps(dry_run):
    completed, summary, tmp = dry_run
    steps = {step["step"]: step for step in summary["steps"]}
    assert steps["bench_model"]["status"] == "fail"
    assert "failure injected by GPU_CHECK_FAIL=bench_model" in steps["bench_model"]["reason"]
    assert summary["injected_failures"] == ["bench_model"]
    assert completed.returncode == 1
    table = completed.stdout[completed.stdout.index("| step | result | seconds | headline |"):]
    assert len(table.strip().splitlines()) == 2 + len(gpu_check.STEPS)  # printed last, one row per step
    assert "| bench_model | fail |" in table and "| torchrun_nccl | pass |" in table
    with tarfile.open(tmp / "check.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"logs/bench_model.log", "results/gpu_check_cpu.json", "results/ddp_tiny_cpu.json"} <= names


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_hanging_step_is_killed_with_its_children(tmp_path):
    start = time.monotonic()
    command = ["bash", "-c", f"sleep 60 & echo $! > {tmp_path / 'child.pid'}; sleep 60; wait"]
    returncode, seconds = gpu_check.run_command(command, tmp_path / "hang.log", dict(os.environ), timeout_s=1)
    assert returncode is None and time.monotonic() - start < 15
    assert (tmp_path / "hang.log").read_text().startswith("$ bash -c")
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(50):  # the orphan is reaped by init shortly after
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), "the step's background child survived the timeout"


def _context(tmp_path, **overrides):
    values = dict(python=sys.executable, dry_run=True, log_dir=tmp_path, results=tmp_path, scratch=tmp_path,
                  wheels=tmp_path / "wheels", env=dict(os.environ))
    return gpu_check.Context(**(values | overrides))


def test_the_budget_skips_a_step_it_cannot_fit(tmp_path):
    step = gpu_check.STEPS[0]
    outcome = gpu_check.run_step(step, _context(tmp_path), deadline=time.monotonic() + 2, failing=set())
    assert outcome.status == "skip" and outcome.reason == "the check's time budget is spent"


def test_without_a_device_only_the_environment_and_wheels_steps_run(tmp_path):
    """Outside the dry run, no CUDA device: nothing runs at LVU size on the CPU."""
    ctx = _context(tmp_path, dry_run=False)
    ctx.machine = {"cuda_available": False}
    for step in gpu_check.STEPS[2:]:
        outcome = gpu_check.run_step(step, ctx, deadline=time.monotonic() + 100, failing=set())
        assert outcome.status == "skip" and "no CUDA device visible" in outcome.reason, step.name
    assert [step.name for step in gpu_check.STEPS if step.without_cuda] == ["environment", "wheels"]


def test_wheels_already_present_are_not_installed(tmp_path):
    import numpy

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / f"numpy-{numpy.__version__}-py3-none-any.whl").write_bytes(b"")  # never opened: numpy is there
    ctx = _context(tmp_path)
    step = next(step for step in gpu_check.STEPS if step.name == "wheels")
    outcome = gpu_check.run_step(step, ctx, deadline=time.monotonic() + 100, failing=set())
    assert outcome.status == "pass", outcome
    assert outcome.headline == f"installed 0 of 1 wheels into {tmp_path / 'site'}"
    assert f"numpy {numpy.__version__}: present" in (tmp_path / "wheels.log").read_text()
    assert str(tmp_path / "site") in ctx.env["PYTHONPATH"].split(os.pathsep)  # the later steps see what it installs


def test_the_training_step_finds_the_feature_cache_option_at_run_time(monkeypatch, tmp_path):
    """bench_training runs with the feature cache once RunOptions carries `feature_cache`
    (runtime.feature_cache), and without it on a tree that has none: no edit either way."""
    from dataclasses import dataclass

    import vis4mer.training as training

    bench_training = importlib.import_module("bench_training")
    lvu, tiny = bench_training.PRESETS["lvu"], bench_training.PRESETS["tiny"]

    @dataclass
    class WithCache:
        device: str = "auto"
        num_workers: int = 0
        eval_batch_size: int = 32
        progress: bool = True
        feature_cache: str = "none"

    @dataclass
    class WithoutCache:
        device: str = "auto"
        num_workers: int = 0
        eval_batch_size: int = 32
        progress: bool = True

    monkeypatch.setattr(training, "RunOptions", WithCache)
    assert bench_training.feature_cache_carrier() is WithCache
    assert bench_training.cache_modes(lvu, "cuda") == ["none", "gpu"]
    assert bench_training.cache_modes(lvu, "cpu") == ["none"]  # the gpu cache needs CUDA
    assert bench_training.cache_modes(tiny, "cpu") == ["none", "ram"]
    kwargs = bench_training._run_kwargs(tiny, [], tmp_path, "cpu", 1, "ram", 0)
    assert kwargs["options"].feature_cache == "ram" and kwargs["settings"].batch_size == tiny["batch"]

    monkeypatch.setattr(training, "RunOptions", WithoutCache)
    assert bench_training.feature_cache_carrier() is None
    assert bench_training.cache_modes(lvu, "cuda") == ["none"]
    assert not hasattr(bench_training._run_kwargs(tiny, [], tmp_path, "cpu", 1, "none", 0)["options"], "feature_cache")


def test_a_headline_never_reads_an_older_json(tmp_path):
    """A step that failed must not quote the JSON an earlier check left in the results folder."""
    ctx = _context(tmp_path)
    ctx.machine = {"device_tag": "cpu"}
    path = tmp_path / "floor_tiny_cpu.json"
    path.write_text(json.dumps({"measured_over_floor": {"fp32": 2.0}}))
    ctx.step_started = time.time()
    assert gpu_check.floor_headline(ctx, "") == "measured / floor: fp32 2×"
    os.utime(path, (time.time() - 60, time.time() - 60))
    assert ctx.result("floor") is None and gpu_check.floor_headline(ctx, "") == "no JSON"
