"""GPU leases (vis4mer.gpu_lease) on a fake device list: no GPU needed.

Concurrent holders are real processes (multiprocessing), so the flock semantics tested
are the kernel's: exclusive between processes, dropped when a holder dies.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vis4mer import gpu_lease
from vis4mer.gpu_lease import GpuLeaseError, GpuLeaseTimeout, acquire, discover_devices, lease_for_job

REPO = Path(__file__).resolve().parents[1]
CTX = mp.get_context("fork")


# ----------------------------------------------------------------------------- device lists


def test_visible_devices_parse_like_cuda():
    assert gpu_lease.parse_visible_devices("0,1, 3") == ["0", "1", "3"]
    assert gpu_lease.parse_visible_devices("") == []
    assert gpu_lease.parse_visible_devices("2,-1,3") == ["2"]  # CUDA stops at an invalid entry
    assert gpu_lease.parse_visible_devices("GPU-abc,GPU-def") == ["GPU-abc", "GPU-def"]


def test_nvidia_smi_listing_with_mig():
    listing = textwrap.dedent("""\
        GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)
        GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-66666666-7777-8888-9999-000000000000)
          MIG 3g.40gb     Device  0: (UUID: MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)
          MIG 3g.40gb     Device  1: (UUID: MIG-ffffffff-0000-1111-2222-333333333333)
        GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-44444444-5555-6666-7777-888888888888)
    """)
    assert gpu_lease.parse_nvidia_smi(listing) == [
        "0", "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "MIG-ffffffff-0000-1111-2222-333333333333", "2",
    ]
    assert gpu_lease.parse_nvidia_smi("") == []


def test_device_list_sources_in_order(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: Fake (UUID: GPU-0)'\necho 'GPU 1: Fake (UUID: GPU-1)'\n")
    fake.chmod(0o755)
    assert discover_devices([4, 5], {"CUDA_VISIBLE_DEVICES": "0"}, str(fake)) == (["4", "5"], "config runtime.gpus")
    assert discover_devices([], {}, str(fake)) == ([], "config runtime.gpus")  # [] disables leasing
    assert discover_devices(None, {"CUDA_VISIBLE_DEVICES": "2,3"}, str(fake)) == (["2", "3"], "CUDA_VISIBLE_DEVICES")
    assert discover_devices(None, {}, str(fake)) == (["0", "1"], "nvidia-smi -L")
    devices, source = discover_devices(None, {}, str(tmp_path / "absent"))
    assert devices == [] and source.startswith("nvidia-smi -L (FileNotFoundError")


def test_namespace_separates_hosts_and_slurm_jobs():
    plain = gpu_lease.namespace({})
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", plain)
    assert gpu_lease.namespace({"SLURM_JOB_ID": "4242"}) == f"{plain}-slurm4242"


# ----------------------------------------------------------------------------- one process


def test_lease_locks_records_holder_and_releases(tmp_path):
    with acquire(2, ["0", "1", "2"], tmp_path, prefix="h") as lease:
        assert lease.devices == ["0", "1"] and lease.visible_devices == "0,1"
        info = json.loads((tmp_path / "h-gpu0.lock").read_text())
        assert info["pid"] == os.getpid() and info["devices"] == ["0", "1"] and info["host"]
        held = gpu_lease.holders(tmp_path, ["0", "1", "2"], "h")
        assert held["0"]["pid"] == os.getpid() and held["2"] is None
    assert not lease.held
    assert all(info is None for info in gpu_lease.holders(tmp_path, ["0", "1", "2"], "h").values())


def test_asking_for_more_devices_than_exist_fails_at_once(tmp_path):
    with pytest.raises(GpuLeaseError, match="asked for 3 GPUs but only 2 exist"):
        acquire(3, ["0", "1"], tmp_path, timeout_s=60)


def test_stale_lock_file_without_flock_is_reused(tmp_path):
    stale = tmp_path / "h-gpu0.lock"
    stale.write_text(json.dumps({"pid": 999999999, "host": "gone", "since": "yesterday"}))
    started = time.monotonic()
    with acquire(1, ["0"], tmp_path, prefix="h", timeout_s=5) as lease:
        assert time.monotonic() - started < 2
        assert lease.devices == ["0"]
        assert json.loads(stale.read_text())["pid"] == os.getpid()


def test_lease_for_job_sets_cuda_visible_devices(tmp_path):
    environ = {"CUDA_VISIBLE_DEVICES": "3,5,7"}
    lease = lease_for_job(2, lease_dir=tmp_path, environ=environ, description="test")
    try:
        assert lease.devices == ["3", "5"] and environ["CUDA_VISIBLE_DEVICES"] == "3,5"
        assert "CUDA_DEVICE_ORDER" not in environ  # only set for nvidia-smi indices
    finally:
        lease.release()
    assert lease_for_job(0, lease_dir=tmp_path, environ={"CUDA_VISIBLE_DEVICES": "0"}) is None


def test_no_gpu_is_a_no_op_logged_once(tmp_path, caplog):
    gpu_lease._logged_once.clear()
    with caplog.at_level(logging.INFO, logger="vis4mer.gpu_lease"):
        for _ in range(3):
            environ = {"CUDA_VISIBLE_DEVICES": ""}
            assert lease_for_job(1, lease_dir=tmp_path, environ=environ) is None
            assert environ == {"CUDA_VISIBLE_DEVICES": ""}
    assert sum("no GPU found" in r.getMessage() for r in caplog.records) == 1


# ----------------------------------------------------------------------------- processes


def _hold(lease_dir, devices, n, hold_s, record, timeout_s=60.0, start_together=None):
    """Worker: lease n devices, hold them hold_s, append (devices, start, end) to `record`;
    with a barrier `start_together`, ask for the lease only once every worker has started."""
    if start_together is not None:
        start_together.wait(60)
    lease = acquire(n, devices, lease_dir, timeout_s=timeout_s, poll_s=0.02, prefix="t")
    start = time.monotonic()
    time.sleep(hold_s)
    end = time.monotonic()
    with open(record, "a") as handle:
        handle.write(json.dumps([lease.devices, start, end]) + "\n")
        handle.flush()
    lease.release()


def _hold_forever(lease_dir, devices, ready):
    lease = acquire(1, devices, lease_dir, timeout_s=30, prefix="t")
    Path(ready).write_text(",".join(lease.devices))
    time.sleep(600)


def _intervals(record: Path):
    return [json.loads(line) for line in record.read_text().splitlines()]


def _assert_no_device_held_twice(intervals):
    for i, (devices_a, start_a, end_a) in enumerate(intervals):
        for devices_b, start_b, end_b in intervals[i + 1 :]:
            if set(devices_a) & set(devices_b):
                assert end_a <= start_b or end_b <= start_a, f"{devices_a} and {devices_b} held at once"


def test_concurrent_jobs_never_share_a_device(tmp_path):
    """8 jobs of 1 GPU and 2 jobs of 2 GPUs on 3 devices, all started at once."""
    record = tmp_path / "record.jsonl"
    devices = ["0", "1", "2"]
    jobs = [(1, 0.4)] * 8 + [(2, 0.5)] * 2
    # a loaded machine starts processes slowly: they ask for their leases at once, after a barrier
    barrier = CTX.Barrier(len(jobs))
    processes = [CTX.Process(target=_hold, args=(tmp_path / "leases", devices, n, hold, record, 60.0, barrier)) for n, hold in jobs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    intervals = _intervals(record)
    assert len(intervals) == len(jobs)
    assert sorted(len(devices) for devices, _, _ in intervals) == [1] * 8 + [2] * 2
    _assert_no_device_held_twice(intervals)
    # the leases did run side by side (3 devices -> more than one job at a time)
    starts = sorted(start for _, start, _ in intervals)
    assert any(b < a_end for (_, a_start, a_end), b in zip(sorted(intervals, key=lambda i: i[1]), starts[1:]))


def test_killed_holder_frees_its_device(tmp_path):
    ready = tmp_path / "ready"
    holder = CTX.Process(target=_hold_forever, args=(tmp_path / "leases", ["0"], ready))
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(GpuLeaseTimeout, match=rf"pid {holder.pid}"):
            acquire(1, ["0"], tmp_path / "leases", timeout_s=0.3, poll_s=0.02, prefix="t")
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        with acquire(1, ["0"], tmp_path / "leases", timeout_s=5, poll_s=0.02, prefix="t") as lease:
            assert lease.devices == ["0"]
    finally:
        if holder.is_alive():
            os.kill(holder.pid, signal.SIGKILL)


def test_waits_while_all_devices_are_busy(tmp_path):
    record = tmp_path / "record.jsonl"
    holder = CTX.Process(target=_hold, args=(tmp_path / "leases", ["0"], 1, 1.0, record))
    holder.start()
    deadline = time.monotonic() + 30
    while not (tmp_path / "leases").exists() or all(v is None for v in gpu_lease.holders(tmp_path / "leases", ["0"], "t").values()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    with acquire(1, ["0"], tmp_path / "leases", timeout_s=30, poll_s=0.02, prefix="t"):
        waited = time.monotonic() - started
    holder.join(10)
    assert 0.3 < waited < 20
    (held_devices, _, released), = _intervals(record)
    assert started + waited >= released


def test_all_or_nothing_two_gpu_jobs_do_not_deadlock(tmp_path):
    """Two 2-GPU jobs on 3 devices: holding one device each and waiting would deadlock."""
    record = tmp_path / "record.jsonl"
    processes = [CTX.Process(target=_hold, args=(tmp_path / "leases", ["0", "1", "2"], 2, 0.3, record, 20.0)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    _assert_no_device_held_twice(_intervals(record))


# ----------------------------------------------------------------------------- the workflow


GPU_RULE = re.compile(r"^(?:rule|checkpoint)\s+(\w+):(.*?)(?=^(?:rule|checkpoint)\s|\Z)", re.S | re.M)


def test_every_gpu_rule_script_takes_its_lease_through_common_start():
    """One mechanism: every rule with a gpu resource runs a script that calls _common.start."""
    gpu_rules = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for name, body in GPU_RULE.findall(smk.read_text()):
            if re.search(r"^\s+gpu\s*=", body, re.M):
                script = re.search(r'script:\s*\n\s+"([^"]+)"', body)
                assert script, f"GPU rule {name} has no script: directive"
                gpu_rules[name] = (smk.parent / script.group(1)).resolve()
    assert {"features", "train", "evaluate"} <= set(gpu_rules)
    for name, script in gpu_rules.items():
        text = script.read_text()
        assert re.search(r"^logger = start\(snakemake,", text, re.M), f"{script.name} (rule {name}) does not call start()"
        # nothing CUDA-related may run before the lease: start() comes before any torch import
        head = text[: text.index("logger = start(")]
        assert "import torch" not in head, f"{script.name} imports torch before its lease"


SNAKEFILE = """
configfile: "config.yaml"

rule all:
    input: expand("out/{i}.json", i=range(6)), "out/pair.json"

rule one_gpu:
    output: "out/{i}.json"
    wildcard_constraints: i=r"\\d+"
    log: "logs/{i}.log"
    resources: gpu=1
    script: "scripts/job.py"

rule two_gpus:
    output: "out/pair.json"
    log: "logs/pair.log"
    resources: gpu=2
    script: "scripts/job.py"
"""

JOB = """
import json, os, time
from _common import start
snakemake = snakemake  # noqa: F821
logger = start(snakemake, "job")
started = time.monotonic()
time.sleep(0.5)
json.dump({"devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": started, "end": time.monotonic(), "pid": os.getpid()},
          open(snakemake.output[0], "w"))
"""


@pytest.mark.slow
def test_snakemake_gpu_jobs_each_get_their_own_devices(tmp_path):
    """Local Snakemake run, 7 GPU jobs on --cores 7 but 3 (fake) GPUs: each job sees only its
    leased devices, and no device is ever visible to two running jobs."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "_common.py").write_text((REPO / "workflow" / "scripts" / "_common.py").read_text())
    (tmp_path / "scripts" / "job.py").write_text(JOB)
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "config.yaml").write_text(json.dumps({"runtime": {"device": "auto", "gpus": [0, 1, 2]}}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "7", "--resources", "gpu=7"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    jobs = [json.loads(path.read_text()) for path in (tmp_path / "out").glob("*.json")]
    assert len(jobs) == 7
    intervals = [(job["devices"].split(","), job["start"], job["end"]) for job in jobs]
    assert all(set(devices) <= {"0", "1", "2"} for devices, _, _ in intervals)
    assert sorted(len(devices) for devices, _, _ in intervals) == [1] * 6 + [2]
    _assert_no_device_held_twice(intervals)
    log = (tmp_path / "logs" / "pair.log").read_text()
    assert "GPU lease: CUDA_VISIBLE_DEVICES=" in log
    assert list((tmp_path / ".snakemake" / "gpu-leases").glob("*-gpu0.lock"))
