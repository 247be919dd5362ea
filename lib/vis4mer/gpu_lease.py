"""GPU leases: give every GPU job of a local Snakemake run its own device(s).

Snakemake's ``--resources gpu=N`` limits how many GPU jobs run at once, but it never
tells a job WHICH GPU is its own: every local job sees every device and, by default,
they all pick device 0. A lease fixes that. A job asking for ``k`` GPUs takes ``k``
devices from the machine's device list by locking one file per device in a lease
directory, and sets ``CUDA_VISIBLE_DEVICES`` to them before CUDA is initialised, so
inside the job the leased devices are ``cuda:0 .. cuda:k-1``.

Locks are ``fcntl.flock`` locks on ``<lease_dir>/<namespace>-gpu<id>.lock``:

* released by the kernel when the process exits, however it exits (an exception, a
  ``kill -9``, a node-local OOM kill): nothing has to clean up after a crashed job;
* a lock file whose flock is free is free, whatever it contains: stale files left by
  dead holders are simply reused. The file holds the holder's pid, host and start time
  (JSON) for diagnostics only; :func:`holders` reads it without locking;
* all-or-nothing: a job asking for k devices either locks k free ones or none, so two
  jobs each holding half of what they need can never deadlock. While too few devices
  are free it polls, logging who holds them now and then, until ``timeout_s``.

The namespace is the host name, plus the Slurm job id inside a Slurm allocation: on a
cluster every batch job gets its own devices from Slurm (often all numbered 0 inside
the job), so leases only coordinate the jobs that share one allocation; on a lease
directory on a shared file system, two hosts never contend for "GPU 0".

The device list comes from, in this order: the configured list (config
``runtime.gpus``), the parent's ``CUDA_VISIBLE_DEVICES``, or ``nvidia-smi -L`` (MIG
instances by their UUID, since CUDA addresses them that way). No devices: leasing is a
no-op, logged once per process.

This module imports neither torch nor Snakemake. Importing torch is harmless; what must
not happen before the lease is anything that initialises CUDA (even
``torch.cuda.is_available()`` fixes the visible devices for the process).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import random
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

logger = logging.getLogger("vis4mer.gpu_lease")

DEFAULT_LEASE_DIR = ".snakemake/gpu-leases"
_logged_once: set[str] = set()


class GpuLeaseError(RuntimeError):
    """A lease cannot be granted (more devices asked than exist, or CUDA already initialised)."""


class GpuLeaseTimeout(GpuLeaseError, TimeoutError):
    """Too few devices became free within the timeout."""


def _log_once(message: str, level: int = logging.INFO) -> None:
    if message not in _logged_once:
        _logged_once.add(message)
        logger.log(level, message)


# --------------------------------------------------------------------------- devices


def parse_visible_devices(value: str) -> list[str]:
    """Entries of a ``CUDA_VISIBLE_DEVICES`` value; CUDA stops at the first invalid one (``-1``)."""
    devices = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        devices.append(entry)
    return devices


def parse_nvidia_smi(output: str) -> list[str]:
    """Device ids from ``nvidia-smi -L``: GPU indices, or MIG UUIDs for GPUs split into MIG instances.

        GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5e0...)
          MIG 3g.40gb     Device  0: (UUID: MIG-a1b...)
    """
    gpus: list[tuple[str, list[str]]] = []
    for line in output.splitlines():
        gpu = re.match(r"\s*GPU (\d+):", line)
        if gpu:
            gpus.append((gpu.group(1), []))
            continue
        mig = re.match(r"\s*MIG .*\(UUID: (MIG-[^)\s]+)\)", line)
        if mig and gpus:
            gpus[-1][1].append(mig.group(1))
    return [device for index, migs in gpus for device in (migs or [index])]


def discover_devices(
    configured: Sequence[int | str] | None = None,
    environ: Mapping[str, str] | None = None,
    nvidia_smi: str = "nvidia-smi",
) -> tuple[list[str], str]:
    """``(device ids, where they came from)``; an empty list when there is no GPU."""
    if configured is not None:
        return [str(device) for device in configured], "config runtime.gpus"
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        return parse_visible_devices(environ["CUDA_VISIBLE_DEVICES"]), "CUDA_VISIBLE_DEVICES"
    try:
        result = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return [], f"nvidia-smi -L ({type(error).__name__}: {error})"
    if result.returncode != 0:
        return [], f"nvidia-smi -L (exit status {result.returncode})"
    return parse_nvidia_smi(result.stdout), "nvidia-smi -L"


def namespace(environ: Mapping[str, str] | None = None) -> str:
    """Lock-file prefix: the host, plus the Slurm job id inside a Slurm allocation."""
    environ = os.environ if environ is None else environ
    name = socket.gethostname().split(".")[0] or "host"
    if environ.get("SLURM_JOB_ID"):
        name += f"-slurm{environ['SLURM_JOB_ID']}"
    return _safe(name)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def lock_path(lease_dir: os.PathLike | str, device: str, prefix: str) -> Path:
    return Path(lease_dir) / f"{prefix}-gpu{_safe(device)}.lock"


# --------------------------------------------------------------------------- leases


@dataclass
class GpuLease:
    """Devices held by this process until :meth:`release` (or its exit)."""

    devices: list[str]
    paths: list[Path]
    _fds: list[int] = field(default_factory=list, repr=False)

    @property
    def fds(self) -> tuple[int, ...]:
        """The lock descriptors: pass them to a child (``subprocess.Popen(pass_fds=...)``) to
        keep the devices leased while that child lives, even if this process dies first."""
        return tuple(self._fds)

    @property
    def visible_devices(self) -> str:
        return ",".join(self.devices)

    def apply(self, environ: os._Environ | dict | None = None) -> None:
        """Set ``CUDA_VISIBLE_DEVICES`` to the leased devices (before CUDA is initialised)."""
        environ = os.environ if environ is None else environ
        environ["CUDA_VISIBLE_DEVICES"] = self.visible_devices

    def release(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)  # closing the last descriptor of the open file drops its flock
            except OSError:
                pass
        self._fds = []

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def __enter__(self) -> GpuLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(path: Path) -> int | None:
    """An fd holding the exclusive flock of `path`, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        # The file may have been unlinked (e.g. `make clean`) and re-created between the
        # open and the lock: a lock on a dead inode protects nothing. Retry on the new file.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _write_holder(fd: int, info: dict) -> None:
    data = (json.dumps(info, sort_keys=True) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def holders(lease_dir: os.PathLike | str, devices: Sequence[str], prefix: str | None = None) -> dict[str, dict | None]:
    """``{device: holder info}`` of the devices locked now (None: free). For diagnostics."""
    prefix = namespace() if prefix is None else prefix
    result: dict[str, dict | None] = {}
    for device in devices:
        path = lock_path(lease_dir, device, prefix)
        if not path.exists():
            result[device] = None
            continue
        fd = _try_lock(path)
        if fd is not None:  # free (possibly a stale file of a dead holder)
            os.close(fd)
            result[device] = None
            continue
        try:
            result[device] = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            result[device] = {"unreadable": True}
    return result


def acquire(
    n: int,
    devices: Sequence[str],
    lease_dir: os.PathLike | str = DEFAULT_LEASE_DIR,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    report_every_s: float = 60.0,
    description: str = "",
    prefix: str | None = None,
) -> GpuLease:
    """Lock `n` of `devices` (all or nothing), waiting while too few are free.

    Devices are tried in list order, so a lone job always gets the first free one.
    `timeout_s` None waits forever (logging the holders every `report_every_s`).
    """
    devices = [str(device) for device in devices]
    if n < 1:
        raise ValueError(f"a lease needs at least one device, asked for {n}")
    if len(set(devices)) != len(devices):
        raise GpuLeaseError(f"the device list {devices} names a device twice")
    if n > len(devices):
        raise GpuLeaseError(f"asked for {n} GPUs but only {len(devices)} exist ({', '.join(devices) or 'none'})")
    lease_dir = Path(lease_dir)
    lease_dir.mkdir(parents=True, exist_ok=True)
    prefix = namespace() if prefix is None else prefix
    started = time.monotonic()
    next_report = started + report_every_s
    while True:
        taken: list[tuple[str, int]] = []
        for device in devices:
            fd = _try_lock(lock_path(lease_dir, device, prefix))
            if fd is not None:
                taken.append((device, fd))
                if len(taken) == n:
                    break
        if len(taken) == n:
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "devices": [device for device, _ in taken],
                "job": description,
            }
            for _, fd in taken:
                _write_holder(fd, info)
            waited = time.monotonic() - started
            lease = GpuLease([d for d, _ in taken], [lock_path(lease_dir, d, prefix) for d, _ in taken], [fd for _, fd in taken])
            logger.info(
                "GPU lease: %s got device(s) %s of %s%s",
                description or f"pid {os.getpid()}", lease.visible_devices, ",".join(devices),
                f" after waiting {waited:.1f}s" if waited >= 1 else "",
            )
            return lease
        for _, fd in taken:  # all or nothing: never sit on part of what we need
            os.close(fd)
        now = time.monotonic()
        if timeout_s is not None and now - started >= timeout_s:
            raise GpuLeaseTimeout(
                f"no {n} free GPU(s) among {','.join(devices)} within {timeout_s:g}s "
                f"(lease dir {lease_dir}); held now: {_describe_holders(lease_dir, devices, prefix)}"
            )
        if now >= next_report:
            logger.info(
                "GPU lease: %s waiting for %d of %s; held now: %s",
                description or f"pid {os.getpid()}", n, ",".join(devices), _describe_holders(lease_dir, devices, prefix),
            )
            next_report = now + report_every_s
        sleep = poll_s * (0.5 + random.random())  # jitter: waiting jobs do not poll in lock-step
        if timeout_s is not None:
            sleep = min(sleep, max(0.0, timeout_s - (now - started)) + 0.01)
        time.sleep(sleep)


def _describe_holders(lease_dir, devices, prefix) -> str:
    held = {d: info for d, info in holders(lease_dir, devices, prefix).items() if info is not None}
    if not held:
        return "none (they were released just now)"
    return "; ".join(f"{d}: pid {info.get('pid')} on {info.get('host')} since {info.get('since')} ({info.get('job') or '?'})"
                     for d, info in held.items())


def lease_for_job(
    n_gpus: int,
    *,
    lease_dir: os.PathLike | str = DEFAULT_LEASE_DIR,
    configured: Sequence[int | str] | None = None,
    timeout_s: float | None = None,
    description: str = "",
    environ: os._Environ | dict | None = None,
) -> GpuLease | None:
    """Lease `n_gpus` devices for this process and point ``CUDA_VISIBLE_DEVICES`` at them.

    Returns None (a no-op, logged once) when `n_gpus` is 0 or the machine has no GPU.
    Must run before CUDA is initialised in this process: CUDA reads
    ``CUDA_VISIBLE_DEVICES`` once, at initialisation.
    """
    if n_gpus <= 0:
        return None
    environ = os.environ if environ is None else environ
    devices, source = discover_devices(configured, environ)
    if not devices:
        _log_once(f"GPU lease: no GPU found ({source}); leasing is a no-op and jobs run where their device setting says")
        return None
    _check_cuda_not_initialised()
    lease = acquire(n_gpus, devices, lease_dir, timeout_s=timeout_s, description=description)
    lease.apply(environ)
    if source == "nvidia-smi -L":
        # nvidia-smi numbers GPUs in PCI bus order; CUDA's default order is fastest first.
        environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return lease


def _check_cuda_not_initialised() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_initialized():
        raise GpuLeaseError(
            "CUDA is already initialised in this process, so CUDA_VISIBLE_DEVICES can no longer take "
            "effect: take the GPU lease before anything touches CUDA"
        )
