"""The S4 layer: convolution ≡ recurrence, causality, stability, gradients, dropout, groups."""

import pytest
import torch

from vis4mer import s4 as s4_module
from vis4mer.kernels import fft_conv_reference, gelu_linear_reference, woodbury_reference
from vis4mer.model import ViS4mer
from vis4mer.optim import build_optimizer
from vis4mer.s4 import S4, dense_state_matrix

# the fast paths of the S4 layer and, for each, its plain-torch reference (autograd's gradients)
REFERENCE_PATHS = {"fft_conv": fft_conv_reference, "woodbury": woodbury_reference, "gelu_linear": gelu_linear_reference}


def _run_recurrence(layer: S4, u: torch.Tensor) -> torch.Tensor:
    params = layer.step_parameters()
    state = layer.initial_state(u.shape[0], params)
    outputs = []
    for t in range(u.shape[-1]):
        y, state = layer.step(u[..., t], state, params)
        outputs.append(y)
    return torch.stack(outputs, dim=-1)


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["float32", "float64"]
)
@pytest.mark.parametrize(("l_max", "length"), [(128, 128), (127, 127), (255, 100)])
def test_convolution_equals_recurrence(dtype, tolerance, l_max, length):
    layer = S4(6, l_max=l_max, d_state=64).to(dtype).eval()
    u = torch.randn(2, 6, length, dtype=dtype)
    assert _rel(layer(u), _run_recurrence(layer, u)) < tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_diagonal_mode_convolution_equals_recurrence(dtype, tolerance):
    layer = S4(4, l_max=65, d_state=32, mode="diag").to(dtype).eval()
    u = torch.randn(2, 4, 65, dtype=dtype)
    assert _rel(layer(u), _run_recurrence(layer, u)) < tolerance


def _outputs_and_gradients(model, x):
    y = model(x)
    y.square().mean().backward()
    return {"output": y.detach(), **{name: p.grad.clone() for name, p in model.named_parameters()}}


@pytest.mark.parametrize("length", [256, 255])
def test_fast_paths_give_the_reference_outputs_and_gradients(monkeypatch, length):
    """The whole model in float64, fast paths against the plain-torch references they replace."""
    model = ViS4mer(d_input=8, l_max=length, d_output=3, d_model=16, n_layers=2, dropout=0.0).double()
    x = torch.randn(2, length, 8, dtype=torch.float64)
    fast = _outputs_and_gradients(model, x)
    model.zero_grad()
    for name, reference in REFERENCE_PATHS.items():
        monkeypatch.setattr(s4_module, name, reference)
    reference = _outputs_and_gradients(model, x)
    assert fast.keys() == reference.keys()
    for name in fast:
        assert _rel(fast[name], reference[name]) < 1e-10, name


def test_layer_is_causal():
    layer = S4(4, l_max=64).double().eval()
    u = torch.randn(1, 4, 64, dtype=torch.float64)
    changed = u.clone()
    changed[..., 40:] = torch.randn(1, 4, 24, dtype=torch.float64) * 10
    y, y_changed = layer(u), layer(changed)
    assert torch.allclose(y[..., :40], y_changed[..., :40], rtol=0, atol=1e-12)
    assert not torch.allclose(y[..., 40:], y_changed[..., 40:])


def test_state_matrix_stays_hurwitz_under_any_parameter_values():
    layer = S4(3, l_max=32)
    with torch.no_grad():
        layer.kernel.log_neg_real.copy_(torch.linspace(-30, 10, layer.kernel.log_neg_real.numel()).view_as(layer.kernel.log_neg_real))
        layer.kernel.imag.mul_(-50)
        layer.kernel.low_rank.mul_(20)
    a = dense_state_matrix(layer.kernel.ssm(torch.float64))
    assert torch.linalg.eigvals(a).real.max() < 0
    assert torch.isfinite(layer(torch.randn(1, 3, 32))).all()


@pytest.mark.parametrize("length", [512, 511])
def test_gradients_finite_and_reach_every_parameter(length):
    """The original's pykeops path gave non-finite dt/Λ gradients in layer 2 at L=512."""
    model = ViS4mer(d_input=16, l_max=length, d_output=3, d_model=32, n_layers=2, dropout=0.0)
    loss = model(torch.randn(4, length, 16)).logsumexp(-1).mean()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_plain_adamw_with_weight_decay_everywhere_never_gives_nan():
    model = ViS4mer(d_input=8, l_max=256, d_output=2, d_model=16, n_layers=2, dropout=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)  # no S4 group on purpose
    x, y = torch.randn(8, 256, 8), torch.randint(0, 2, (8,))
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_channel_dropout_drops_whole_channels():
    layer = S4(16, l_max=32, dropout=0.5)
    dropout = layer.dropout
    assert isinstance(dropout, torch.nn.Dropout1d)
    dropout.train()
    out = dropout(torch.ones(8, 16, 32))  # [B, H, L]
    per_channel = (out == 0).all(dim=-1) | (out != 0).all(dim=-1)
    assert per_channel.all(), "dropout must zero whole (batch, channel) rows across time"
    assert (out == 0).any() and (out != 0).any()


def test_output_stage_draws_the_channel_dropout_of_the_activation():
    """The layer draws its [B, H, 1] mask from Dropout1d: the same mask, the same output."""
    layer = S4(16, l_max=32, dropout=0.5).train()
    y = torch.randn(4, 16, 32)

    def linear(h):
        return torch.nn.functional.conv1d(h, layer.output_linear.weight, layer.output_linear.bias)

    torch.manual_seed(7)
    expected = linear(layer.dropout(torch.nn.functional.gelu(y)))
    torch.manual_seed(7)
    assert torch.allclose(layer._output(y), expected, rtol=0, atol=1e-6)
    assert torch.equal(layer.eval()._output(y), linear(torch.nn.functional.gelu(y)))


def test_ssm_parameters_get_their_own_group():
    model = ViS4mer(d_input=8, l_max=32, d_output=2, d_model=16, n_layers=2)
    optimizer = build_optimizer(model, lr=5e-4, weight_decay=0.01)
    by_id = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    for name, parameter in model.named_parameters():
        group = by_id[id(parameter)]
        if name.split(".")[-1] in {"log_neg_real", "imag", "B", "low_rank", "log_dt"}:
            assert (group["lr"], group["weight_decay"]) == (1e-3, 0.0), name
        else:
            assert (group["lr"], group["weight_decay"]) == (5e-4, 0.01), name
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_too_long_input_names_l_max():
    with pytest.raises(ValueError, match="l_max=16"):
        S4(4, l_max=16)(torch.randn(1, 4, 17))


@pytest.mark.slow
def test_keops_backend_gives_the_same_layer_output():
    pytest.importorskip("pykeops")
    torch.manual_seed(1)
    reference = S4(4, l_max=100, backend="torch").eval()
    keops = S4(4, l_max=100, backend="keops").eval()
    keops.load_state_dict(reference.state_dict())
    u = torch.randn(2, 4, 100)
    assert _rel(keops(u), reference(u)) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("l_max", [2955, 1024])
def test_cuda_extension_gives_the_same_layer_output_and_gradients(l_max):
    from vis4mer.kernels import cauchy_cuda

    module, reason = cauchy_cuda.load()
    assert module is not None, reason
    torch.manual_seed(1)
    reference = S4(64, l_max=l_max, backend="torch").cuda()
    extension = S4(64, l_max=l_max, backend="cuda").cuda()
    extension.load_state_dict(reference.state_dict())
    u = torch.randn(2, 64, l_max, device="cuda")
    outputs = {}
    for name, layer in {"torch": reference, "cuda": extension}.items():
        y = layer(u)
        y.square().mean().backward()
        outputs[name] = [y.detach()] + [p.grad for p in layer.kernel.parameters()]
    for ours, ref in zip(outputs["cuda"], outputs["torch"]):
        assert _rel(ours, ref) < 1e-5


def test_shared_eigenvalues_are_one_vector_for_all_channels():
    """The reference code's S4: one Λ for every channel (B, C, P, Δ stay per channel)."""
    shared, own = S4(6, l_max=64, d_state=16, shared_eigenvalues=True), S4(6, l_max=64, d_state=16)
    assert shared.kernel.log_neg_real.shape == shared.kernel.imag.shape == (1, 8)
    assert own.kernel.log_neg_real.shape == (6, 8)
    assert sum(p.numel() for p in own.parameters()) - sum(p.numel() for p in shared.parameters()) == 2 * 5 * 8
    optimizer = build_optimizer(shared, lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        optimizer.zero_grad()
        shared(torch.randn(2, 6, 64)).square().mean().backward()
        optimizer.step()
    eigenvalues = shared.kernel.ssm().eigenvalues  # [H, M]
    assert eigenvalues.shape == (6, 8) and torch.equal(eigenvalues, eigenvalues[:1].expand(6, -1))
    assert not torch.equal(eigenvalues[0], S4(6, l_max=64, d_state=16, shared_eigenvalues=True).kernel.ssm().eigenvalues[0])  # trained
    layer = shared.double().eval()
    u = torch.randn(2, 6, 64, dtype=torch.float64)
    assert _rel(layer(u), _run_recurrence(layer, u)) < 1e-10  # the kernel of the shared Λ is the recurrence's
