"""The S4 layer: an SSM convolution kernel (NPLR "S4" or diagonal "S4D") inside a residual-free layer.

Layer (layout [B, H, L] as in the paper's code):
    y = output_linear( dropout1d( GELU( K * u + D ⊙ u ) ) )
where K [H, L] is the SSM's convolution kernel, applied by zero-padded FFT (causal, any L;
`vis4mer.kernels.fftconv`, which keeps only u, K and D for backward).

Kernel math (NPLR), written from the equations. Continuous SSM x' = A x + B u, y = C x with
A = Λ - P Pᴴ (Λ diagonal, Re Λ < 0 by construction, so A is Hurwitz: its Hermitian part
Re Λ - P Pᴴ is negative definite). Bilinear discretisation with step Δ gives the truncated
generating function at the L-th roots of unity z (C̃ = C (I - Āᴸ) is the trained parameter):

    K̂(z) = 2 C̃ M(z)⁻¹ B,   M(z) = (2/Δ)(1 - z) - (1 + z) A = D(z) + (1 + z) P Pᴴ
    D(z) = diag( (2/Δ + λ)(μ - z) ),  μ = (2/Δ - λ)/(2/Δ + λ),  |μ| > 1

Woodbury on the rank-1 term:
    K̂(z) = 2 [ k00 - (1 + z) k01 k10 / (1 + (1 + z) k11) ],   k_ab = a D⁻¹ b

(`vis4mer.kernels.woodbury`, which keeps two [H, F] partial derivatives for backward).
Every k_ab is a Cauchy sum over the poles μ (outside the unit circle, so never singular) with
nodes exactly on the unit circle. Unlike the usual form 2/(1+z)·(g(z) - A)⁻¹ with
g(z) = (2/Δ)(1-z)/(1+z), nothing here divides by 1 + z, so the node z = -1 (frequency L/2)
is finite in value and gradient. The kernel is the inverse real FFT of K̂ over
⌊L/2⌋ + 1 nodes with exactly L taps, for odd and even L.

Recurrent mode (`step`) runs the same SSM as a dense recurrence over the full conjugate-
symmetric state (N complex entries), prepared in float64 from A, B and C = C̃ (I - Āᴸ)⁻¹,
independently of the Cauchy/Woodbury path: their agreement is the test of the kernel math.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vis4mer.hippo import nplr_legs
from vis4mer.kernels import cauchy_conj, fft_conv, gelu_linear, select_cauchy_backend, vandermonde_conj, woodbury

SSM_OPTIM = "_optim"  # attribute marking parameters for their own optimiser group


def _mark(parameter: nn.Parameter, lr: float) -> nn.Parameter:
    setattr(parameter, SSM_OPTIM, {"lr": lr, "weight_decay": 0.0})
    return parameter


def _complex_parameter(value: torch.Tensor) -> nn.Parameter:
    # stored as real [..., 2] so that every optimiser treats it as two real numbers
    return nn.Parameter(torch.view_as_real(value.to(torch.complex64)).clone())


def _as_complex(parameter: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(parameter)


def _complex_dtype(real_dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if real_dtype == torch.float64 else torch.complex64


@dataclass
class StepParameters:
    """Dense recurrence over the full conjugate-symmetric state: x ← Ā x + B̄ u, y = Re(C x)."""

    transition: torch.Tensor  # Ā  [H, N, N] complex
    input: torch.Tensor  # B̄  [H, N] complex
    output: torch.Tensor  # C  [H, N] complex


@dataclass
class SSMTensors:
    """The continuous SSM in the eigenbasis, half spectrum (conjugates implied)."""

    eigenvalues: torch.Tensor  # Λ [H, M] complex, M = N/2
    input: torch.Tensor  # B [H, M] complex
    output: torch.Tensor  # C̃ (NPLR) or C (diagonal) [H, M] complex
    low_rank: torch.Tensor | None  # P [H, M] complex, NPLR only
    step: torch.Tensor  # Δ [H] real


def _full(half: torch.Tensor) -> torch.Tensor:
    return torch.cat([half, half.conj()], dim=-1)  # [..., N/2] -> [..., N]


def dense_state_matrix(ssm: SSMTensors) -> torch.Tensor:
    """A over the full conjugate-symmetric state: diag(Λ) - P Pᴴ, [H, N, N] complex."""
    a = torch.diag_embed(_full(ssm.eigenvalues))
    if ssm.low_rank is not None:
        p = _full(ssm.low_rank)  # [H, N]
        a = a - p[:, :, None] * p.conj()[:, None, :]
    return a


class SSMKernel(nn.Module):
    """Parameters shared by both kernel modes: Λ (stable by construction), B, C, Δ.

    Λ is one vector per channel, [H, M], or with `shared_eigenvalues` one vector shared by all
    channels, [1, M] (the reference code's S4: its trainable A is not repeated over channels);
    B, C, P and Δ are per channel either way.

    Subclasses set `output_is_truncated` (the C parameter is C̃ = C (I - Āᴸ)) and `discretise`.
    """

    output_is_truncated: bool

    def __init__(
        self, d_model: int, d_state: int, l_max: int, dt_min: float, dt_max: float, ssm_lr: float,
        shared_eigenvalues: bool = False,
    ):
        super().__init__()
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model, self.d_state, self.l_max = d_model, d_state, l_max
        nplr = nplr_legs(d_state)
        heads = d_model
        rows = 1 if shared_eigenvalues else heads
        # Λ = -exp(log_neg_real) + i·imag: the real part stays negative whatever the optimiser does
        self.log_neg_real = _mark(nn.Parameter(torch.log(-nplr.eigenvalues.real).float().repeat(rows, 1)), ssm_lr)  # [H or 1, M]
        self.imag = _mark(nn.Parameter(nplr.eigenvalues.imag.float().repeat(rows, 1)), ssm_lr)  # [H or 1, M]
        self.B = _mark(_complex_parameter(nplr.input_matrix.repeat(heads, 1)), ssm_lr)  # [H, M, 2]
        self.C = _complex_parameter(torch.randn(heads, d_state // 2, dtype=torch.complex64))  # [H, M, 2]
        log_dt = torch.rand(heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = _mark(nn.Parameter(log_dt), ssm_lr)  # [H], Δ log-uniform in [dt_min, dt_max]

    def ssm(self, dtype: torch.dtype | None = None) -> SSMTensors:
        """The SSM from the parameters, optionally cast to a real dtype (float64 for set-up)."""

        def get(name):
            value = getattr(self, name, None)
            return None if value is None else (value if dtype is None else value.to(dtype))

        complex_or_none = lambda t: None if t is None else _as_complex(t)  # noqa: E731
        return SSMTensors(
            eigenvalues=(-torch.exp(get("log_neg_real")) + 1j * get("imag")).expand(self.d_model, -1),  # [H, M]
            input=_as_complex(get("B")),
            output=_as_complex(get("C")),
            low_rank=complex_or_none(get("low_rank")),
            step=torch.exp(get("log_dt")),
        )

    def step_parameters(self, dtype: torch.dtype) -> StepParameters:
        """Discretise densely in float64 (cheap: O(H N³)), then cast to the run's complex dtype."""
        with torch.no_grad():
            ssm = self.ssm(torch.float64)
            a = dense_state_matrix(ssm)  # [H, N, N]
            eye = torch.eye(self.d_state, dtype=a.dtype, device=a.device)
            a_bar, b_bar = self.discretise(a, _full(ssm.input), ssm.step[:, None, None], eye)
            c = _full(ssm.output)  # [H, N]
            if self.output_is_truncated:  # C = C̃ (I - Āᴸ)⁻¹
                decay = torch.linalg.matrix_power(a_bar, self.l_max)
                c = torch.linalg.solve((eye - decay).mT, c[..., None])[..., 0]
            target = _complex_dtype(dtype)
            return StepParameters(a_bar.to(target), b_bar.to(target), c.to(target))


class NPLRKernel(SSMKernel):
    """S4: A = Λ - P Pᴴ (HiPPO-LegS), bilinear discretisation, Cauchy + Woodbury at roots of unity."""

    output_is_truncated = True

    def __init__(
        self, d_model, d_state=64, l_max=1024, dt_min=1e-3, dt_max=1e-1, ssm_lr=1e-3, shared_eigenvalues=False, backend="auto"
    ):
        super().__init__(d_model, d_state, l_max, dt_min, dt_max, ssm_lr, shared_eigenvalues)
        nplr = nplr_legs(d_state)
        self.low_rank = _mark(_complex_parameter(nplr.low_rank[0].repeat(d_model, 1)), ssm_lr)  # P [H, M, 2]
        self.backend = backend

    @staticmethod
    def discretise(a, b, dt, eye):
        """Bilinear: Ā = (I - Δ/2 A)⁻¹ (I + Δ/2 A), B̄ = (I - Δ/2 A)⁻¹ Δ B."""
        backward_euler = eye - dt / 2 * a
        a_bar = torch.linalg.solve(backward_euler, eye + dt / 2 * a)
        b_bar = torch.linalg.solve(backward_euler, dt[..., 0] * b)
        return a_bar, b_bar

    def forward(self, length: int) -> torch.Tensor:
        """Kernel K [H, length] (length ≤ l_max: the first taps of the l_max kernel)."""
        ssm = self.ssm()
        lam, b, c, p = ssm.eigenvalues, ssm.input, ssm.output, ssm.low_rank  # [H, M] each
        two_over_dt = (2 / ssm.step)[:, None]  # [H, 1]
        poles = (two_over_dt - lam) / (two_over_dt + lam)  # μ [H, M], |μ| > 1
        scale = 1 / (two_over_dt + lam)  # [H, M]
        numerators = torch.stack([c * b, c * p, p.conj() * b, p.conj() * p]) * scale  # [4, H, M]
        frequencies = torch.arange(self.l_max // 2 + 1, device=lam.device, dtype=lam.real.dtype)
        nodes = torch.exp(-2j * math.pi / self.l_max * frequencies)  # z [F], F = l_max//2 + 1
        backend = select_cauchy_backend(self.backend, lam.device, lam.dtype)
        k = -cauchy_conj(numerators, nodes, poles, backend)  # (k00, k01, k10, k11) [4, H, F]
        spectrum = woodbury(k, 1 + nodes)  # K̂ = 2 [k00 - (1 + z) k01 k10 / (1 + (1 + z) k11)]  [H, F]
        return torch.fft.irfft(spectrum, n=self.l_max)[..., :length]  # [H, length]


class DiagonalKernel(SSMKernel):
    """S4D: A = Λ (the diagonal part of HiPPO-LegS's NPLR form), zero-order hold, Vandermonde kernel."""

    output_is_truncated = False

    @staticmethod
    def discretise(a, b, dt, eye):
        """ZOH: Ā = exp(Δ A), B̄ = A⁻¹ (Ā - I) B."""
        a_bar = torch.linalg.matrix_exp(dt * a)
        b_bar = torch.linalg.solve(a, (a_bar - eye) @ b[..., None])[..., 0]
        return a_bar, b_bar

    def forward(self, length: int) -> torch.Tensor:
        ssm = self.ssm()
        dt_lam = ssm.step[:, None] * ssm.eigenvalues  # [H, M]
        coefficients = ssm.output * (torch.exp(dt_lam) - 1) / ssm.eigenvalues * ssm.input  # C B̄ [H, M]
        return vandermonde_conj(coefficients, dt_lam, length)  # [H, length]


KERNELS = {"nplr": NPLRKernel, "diag": DiagonalKernel}


class GeluPointwiseLinear(nn.Conv1d):
    """Conv1d(H, H, kernel_size=1) applied to mask ⊙ GELU(y): forward(y [B, H, L], mask [B, H, 1]
    or None) through `gelu_linear`, which keeps only y for backward. A Conv1d, so that its
    parameters, their names and their FLOPs stay the position-wise linear's."""

    def __init__(self, width: int):
        super().__init__(width, width, kernel_size=1)

    def forward(self, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return gelu_linear(y, mask, self.weight, self.bias)


class S4(nn.Module):
    """S4 layer on [B, H, L]: SSM convolution, D skip, GELU, channel dropout, position-wise linear.

    mode: "nplr" (S4, default) or "diag" (S4D, for ablations).
    backend: Cauchy kernel backend for "nplr": "auto" | "torch" | "keops" | "cuda".
    shared_eigenvalues: one Λ for all channels, as the reference code (default: one per channel).
    """

    def __init__(
        self,
        d_model: int,
        l_max: int,
        d_state: int = 64,
        dropout: float = 0.0,
        mode: str = "nplr",
        backend: str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        ssm_lr: float = 1e-3,
        shared_eigenvalues: bool = False,
    ):
        super().__init__()
        if mode not in KERNELS:
            raise ValueError(f"unknown S4 mode {mode!r}; choose one of {', '.join(KERNELS)}")
        kwargs = dict(d_state=d_state, l_max=l_max, dt_min=dt_min, dt_max=dt_max, ssm_lr=ssm_lr, shared_eigenvalues=shared_eigenvalues)
        if mode == "nplr":
            kwargs["backend"] = backend
        self.kernel = KERNELS[mode](d_model, **kwargs)
        self.d_model, self.l_max = d_model, l_max
        self.D = nn.Parameter(torch.randn(d_model))  # [H] skip connection
        self.dropout = nn.Dropout1d(dropout) if dropout > 0 else None  # drops whole channels
        self.output_linear = GeluPointwiseLinear(d_model)  # GELU, then position-wise H -> H

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u [B, H, L] -> y [B, H, L]; the convolution runs in float32 (or float64) under autocast too."""
        length = u.shape[-1]
        if u.dim() != 3 or u.shape[1] != self.d_model:
            raise ValueError(f"S4 expects [batch, {self.d_model}, length], got {tuple(u.shape)}")
        if length > self.l_max:
            raise ValueError(f"sequence length {length} exceeds the S4 layer's l_max={self.l_max}")
        with torch.autocast(device_type=u.device.type, enabled=False):
            dtype = self.kernel.log_dt.dtype
            k = self.kernel(length)  # [H, L]
            y = fft_conv(u.to(dtype), k, self.D.to(dtype))  # K * u + D ⊙ u  [B, H, L]
        return self._output(y)

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        """output_linear(dropout1d(GELU(y))) on [B, H, L], keeping only y for backward."""
        mask = None
        if self.dropout is not None and self.training:
            mask = self.dropout(y.new_ones(*y.shape[:2], 1))  # [B, H, 1]: the mask Dropout1d(y) would draw
        return self.output_linear(y, mask)

    # ---- recurrent mode -------------------------------------------------------------------
    def step_parameters(self) -> StepParameters:
        """Prepare the recurrence (call again after the parameters change)."""
        return self.kernel.step_parameters(self.kernel.log_dt.dtype)

    def initial_state(self, batch: int, params: StepParameters) -> torch.Tensor:
        return params.input.new_zeros(batch, self.d_model, self.kernel.d_state)  # [B, H, N] complex

    def step(self, u: torch.Tensor, state: torch.Tensor, params: StepParameters) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: u [B, H], state [B, H, N] -> (y [B, H], next state [B, H, N])."""
        state = torch.einsum("hij,bhj->bhi", params.transition, state) + params.input * u.to(state.dtype)[..., None]
        ssm = torch.einsum("hn,bhn->bh", params.output, state).real  # [B, H]
        y = ssm + self.D.to(ssm.dtype) * u.to(ssm.dtype)
        return self._output(y[..., None].to(self.output_linear.weight.dtype))[..., 0], state
