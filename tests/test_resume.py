"""Kill and resume: a training run killed with SIGKILL continues from its last epoch and ends
exactly as an uninterrupted run (CPU, fixed seed), including dropout and the lr schedule.

Every run happens in a subprocess (tests/_train_runner.py) so that the kill is real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _synthetic_features import separable_dataset
from vis4mer import resume
from vis4mer.train_log import read_log_csv

RUNNER = Path(__file__).resolve().parent / "_train_runner.py"
EPOCHS = 6


def _spec(tmp_path: Path, name: str, **extra) -> Path:
    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        separable_dataset(data)  # the runner rebuilds the same files from the same seed
    spec = {"data": str(data), "out": str(tmp_path / name), "epochs": EPOCHS, **extra}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def _start(spec: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(RUNNER), str(spec)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def _run(spec: Path) -> str:
    process = _start(spec)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def _epochs_logged(run: Path) -> int:
    try:
        return max(0, len((run / "train_log.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _kill_after_epoch(spec: Path, run: Path, epoch: int, extra_wait_s: float = 0.0) -> str:
    process = _start(spec)
    deadline = time.monotonic() + 300
    while _epochs_logged(run) < epoch:
        assert process.poll() is None, f"the run ended before epoch {epoch}: {process.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)
    time.sleep(extra_wait_s)
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return output


def _comparable(run: Path) -> list[dict]:
    """The log without wall times, NaN (epochs without validation) as None so rows compare."""
    return [{k: (None if v != v else v) for k, v in row.items() if k != "seconds"} for row in read_log_csv(run / "train_log.csv")]


def _weights(path: Path) -> dict:
    checkpoint = torch.load(path, weights_only=True)
    return {"epoch": checkpoint["epoch"], **checkpoint["state_dict"]}


def _assert_same_run(a: Path, b: Path) -> None:
    assert _comparable(a) == _comparable(b)
    for name in ("best.pt", "last.pt"):
        wa, wb = _weights(a / name), _weights(b / name)
        assert wa.keys() == wb.keys()
        for key in wa:
            if isinstance(wa[key], torch.Tensor):
                assert torch.equal(wa[key], wb[key]), f"{name}: {key} differs"
            else:
                assert wa[key] == wb[key], f"{name}: {key}"
    assert json.loads((a / "result.json").read_text()) == json.loads((b / "result.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("resume")
    _run(_spec(tmp_path, "straight"))
    run = tmp_path / "straight"
    assert not (run / ".resume").exists()  # a completed run leaves no resume state
    return run


@pytest.mark.parametrize(("kill_epoch", "extra_wait_s"), [(1, 0.0), (3, 0.15), (EPOCHS, 0.0)])
def test_killed_run_resumes_to_the_same_result(tmp_path, uninterrupted, kill_epoch, extra_wait_s):
    """SIGKILL right after epoch k's checkpoint (or a moment into epoch k+1, or after the last
    epoch's state but before the run finished), re-run: same log, checkpoints and best epoch."""
    # the same data directory layout as the uninterrupted run: copy its spec, new output dir
    straight = json.loads((uninterrupted.parent / "straight.json").read_text())
    spec = tmp_path / "killed.json"
    spec.write_text(json.dumps({**straight, "out": str(tmp_path / "killed"), "step_sleep_s": 0.05}))
    run = tmp_path / "killed"
    _kill_after_epoch(spec, run, kill_epoch, extra_wait_s)
    state = torch.load(run / ".resume" / resume.STATE_FILE, weights_only=True)
    assert state["epoch"] >= kill_epoch
    assert not (run / "result.json").exists()
    # as Snakemake does before re-running an incomplete job: its outputs are deleted
    for name in ("best.pt", "last.pt", "train_log.csv", "train_curve.png"):
        (run / name).unlink(missing_ok=True)

    output = _run(spec)
    assert f"resumed after epoch {state['epoch']}" in output
    _assert_same_run(uninterrupted, run)
    assert not (run / ".resume").exists()
    assert (run / "train_curve.png").stat().st_size > 0


def test_a_state_of_another_run_is_not_used(tmp_path):
    spec = _spec(tmp_path, "first", step_sleep_s=0.05)
    run = tmp_path / "first"
    _kill_after_epoch(spec, run, 2)
    assert (run / ".resume" / resume.STATE_FILE).exists()
    # the features were rebuilt (new modification time): the state is another run's
    for shard in (tmp_path / "data").glob("shard_*.h5"):
        os.utime(shard, ns=(time.time_ns(), time.time_ns()))
    output = _run(spec)
    assert "belongs to another run" in output and "resumed after" not in output
    assert [row["epoch"] for row in read_log_csv(run / "train_log.csv")] == list(range(1, EPOCHS + 1))


def test_resume_is_off_without_a_state_dir(tmp_path):
    spec = _spec(tmp_path, "plain", resume=False, epochs=2)
    _run(spec)
    assert not (tmp_path / "plain" / ".resume").exists()
    last = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)
    assert last["resume"]["fingerprint"] and last["resume"]["rng"]  # last.pt still carries the state


def test_a_damaged_state_is_ignored(tmp_path):
    spec = _spec(tmp_path, "damaged", step_sleep_s=0.05)
    run = tmp_path / "damaged"
    _kill_after_epoch(spec, run, 1)
    (run / ".resume" / resume.STATE_FILE).write_bytes(b"not a checkpoint")
    output = _run(spec)
    assert "unreadable" in output and "resumed after" not in output
    assert len(read_log_csv(run / "train_log.csv")) == EPOCHS


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = resume.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.random(), np.random.rand(), torch.rand(())
    resume.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_run_options_and_versions_are_not_part_of_the_identity(tmp_path):
    shards, splits, _ = separable_dataset(tmp_path)
    metadata = {"format": "vis4mer-checkpoint-1", "training": {"lr": 0.01, "seed": 3}, "run_options": {"device": "cpu"},
                "versions": {"torch": "2.13.0"}}
    identity = resume.fingerprint(metadata, shards, splits["train"], splits["val"])
    same = {**metadata, "run_options": {"device": "cuda", "num_workers": 4}, "versions": {"torch": "2.14.0"}}
    assert resume.fingerprint(same, shards, splits["train"], splits["val"]) == identity
    other = {**metadata, "training": {"lr": 0.02, "seed": 3}}
    assert resume.fingerprint(other, shards, splits["train"], splits["val"]) != identity
    assert resume.fingerprint(metadata, shards, splits["train"][1:], splits["val"]) != identity


def test_run_state_round_trips_through_a_checkpoint():
    state = resume.RunState("abc", best_epoch=2, best_val_metric=0.5, consecutive_nonfinite=1,
                            generator=torch.Generator().manual_seed(1).get_state(), rng=[resume.rng_state()], world_size=1)
    saved = state.to_checkpoint()
    assert saved["best_val_loss"] is None  # NaN: no loss yet, as a checkpoint-safe value
    assert list(saved) == ["fingerprint", "best_epoch", "best_val_metric", "best_val_loss", "consecutive_nonfinite",
                           "generator", "rng", "world_size"]
    back = resume.RunState.from_checkpoint(saved)
    assert (back.fingerprint, back.best_epoch, back.best_val_metric, back.consecutive_nonfinite) == ("abc", 2, 0.5, 1)
    assert back.best_val_loss != back.best_val_loss and torch.equal(back.generator, state.generator)
    assert back.rank_rng(0, 1) is state.rng[0] and back.rank_rng(1, 2) is state.rng[0]  # another world size: rank 0's


# ----------------------------------------------------------------------------- the workflow


@pytest.mark.slow
def test_snakemake_job_killed_mid_training_resumes_with_rerun_incomplete(tmp_path):
    """kill -9 of Snakemake and its job, first in the features stage (complete shards are
    kept, only the others run again), then in training: `--unlock`, then `--rerun-incomplete`
    deletes the job's outputs and re-runs it, which resumes from <run>/.resume/ (not an
    output) and ends with the log of an uninterrupted run (the same job forced again)."""
    from _workflow import TINY_CONFIG, copy_workflow, job_counts, snakemake, write_config

    workdir = copy_workflow(tmp_path / "wf")
    config = json.loads(json.dumps(TINY_CONFIG))
    config["datasets"]["tiny"]["models"] = ["vis4mer"]
    config["training"].update(epochs=40, val_stride_frames=4)
    config_path = write_config(workdir / "config" / "tiny.yaml", config)
    run = workdir / "results" / "tiny" / "order" / "vis4mer"
    target = "results/tiny/order/vis4mer/train_log.csv"
    # features: killed once Snakemake has finished the first shard's job (a shard written but
    # not yet recorded as finished is rightly redone), the re-run keeps the finished shards
    shards = workdir / "results" / "tiny" / "features" / "vit_tiny_patch16_224"
    snakemake_log = tmp_path / "features.log"
    with open(snakemake_log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(config_path), "--until", "features"],
            cwd=workdir, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "(Rule: features)" not in snakemake_log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, "the features stage ended before it could be killed"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    finished = snakemake_log.read_text().count("(Rule: features)")
    kept = {path.name: path.stat().st_mtime_ns for path in shards.glob("shard_*.h5")}
    assert 1 <= finished <= len(kept) < 3
    assert snakemake(workdir, "--unlock", "--configfile", str(config_path)).returncode == 0
    features = snakemake(workdir, "--cores", "2", "--configfile", str(config_path), "--rerun-incomplete", "--until", "features",
                         timeout=600)
    assert features.returncode == 0, features.stderr[-3000:]
    assert job_counts(features.stdout + features.stderr).get("features") == 3 - finished
    assert sum((shards / name).stat().st_mtime_ns == mtime for name, mtime in kept.items()) >= finished

    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(config_path), "--", target],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while _epochs_logged(run) < 5:
            assert process.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its job
        process.wait(30)
    killed_at = torch.load(run / ".resume" / resume.STATE_FILE, weights_only=True)["epoch"]
    assert 5 <= killed_at < 40

    # the README's recovery: a killed Snakemake leaves its lock (--unlock), and the job is
    # incomplete (--rerun-incomplete)
    plain = snakemake(workdir, "--cores", "1", "--configfile", str(config_path), "--", target)
    assert plain.returncode != 0 and "--rerun-incomplete" in plain.stdout + plain.stderr
    assert snakemake(workdir, "--unlock", "--configfile", str(config_path)).returncode == 0
    rerun = snakemake(workdir, "--cores", "1", "--configfile", str(config_path), "--rerun-incomplete", "--", target, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log_text = (workdir / "logs" / "tiny" / "order" / "vis4mer" / "train.log").read_text()
    assert f"resumed after epoch {killed_at}" in log_text
    assert not (run / ".resume").exists()
    resumed = _comparable(run)

    fresh = snakemake(workdir, "--cores", "1", "--configfile", str(config_path), "--forcerun", "train", "--", target, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "resumed after" not in (workdir / "logs" / "tiny" / "order" / "vis4mer" / "train.log").read_text()
    assert _comparable(run) == resumed
    assert [row["epoch"] for row in resumed] == list(range(1, 41))
