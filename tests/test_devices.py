"""vis4mer.devices.resolve_device: the one reading of a ``device`` setting."""

from __future__ import annotations

import logging

import pytest
import torch

from vis4mer import _logging
from vis4mer.devices import resolve_device


@pytest.fixture
def cuda(monkeypatch):
    """Pretend CUDA is (True) or is not (False) available; the process's log-once memory is reset."""

    def set_available(available: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)

    monkeypatch.setattr(_logging, "_already_logged", set())
    return set_available


@pytest.mark.parametrize("setting", ["auto", None])
def test_auto_takes_the_gpu_only_when_cuda_is_available(cuda, setting):
    cuda(False)
    assert resolve_device(setting) == torch.device("cpu")
    cuda(True)
    assert resolve_device(setting) == torch.device("cuda")


def test_explicit_settings_are_taken_as_given(cuda):
    cuda(False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda:1")  # the caller asked for it: its own error later
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_a_distributed_rank_uses_its_local_gpu(cuda, caplog):
    cuda(True)
    with caplog.at_level(logging.INFO, logger="vis4mer"):
        assert resolve_device("auto", local_rank=1) == torch.device("cuda:1")
        assert resolve_device("cuda", local_rank=2) == torch.device("cuda:2")
        assert resolve_device("cuda:0", local_rank=3) == torch.device("cuda:3")
        assert resolve_device("cpu", local_rank=3) == torch.device("cpu")  # gloo on the CPU
    assert "device cuda:0 ignored by a distributed run: this rank uses cuda:3" in caplog.text
    cuda(False)
    assert resolve_device("auto", local_rank=1) == torch.device("cpu")


def test_the_choice_and_its_reason_are_logged_once(cuda, caplog):
    cuda(False)
    with caplog.at_level(logging.INFO, logger="vis4mer"):
        resolve_device("auto")
        resolve_device("auto")
    assert caplog.text.count("torch device 'auto' -> cpu: CUDA is not available") == 1
