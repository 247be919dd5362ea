"""ViS4mer and its baselines: the paper's demo API, shapes, bad input, learning, order sensitivity, pooling."""

import pytest
import torch

from vis4mer import MeanPoolBaseline, TransformerBaseline, ViS4mer, build_model, build_optimizer
from vis4mer.model import pool_pairs


def test_paper_demo_verbatim():
    model = ViS4mer(d_input=1024, l_max=2048, d_output=10, d_model=1024, n_layers=3)
    with torch.no_grad():
        assert model(torch.randn(32, 2048, 1024)).shape == (32, 10)


@pytest.mark.parametrize("length", [1, 2, 7, 64, 99, 100])
def test_any_length_up_to_l_max(length):
    model = ViS4mer(d_input=12, l_max=100, d_output=4, d_model=16, n_layers=3)
    out = model(torch.randn(2, length, 12))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.randn(2, 10), r"\[batch, length, 12\]"),
        (torch.randn(2, 10, 13), r"\[batch, length, 12\]"),
        (torch.randn(2, 101, 12), "exceeds l_max=100"),
        (torch.full((2, 10, 12), float("nan")), "NaN or infinite"),
        (torch.randn(2, 0, 12), "zero length"),
    ],
)
@pytest.mark.parametrize("name", ["vis4mer", "transformer", "meanpool"])
def test_bad_input_raises_value_error_naming_the_problem(name, x, message):
    model = build_model(name, d_input=12, l_max=100, d_output=4, d_model=16, n_layers=2)
    with pytest.raises(ValueError, match=message):
        model(x)


def test_width_must_halve_cleanly():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*n_layers"):
        ViS4mer(d_input=8, l_max=16, d_output=2, d_model=12, n_layers=3)


def test_identity_encoder_when_widths_match():
    assert isinstance(ViS4mer(d_input=16, l_max=8, d_output=2, d_model=16, n_layers=1).encoder, torch.nn.Identity)


@pytest.mark.parametrize("name", ["vis4mer", "transformer", "meanpool"])
def test_tiny_model_overfits_tiny_batch(name):
    model = build_model(name, d_input=8, l_max=64, d_output=3, d_model=16, n_layers=2, dropout=0.0)
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.0)
    x, y = torch.randn(6, 64, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    assert (model(x).argmax(-1) == y).all()


def _reversed_in_time(model, x):
    model.eval()
    with torch.no_grad():
        return model(x), model(x.flip(1))


def test_only_meanpool_is_blind_to_order():
    x = torch.randn(2, 32, 8)
    kwargs = dict(d_input=8, l_max=32, d_output=3, d_model=16, n_layers=2)
    same, flipped = _reversed_in_time(MeanPoolBaseline(**kwargs), x)
    assert torch.allclose(same, flipped, atol=1e-6)
    for model in (ViS4mer(**kwargs), TransformerBaseline(**kwargs, n_heads=2)):
        same, flipped = _reversed_in_time(model, x)
        assert not torch.allclose(same, flipped, atol=1e-4), type(model).__name__


def test_build_model_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown model 'lstm'"):
        build_model("lstm", 8, 16, 2, 16, 1)


@pytest.mark.parametrize("length", [1, 2, 7, 8, 33])
def test_pair_pooling_is_avgpool_with_ceil_mode_and_keeps_nothing_for_backward(length):
    x = torch.randn(3, length, 5, dtype=torch.float64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        ours = pool_pairs(x)
    reference = torch.nn.AvgPool1d(2, ceil_mode=True)(x.transpose(1, 2)).transpose(1, 2)  # [B, ceil(L/2), H]
    upstream = torch.randn_like(reference)
    assert torch.equal(ours, reference)
    assert torch.equal(torch.autograd.grad(ours, x, upstream)[0], torch.autograd.grad(reference, x, upstream)[0])
    assert saved == []


def test_block_dropout_element_or_whole_channels():
    """The block's dropout on its mixer output [B, L, H]: single values (ours) or whole channels over
    every time step (the reference code's Dropout2d on [B, H, L])."""
    torch.manual_seed(0)
    ones = torch.ones(4, 50, 16)
    for name, expect_channels in (("element", False), ("channel", True)):
        model = ViS4mer(d_input=8, l_max=50, d_output=2, d_model=16, n_layers=1, dropout=0.5, block_dropout=name).train()
        dropped = model.blocks[0].dropout(ones)
        assert set(dropped.unique().tolist()) == {0.0, 2.0}
        constant_in_time = bool((dropped == dropped[:, :1]).all())
        assert constant_in_time == expect_channels
    with pytest.raises(ValueError, match="unknown block_dropout 'time'"):
        ViS4mer(d_input=8, l_max=50, d_output=2, d_model=16, n_layers=1, block_dropout="time")
