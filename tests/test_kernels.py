"""The Cauchy sum (every backend against the definition), HiPPO-LegS, backend selection, and the
fast paths of the FFT convolution, the Woodbury step and the output stage (GELU, channel mask,
position-wise linear) against their plain-torch references."""

import logging
import math
import subprocess
import sys

import pytest
import torch

from vis4mer.hippo import hippo_legs, nplr_legs
from vis4mer.kernels import (
    cauchy_conj,
    cauchy_conj_dense,
    fft_conv,
    fft_conv_reference,
    gelu_linear,
    gelu_linear_reference,
    select_cauchy_backend,
    woodbury,
    woodbury_reference,
)
from vis4mer.kernels.cauchy import TorchCauchy


def _inputs(n_num, batch, poles, length, dtype=torch.complex128):
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    v = torch.randn(n_num, batch, poles, dtype=dtype)
    # poles outside the unit circle (the S4 regime) and in the left half plane
    radius = 1 + 0.5 * torch.rand(batch, poles, dtype=real)
    w = radius * torch.exp(1j * 2 * math.pi * torch.rand(batch, poles, dtype=real))
    w[:, : poles // 2] = -torch.rand(batch, poles // 2, dtype=real) + 1j * torch.randn(batch, poles // 2, dtype=real)
    z = torch.exp(-2j * math.pi * torch.arange(length // 2 + 1, dtype=real) / length)
    return v, z.to(dtype), w.to(dtype)


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_nplr_reconstructs_hippo_legs():
    nplr = nplr_legs(64)
    a, b = hippo_legs(64)
    v = torch.cat([nplr.eigenvectors, nplr.eigenvectors.conj()], dim=1)
    lam = torch.cat([nplr.eigenvalues, nplr.eigenvalues.conj()])
    p = torch.cat([nplr.low_rank[0], nplr.low_rank[0].conj()])
    b_tilde = torch.cat([nplr.input_matrix, nplr.input_matrix.conj()])
    a_rebuilt = v @ (torch.diag(lam) - p[:, None] * p.conj()[None, :]) @ v.conj().T
    assert torch.allclose(a_rebuilt, a.to(torch.complex128), atol=1e-10)
    assert torch.allclose(v @ b_tilde, b.to(torch.complex128), atol=1e-10)
    assert torch.all(nplr.eigenvalues.real < 0) and torch.all(nplr.eigenvalues.imag > 0)


@pytest.mark.parametrize("shape", [(4, 3, 8, 16), (4, 2, 5, 15), (1, 1, 1, 2)])
def test_torch_reference_matches_definition_and_autograd(shape):
    v, z, w = _inputs(*shape)
    v.requires_grad_(), w.requires_grad_()
    backend = TorchCauchy(chunk_elements=7)  # force many chunks
    r = cauchy_conj(v, z, w, backend)
    r_dense = cauchy_conj_dense(v, z, w)
    assert _rel(r, r_dense) < 1e-12
    upstream = torch.randn_like(r)
    grads = torch.autograd.grad((r * upstream.conj()).real.sum(), (v, w))
    grads_dense = torch.autograd.grad((r_dense * upstream.conj()).real.sum(), (v, w))
    for ours, truth in zip(grads, grads_dense):
        assert _rel(ours, truth) < 1e-12


def test_torch_reference_passes_gradcheck():
    v, z, w = _inputs(2, 2, 4, 9)
    v.requires_grad_(), w.requires_grad_()
    assert torch.autograd.gradcheck(lambda v_, w_: cauchy_conj(v_, z, w_, TorchCauchy()), (v, w))


def test_chunking_does_not_change_results_in_float32():
    v, z, w = _inputs(4, 16, 32, 1001, dtype=torch.complex64)
    whole = cauchy_conj(v, z, w, TorchCauchy(chunk_elements=1 << 30))
    chunked = cauchy_conj(v, z, w, TorchCauchy(chunk_elements=16 * 32 * 10))
    assert whole.shape == chunked.shape == (4, 16, 501)
    assert _rel(chunked, whole) < 1e-6


@pytest.mark.slow
def test_keops_matches_torch_reference():
    pytest.importorskip("pykeops")
    v, z, w = _inputs(4, 3, 32, 257, dtype=torch.complex64)
    v.requires_grad_(), w.requires_grad_()
    keops = select_cauchy_backend("keops", torch.device("cpu"), torch.complex64)
    results = {}
    for name, backend in {"keops": keops, "torch": TorchCauchy()}.items():
        r = cauchy_conj(v, z, w, backend)
        upstream = torch.ones_like(r) * (0.3 - 0.7j)
        results[name] = (r, *torch.autograd.grad((r * upstream.conj()).real.sum(), (v, w)))
    for ours, ref in zip(results["keops"], results["torch"]):
        assert _rel(ours, ref) < 1e-5


def test_auto_on_cpu_chooses_torch_and_says_why(caplog):
    from vis4mer import _logging

    _logging._already_logged.clear()
    with caplog.at_level(logging.INFO, logger="vis4mer"):
        backend = select_cauchy_backend("auto", torch.device("cpu"), torch.complex64)
        select_cauchy_backend("auto", torch.device("cpu"), torch.complex64)
    assert backend.name == "torch"
    messages = [r.getMessage() for r in caplog.records if "Cauchy kernel" in r.getMessage()]
    assert len(messages) == 1 and "cpu tensors" in messages[0]


def test_explicit_unavailable_backend_raises_with_reason():
    from vis4mer.kernels import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="CUDA tensors"):
        select_cauchy_backend("cuda", torch.device("cpu"), torch.complex64)
    with pytest.raises(ValueError, match="unknown kernel backend 'fast'"):
        select_cauchy_backend("fast", torch.device("cpu"), torch.complex64)


def test_cauchy_rejects_mismatched_shapes():
    v, z, w = _inputs(4, 3, 8, 16)
    with pytest.raises(ValueError, match="v \\[K,B,M\\]"):
        cauchy_conj(v, z, w[:, :4], TorchCauchy())


PEAK_MEMORY_SCRIPT = """
import resource, torch
from vis4mer.s4 import NPLRKernel
kernel = NPLRKernel(1024, l_max=11820)  # the paper's first LVU layer
kernel(11820).square().sum().backward()
assert all(torch.isfinite(p.grad).all() for p in kernel.parameters())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_lvu_first_layer_kernel_fits_in_a_few_gb():
    """H=1024, L=11820: the unchunked [4, H, L/2, N/2] tensor alone would be 6.2 GB."""
    out = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT], capture_output=True, text=True, check=True)
    peak_gib = int(out.stdout.split()[-1]) / 2**20
    assert peak_gib < 3.0, f"peak RSS {peak_gib:.2f} GiB"


# ---- FFT convolution -------------------------------------------------------------------------


def _conv_inputs(batch, heads, length, dtype=torch.float64):
    u = torch.randn(batch, heads, length, dtype=dtype, requires_grad=True)
    k = torch.randn(heads, length, dtype=dtype, requires_grad=True)
    skip = torch.randn(heads, dtype=dtype, requires_grad=True)
    return u, k, skip


def _conv_and_grads(conv, u, k, skip, upstream, **kwargs):
    y = conv(u, k, skip, **kwargs)
    return (y, *torch.autograd.grad(y, (u, k, skip), upstream))


@pytest.mark.parametrize(
    ("shape", "chunk_elements"),
    [((2, 5, 33), 7), ((3, 4, 100), None), ((1, 1, 1), None), ((2, 6, 64), 300), ((1, 3, 127), 1 << 30)],
    ids=["one-head-blocks", "default-blocks", "length-1", "two-head-blocks", "one-block"],
)
def test_fft_conv_equals_reference_in_value_and_gradients(shape, chunk_elements):
    u, k, skip = _conv_inputs(*shape)
    upstream = torch.randn(shape, dtype=torch.float64)
    ours = _conv_and_grads(fft_conv, u, k, skip, upstream, chunk_elements=chunk_elements)
    reference = _conv_and_grads(fft_conv_reference, u, k, skip, upstream)
    for name, a, b in zip(("y", "grad u", "grad k", "grad D"), ours, reference):
        assert _rel(a, b) < 1e-10, name


def test_fft_conv_is_the_causal_convolution_with_skip():
    u, k, skip = (t.detach() for t in _conv_inputs(2, 3, 9))
    direct = torch.stack(
        [sum(k[:, s] * u[..., t - s] for s in range(t + 1)) + skip * u[..., t] for t in range(9)], dim=-1
    )
    assert _rel(fft_conv(u, k, skip, chunk_elements=10), direct) < 1e-12


def test_fft_conv_passes_gradcheck():
    u, k, skip = _conv_inputs(2, 3, 11)
    assert torch.autograd.gradcheck(lambda *args: fft_conv(*args, chunk_elements=12), (u, k, skip))


@pytest.mark.parametrize("alone", [0, 1, 2], ids=["u", "k", "D"])
def test_fft_conv_gradient_of_one_input_alone(alone):
    inputs = [t if i == alone else t.detach() for i, t in enumerate(_conv_inputs(2, 3, 20))]
    upstream = torch.randn(2, 3, 20, dtype=torch.float64)
    (ours,) = torch.autograd.grad(fft_conv(*inputs), inputs[alone], upstream)
    (reference,) = torch.autograd.grad(fft_conv_reference(*inputs), inputs[alone], upstream)
    assert _rel(ours, reference) < 1e-10


def test_fft_conv_float32_matches_reference():
    u, k, skip = _conv_inputs(2, 8, 1000, dtype=torch.float32)
    upstream = torch.randn(2, 8, 1000)
    ours = _conv_and_grads(fft_conv, u, k, skip, upstream, chunk_elements=3 * 2 * 1001)
    reference = _conv_and_grads(fft_conv_reference, u, k, skip, upstream)
    for a, b in zip(ours, reference):
        assert _rel(a, b) < 1e-5


def test_fft_conv_saves_only_its_inputs_for_backward():
    """What makes it lighter than autograd's FFT: no padded copies, no complex transforms kept."""
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    u, k, skip = _conv_inputs(2, 4, 300, dtype=torch.float32)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fft_conv(u, k, skip)
    assert sum(saved.values()) == 4 * (u.numel() + k.numel() + skip.numel())
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fft_conv_reference(u, k, skip)
    assert sum(saved.values()) > 4 * 4 * u.numel()  # padded u, rfft(u), padded k, rfft(k), ...


def test_fft_conv_rejects_mismatched_shapes():
    u, k, skip = _conv_inputs(2, 4, 10)
    with pytest.raises(ValueError, match="u \\[B,H,L\\], k \\[H,L\\], D \\[H\\]"):
        fft_conv(u, k[:, :9], skip)


# ---- Woodbury step ---------------------------------------------------------------------------


def _woodbury_inputs(heads=5, length=32):
    k = (0.3 * torch.randn(4, heads, length // 2 + 1, dtype=torch.complex128)).requires_grad_()
    s = 1 + torch.exp(-2j * math.pi * torch.arange(length // 2 + 1, dtype=torch.float64) / length)
    return k, s


def test_woodbury_equals_reference_in_value_and_gradient():
    k, s = _woodbury_inputs()
    upstream = torch.randn(5, 17, dtype=torch.complex128)
    ours, reference = woodbury(k, s), woodbury_reference(k, s)
    assert torch.equal(ours, reference)  # the same expression
    (grad,) = torch.autograd.grad(ours, k, upstream)
    (grad_reference,) = torch.autograd.grad(reference, k, upstream)
    assert _rel(grad, grad_reference) < 1e-12


def test_woodbury_passes_gradcheck():
    k, s = _woodbury_inputs(heads=2, length=9)
    assert torch.autograd.gradcheck(lambda k_: woodbury(k_, s), (k,))


def test_woodbury_saves_two_spectra_for_backward():
    saved = []
    k, s = _woodbury_inputs()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        woodbury(k, s)
    assert saved == [(5, 17), (5, 17)]


def test_woodbury_rejects_mismatched_shapes():
    k, s = _woodbury_inputs()
    with pytest.raises(ValueError, match="k \\[4, H, F\\] and s \\[F\\]"):
        woodbury(k[:3], s)


# ---- output stage: GELU, channel mask, position-wise linear ------------------------------------


def _gelu_linear_inputs(batch=2, heads=6, out=5, length=40, dtype=torch.float64, masked=True):
    y = torch.randn(batch, heads, length, dtype=dtype, requires_grad=True)
    mask = (torch.rand(batch, heads, 1, dtype=dtype) > 0.3).to(dtype) / 0.7 if masked else None
    weight = torch.randn(out, heads, 1, dtype=dtype, requires_grad=True)
    bias = torch.randn(out, dtype=dtype, requires_grad=True)
    return y, mask, weight, bias


@pytest.mark.parametrize("masked", [True, False], ids=["channel-mask", "no-mask"])
def test_gelu_linear_equals_reference_in_value_and_gradients(masked):
    y, mask, weight, bias = _gelu_linear_inputs(masked=masked)
    upstream = torch.randn(2, 5, 40, dtype=torch.float64)
    results = []
    for path in (gelu_linear, gelu_linear_reference):
        out = path(y, mask, weight, bias)
        results.append((out, *torch.autograd.grad(out, (y, weight, bias), upstream)))
    for name, ours, reference in zip(("out", "grad y", "grad weight", "grad bias"), *results):
        assert _rel(ours, reference) < 1e-12, name


def test_gelu_linear_passes_gradcheck():
    y, mask, weight, bias = _gelu_linear_inputs(heads=3, out=2, length=7)
    assert torch.autograd.gradcheck(lambda *args: gelu_linear(args[0], mask, *args[1:]), (y, weight, bias))


def test_gelu_linear_keeps_y_not_the_activation_for_backward():
    saved = []
    y, mask, weight, bias = _gelu_linear_inputs(dtype=torch.float32)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        gelu_linear(y, mask, weight, bias)
    assert [t.shape for t in saved] == [y.shape, mask.shape, weight.shape]
    assert saved[0] is y


def test_gelu_linear_under_bf16_autocast_matches_reference():
    """The linear in bf16 as autocast's conv1d, GELU and the gradients of y in float32."""
    y, mask, weight, bias = _gelu_linear_inputs(heads=16, out=16, length=64, dtype=torch.float32)
    upstream = torch.randn(2, 16, 64)
    results = []
    for path in (gelu_linear, gelu_linear_reference):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = path(y, mask, weight, bias)
        results.append((out, *torch.autograd.grad(out, (y, weight, bias), upstream.to(out.dtype))))
    for name, ours, reference in zip(("out", "grad y", "grad weight", "grad bias"), *results):
        assert ours.dtype == reference.dtype, name
        assert _rel(ours.float(), reference.float()) < 2e-2, name
    assert results[0][0].dtype == torch.bfloat16 and results[0][1].dtype == torch.float32


def test_gelu_linear_rejects_mismatched_shapes():
    y, mask, weight, bias = _gelu_linear_inputs()
    with pytest.raises(ValueError, match="weight \\[O,H,1\\]"):
        gelu_linear(y, mask, weight[:, :3], bias)
    with pytest.raises(ValueError, match="mask \\[B,H,1\\]"):
        gelu_linear(y, mask[:1], weight, bias)
