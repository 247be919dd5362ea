"""The ViS4mer training step's memory against the Transformer baselines on CPU, at the CPU
benchmark preset's width and depth (B=2, d_model=128, 3 layers), measured as bench_scaling
does: what torch allocates during one step above what it held before (the same on every run,
unlike peak RSS). Fails if ViS4mer's step grows back past the SDPA Transformer's."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
common = importlib.import_module("common")

PRESET = dict(batch=2, d_input=128, d_model=128, n_layers=3, warmup=0, repeats=1)


@pytest.fixture(autouse=True)
def _one_thread():
    """As the benchmarks run on CPU: a second thread mostly waits for one another job holds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _step_mib(model: str, length: int, **kwargs) -> float:
    result = common.train_step_case(model, PRESET | {"length": length}, "cpu", **kwargs)
    assert "error" not in result, result
    return result["allocated_extra_mib"]


def test_vis4mer_step_takes_less_memory_than_the_sdpa_transformer():
    """L=2048 (the ratio grows with L: 1.29x here, 1.35x at L=4096). Before the FFT
    convolution, Woodbury step and output stage kept only their inputs, ViS4mer's step took
    about twice the Transformer's."""
    vis4mer, transformer = _step_mib("vis4mer", 2048, backend="torch"), _step_mib("transformer", 2048)
    assert vis4mer < transformer, f"ViS4mer {vis4mer} MiB, SDPA Transformer {transformer} MiB"


def test_vis4mer_step_takes_8x_less_memory_than_lxl_attention():
    """L=1024: 20x (before: 7.6x); the L×L matrices grow as L², ViS4mer's step as L."""
    vis4mer, lxl = _step_mib("vis4mer", 1024, backend="torch"), _step_mib("transformer", 1024, attention="math")
    assert lxl >= 8 * vis4mer, f"ViS4mer {vis4mer} MiB, L×L-attention Transformer {lxl} MiB"
