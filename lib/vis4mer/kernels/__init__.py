"""Kernel backends, chosen explicitly by name or by `auto`, each choice logged once with its reason.

`auto` order: CUDA tensors -> CUDA extension, then pykeops, then the torch reference;
CPU tensors -> the torch reference, cache-blocked, which needs no compiler at run time (pykeops
compiles a C++ module per formula on first use; request "keops" explicitly to use it there).
An explicitly requested backend that cannot run raises instead of falling back silently.
"""

from __future__ import annotations

import functools

import torch

from vis4mer._logging import log_once
from vis4mer.kernels.cauchy import CauchyBackend, KeopsCauchy, TorchCauchy, cauchy_conj, cauchy_conj_dense
from vis4mer.kernels.fftconv import fft_conv, fft_conv_reference
from vis4mer.kernels.gelu_linear import gelu_linear, gelu_linear_reference
from vis4mer.kernels.vandermonde import vandermonde_conj
from vis4mer.kernels.woodbury import woodbury, woodbury_reference

CAUCHY_BACKENDS = ("auto", "cuda", "keops", "torch")

__all__ = [
    "CAUCHY_BACKENDS",
    "CauchyBackend",
    "cauchy_conj",
    "cauchy_conj_dense",
    "fft_conv",
    "fft_conv_reference",
    "gelu_linear",
    "gelu_linear_reference",
    "select_cauchy_backend",
    "vandermonde_conj",
    "woodbury",
    "woodbury_reference",
]


class CudaCauchy:
    """The compiled extension of cuda/cauchy (complex64, CUDA tensors)."""

    name = "cuda"

    def __init__(self, module):
        self._module = module

    def forward(self, v, z, w):
        return self._module.forward(v, z, w)

    def backward(self, grad, v, z, w):
        grad_v, grad_w = self._module.backward(grad, v, z, w)
        return grad_v, grad_w


class BackendUnavailable(RuntimeError):
    """A requested kernel backend cannot run here; the message says why."""


@functools.cache
def _torch_backend() -> TorchCauchy:
    return TorchCauchy()


@functools.cache
def _keops_backend() -> KeopsCauchy:
    try:
        return KeopsCauchy()
    except Exception as error:  # ImportError, or keops' own configuration errors
        raise BackendUnavailable(f"pykeops unavailable ({type(error).__name__}: {error})") from error


def _cuda_backend(dtype: torch.dtype) -> CudaCauchy:
    if dtype != torch.complex64:
        raise BackendUnavailable(f"the CUDA extension is complex64 only, got {dtype}")
    from vis4mer.kernels import cauchy_cuda  # noqa: PLC0415 - imported lazily: builds on first use

    module, reason = cauchy_cuda.load()
    if module is None:
        raise BackendUnavailable(f"CUDA extension {reason}")
    return CudaCauchy(module)


def _make(name: str, device: torch.device, dtype: torch.dtype) -> CauchyBackend:
    if name == "torch":
        return _torch_backend()
    if name == "keops":
        return _keops_backend()
    if device.type != "cuda":
        raise BackendUnavailable(f"the CUDA extension needs CUDA tensors, got device {device}")
    return _cuda_backend(dtype)


def select_cauchy_backend(requested: str, device: torch.device, dtype: torch.dtype) -> CauchyBackend:
    """The Cauchy backend for tensors on `device` with complex `dtype`; logs the decision once."""
    if requested not in CAUCHY_BACKENDS:
        raise ValueError(f"unknown kernel backend {requested!r}; choose one of {', '.join(CAUCHY_BACKENDS)}")
    device = torch.device(device)
    if requested != "auto":
        backend = _make(requested, device, dtype)
        log_once("cauchy-backend", f"S4 Cauchy kernel: {backend.name} (requested) on {device.type}")
        return backend
    if device.type != "cuda":
        log_once("cauchy-backend", f"S4 Cauchy kernel: torch (auto: {device.type} tensors use the torch reference)")
        return _torch_backend()
    reasons = []
    for name in ("cuda", "keops"):
        try:
            backend = _make(name, device, dtype)
        except BackendUnavailable as why:
            reasons.append(f"{name}: {why}")
            continue
        log_once("cauchy-backend", f"S4 Cauchy kernel: {name} (auto)" + (f"; skipped {'; '.join(reasons)}" if reasons else ""))
        return backend
    log_once("cauchy-backend", f"S4 Cauchy kernel: torch (auto fallback; {'; '.join(reasons)})")
    return _torch_backend()
