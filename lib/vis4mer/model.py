"""ViS4mer and the baselines it is compared with, on the same inputs [B, L, d_input] -> [B, d_output].

ViS4mer (multi-scale S4 decoder):
    encoder Linear(d_input -> d_model) (identity when equal)
    n_layers × [ pre-LayerNorm -> mixer -> dropout (element- or channel-wise) -> residual
                 -> AvgPool1d(2) over time -> Linear(H -> H/2) -> GELU ]      (H halves per layer)
    mean over time -> Linear decoder (d_model / 2^n_layers -> d_output)
The mixer is an S4 layer; the Transformer baseline swaps in self-attention (SDPA) and adds
sinusoidal positions (attention alone cannot see order); the mean-pool baseline averages over
time first and is therefore blind to order by construction.

Pooling (`pool_pairs`) is AvgPool1d(2) with ceil_mode: an odd length keeps its last step
(averaged alone) instead of dropping it, so layer i sees ceil(L / 2^i) steps and its S4 is
built for l_max_i = ceil(l_max / 2^i).
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from vis4mer.s4 import S4


def _check_input(x: torch.Tensor, d_input: int, l_max: int | None, check_finite: bool) -> None:
    if x.dim() != 3 or x.shape[-1] != d_input:
        raise ValueError(f"expected input of shape [batch, length, {d_input}], got {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError("input has zero length")
    if l_max is not None and x.shape[1] > l_max:
        raise ValueError(f"input length {x.shape[1]} exceeds l_max={l_max}; build the model with a larger l_max")
    if check_finite and not torch.isfinite(x).all():
        raise ValueError("input contains NaN or infinite values")


class SelfAttention(nn.Module):
    """Multi-head self-attention on [B, H, L] through scaled_dot_product_attention."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = u.transpose(1, 2)  # [B, L, H]
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # [B, h, L, d]
        return self.out(y.transpose(1, 2).reshape(batch, length, width)).transpose(1, 2)  # [B, H, L]


def pool_pairs(x: torch.Tensor) -> torch.Tensor:
    """Mean over each pair of time steps, [B, L, H] -> [B, ceil(L/2), H], an odd last step kept
    as it is: AvgPool1d(2, ceil_mode=True) over time, but it keeps nothing for backward
    (AvgPool1d keeps its input, one [B, L, H] tensor per block)."""
    length = x.shape[1]
    pairs = x[:, : length - length % 2].unflatten(1, (length // 2, 2)).mean(2)  # [B, L//2, H]
    return torch.cat([pairs, x[:, length - 1 :]], dim=1) if length % 2 else pairs


BLOCK_DROPOUT = ("element", "channel")


class ChannelDropout(nn.Dropout1d):
    """Dropout of whole channels on [B, L, H]: each (sample, channel) is zeroed at every time
    step or at none (the reference code's Dropout2d on [B, H, L])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class MultiScaleBlock(nn.Module):
    """pre-LN -> mixer -> dropout -> residual -> AvgPool1d(2) -> Linear(H -> H/2) -> GELU, on [B, L, H].

    `block_dropout`: ``element`` drops single values of the mixer's output (ours); ``channel``
    drops whole channels over all time steps (the reference code's Dropout2d on [B, H, L]).
    """

    def __init__(self, width: int, mixer: nn.Module, dropout: float, block_dropout: str = "element"):
        super().__init__()
        if block_dropout not in BLOCK_DROPOUT:
            raise ValueError(f"unknown block_dropout {block_dropout!r}; choose one of {', '.join(BLOCK_DROPOUT)}")
        self.norm = nn.LayerNorm(width)
        self.mixer = mixer  # [B, H, L] -> [B, H, L]
        self.dropout = nn.Dropout(dropout) if block_dropout == "element" else ChannelDropout(dropout)
        self.project = nn.Linear(width, width // 2)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.mixer(self.norm(x).transpose(1, 2)).transpose(1, 2)  # [B, L, H]
        x = x + self.dropout(z)
        x = pool_pairs(x)  # [B, ceil(L/2), H]
        return self.activation(self.project(x))  # [B, ceil(L/2), H/2]


class _MultiScaleClassifier(nn.Module):
    """Encoder, multi-scale blocks with a per-layer mixer, mean over time, decoder."""

    def __init__(self, d_input, l_max, d_output, d_model, n_layers, dropout, make_mixer, check_finite=True, block_dropout="element"):
        super().__init__()
        if d_model % (2**n_layers):
            raise ValueError(f"d_model={d_model} must be divisible by 2**n_layers={2**n_layers} (width halves per layer)")
        self.d_input, self.l_max, self.check_finite = d_input, l_max, check_finite
        self.encoder = nn.Linear(d_input, d_model) if d_input != d_model else nn.Identity()
        self.blocks = nn.ModuleList(
            MultiScaleBlock(d_model // 2**i, make_mixer(d_model // 2**i, math.ceil(l_max / 2**i)), dropout, block_dropout)
            for i in range(n_layers)
        )
        self.decoder = nn.Linear(d_model // 2**n_layers, d_output)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, d_input] -> [B, d_output]."""
        _check_input(x, self.d_input, self.l_max, self.check_finite)
        x = self.embed(x)  # [B, L, d_model]
        for block in self.blocks:
            x = block(x)
        return self.decoder(x.mean(dim=1))


class ViS4mer(_MultiScaleClassifier):
    """ViS4mer (Islam & Bertasius, ECCV 2022): the paper's demo works verbatim.

    `block_dropout` ("element" | "channel", :class:`MultiScaleBlock`) and `shared_eigenvalues`
    (:class:`vis4mer.s4.S4`) choose ours or the reference code's variant of each.

    >>> model = ViS4mer(d_input=1024, l_max=2048, d_output=10, d_model=1024, n_layers=3)
    >>> model(torch.randn(32, 2048, 1024)).shape
    torch.Size([32, 10])
    """

    def __init__(
        self,
        d_input: int,
        l_max: int,
        d_output: int,
        d_model: int = 1024,
        n_layers: int = 3,
        dropout: float = 0.2,
        d_state: int = 64,
        mode: str = "nplr",
        backend: str = "auto",
        ssm_lr: float = 1e-3,
        check_finite: bool = True,
        block_dropout: str = "element",
        shared_eigenvalues: bool = False,
    ):
        def s4(width, length):
            return S4(width, l_max=length, d_state=d_state, dropout=dropout, mode=mode, backend=backend, ssm_lr=ssm_lr,
                      shared_eigenvalues=shared_eigenvalues)

        super().__init__(d_input, l_max, d_output, d_model, n_layers, dropout, s4, check_finite, block_dropout)


def sinusoidal_positions(length: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """[L, width] sine/cosine positions (Vaswani et al.)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table.to(dtype)


class TransformerBaseline(_MultiScaleClassifier):
    """Same width, depth and multi-scale pooling as ViS4mer, with self-attention in place of S4."""

    def __init__(
        self,
        d_input: int,
        l_max: int,
        d_output: int,
        d_model: int = 1024,
        n_layers: int = 3,
        dropout: float = 0.2,
        n_heads: int = 8,
        check_finite: bool = True,
    ):
        super().__init__(
            d_input, l_max, d_output, d_model, n_layers, dropout,
            lambda width, _length: SelfAttention(width, n_heads, dropout), check_finite,
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x)
        return x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)


class MeanPoolBaseline(nn.Module):
    """Permutation-invariant: mean over time of the features, then an MLP."""

    def __init__(
        self,
        d_input: int,
        l_max: int,
        d_output: int,
        d_model: int = 1024,
        n_layers: int = 2,
        dropout: float = 0.2,
        check_finite: bool = True,
    ):
        super().__init__()
        self.d_input, self.l_max, self.check_finite = d_input, l_max, check_finite
        layers: list[nn.Module] = [nn.LayerNorm(d_input), nn.Linear(d_input, d_model), nn.GELU(), nn.Dropout(dropout)]
        for _ in range(n_layers - 1):
            layers += [nn.Linear(d_model, d_model), nn.GELU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*layers, nn.Linear(d_model, d_output))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.d_input, self.l_max, self.check_finite)
        return self.mlp(x.mean(dim=1))


MODELS: dict[str, type[nn.Module]] = {
    "vis4mer": ViS4mer,
    "transformer": TransformerBaseline,
    "meanpool": MeanPoolBaseline,
}


SHARED_ARGUMENTS = ("d_input", "l_max", "d_output", "d_model", "n_layers", "dropout")  # build_model's own


def model_options(name: str) -> tuple[str, ...]:
    """The keyword arguments model `name` takes beyond SHARED_ARGUMENTS (config models.<m>.kwargs)."""
    parameters = inspect.signature(MODELS[name]).parameters
    return tuple(key for key in parameters if key not in SHARED_ARGUMENTS)


def build_model(name: str, d_input: int, l_max: int, d_output: int, d_model: int, n_layers: int, dropout: float = 0.0, **kwargs) -> nn.Module:
    """A model by name ("vis4mer", "transformer", "meanpool") with shared hyper-parameters."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](d_input=d_input, l_max=l_max, d_output=d_output, d_model=d_model, n_layers=n_layers, dropout=dropout, **kwargs)
