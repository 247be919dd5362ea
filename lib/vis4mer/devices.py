"""The torch device of a ``device`` setting (config ``runtime.device``, ``--device``), in one place.

Settings: ``auto`` (or None) takes the GPU when CUDA is available and the CPU otherwise;
``cpu``, ``cuda`` and ``cuda:N`` are taken as given. A rank of a distributed run
(`local_rank` given) uses ``cuda:LOCAL_RANK``, its own device of the job's lease, whatever
GPU index the setting names. The choice and its reason are logged once per process.
"""

from __future__ import annotations

import logging

import torch

from vis4mer._logging import log_once

AUTO = "auto"


def resolve_device(setting: str | torch.device | None = AUTO, local_rank: int | None = None) -> torch.device:
    """The device for `setting` (auto | cpu | cuda | cuda:N | a torch.device; None: auto).

    `local_rank`: this process's rank on its machine in a distributed run (torchrun's
    LOCAL_RANK); a GPU setting then means ``cuda:<local_rank>``.
    """
    setting = AUTO if setting is None else str(setting)
    device, reason = _choose(setting, local_rank)
    log_once("device", f"torch device {setting!r} -> {device}: {reason}")
    return device


def _choose(setting: str, local_rank: int | None) -> tuple[torch.device, str]:
    if setting == "cpu":
        return torch.device("cpu"), "as set"
    if setting == AUTO and not torch.cuda.is_available():
        return torch.device("cpu"), "CUDA is not available"
    if local_rank is None:
        return (torch.device("cuda"), "CUDA is available") if setting == AUTO else (torch.device(setting), "as set")
    if setting.startswith("cuda:"):
        log_once("device", f"device {setting} ignored by a distributed run: this rank uses cuda:{local_rank}", logging.WARNING)
    return torch.device(f"cuda:{local_rank}"), f"the GPU of LOCAL_RANK {local_rank} in a distributed run"
