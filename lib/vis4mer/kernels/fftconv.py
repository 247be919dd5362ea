"""The S4 layer's causal convolution with its skip term, by zero-padded FFT:

    y[b, h, t] = Σ_{s ≤ t} k[h, s] · u[b, h, t - s]  +  D[h] · u[b, h, t]        t < L

u [B, H, L] and k [H, L] are real; n_fft = next_fast_len(2L - 1) makes the circular
convolution of the zero-padded signals linear (not circular) on the first L outputs.

Two paths, equal in value and gradient (tests hold them so):

- `fft_conv_reference`: plain torch, autograd through rfft / irfft. Autograd saves the padded
  u and k and their transforms, complex [B, H, n_fft/2 + 1] buffers, for backward, and its
  rfft backward runs a full-length complex FFT.
- `fft_conv`: an autograd Function that saves only its inputs (u, k, D) and recomputes the
  transforms in backward, one block of heads at a time, so that the complex temporaries of
  forward and backward alike are bounded by the block size (`chunk_elements` complex
  elements per [B, H_block, n_fft/2 + 1] transform). Backward, with g = ∂loss/∂y (all real):

      grad_u = irfft(rfft(g) · conj(rfft(k)))[:L] + D ⊙ g     (correlation of g with k)
      grad_k = irfft(Σ_b rfft(g) · conj(rfft(u)))[:L]         (correlation of g with u)
      grad_D = Σ_{b,t} g ⊙ u

  Negative lags wrap to indices ≥ n_fft - L + 1 ≥ L, where the padded k and u are zero, so
  the correlations are exact too. The price is one extra rfft of u per block in backward.
"""

from __future__ import annotations

import torch
from scipy.fft import next_fast_len

from vis4mer.kernels.cauchy import chunk_elements_for

# Complex elements per block transform [B, H_block, n_fft/2 + 1], by device type. CPU, measured
# on one thread, fwd+bwd of [B, H, L] = [2, 128, 4096]: 2^15 -> 54 ms, 2^16 -> 40 ms (0.5 MiB
# blocks), 2^17 -> 39 ms, 2^18 -> 45 ms, 2^20 -> 58 ms; autograd through rfft/irfft: 62 ms.
# CUDA: large blocks (128 MiB in complex64) so that kernel launches stay few (not yet tuned).
BLOCK_ELEMENTS = {"cpu": 1 << 16, "cuda": 1 << 24}


def fft_length(length: int) -> int:
    """The FFT size for a linear convolution of two length-L signals: the smallest 5-smooth n ≥ 2L - 1."""
    return next_fast_len(2 * length - 1, real=True)


def fft_conv_reference(u: torch.Tensor, k: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """y [B, H, L] from u [B, H, L], k [H, L], skip D [H]: the definition, autograd's gradients."""
    length = u.shape[-1]
    n_fft = fft_length(length)
    y = torch.fft.irfft(torch.fft.rfft(u, n=n_fft) * torch.fft.rfft(k, n=n_fft), n=n_fft)[..., :length]
    return y + skip[:, None] * u


def _head_blocks(batch: int, heads: int, n_fft: int, chunk_elements: int):
    step = max(1, chunk_elements // max(1, batch * (n_fft // 2 + 1)))
    for start in range(0, heads, step):
        yield slice(start, min(start + step, heads))


class FFTConv(torch.autograd.Function):
    """y = k * u + D ⊙ u, saving only u, k and D; transforms recomputed block by block."""

    @staticmethod
    def forward(ctx, u, k, skip, chunk_elements):
        batch, heads, length = u.shape
        n_fft = fft_length(length)
        ctx.save_for_backward(u, k, skip)
        ctx.chunk_elements = chunk_elements
        y = torch.empty_like(u)  # [B, H, L]
        for block in _head_blocks(batch, heads, n_fft, chunk_elements):
            u_block = u[:, block]  # [B, Hb, L]
            spectrum = torch.fft.rfft(u_block, n=n_fft) * torch.fft.rfft(k[block], n=n_fft)  # [B, Hb, F]
            y[:, block] = torch.fft.irfft(spectrum, n=n_fft)[..., :length] + skip[block, None] * u_block
        return y

    @staticmethod
    def backward(ctx, grad):
        u, k, skip = ctx.saved_tensors
        batch, heads, length = u.shape
        n_fft = fft_length(length)
        need_u, need_k, need_skip = ctx.needs_input_grad[:3]
        grad_u = torch.empty_like(u) if need_u else None  # [B, H, L]
        grad_k = torch.empty_like(k) if need_k else None  # [H, L]
        grad_skip = torch.empty_like(skip) if need_skip else None  # [H]
        for block in _head_blocks(batch, heads, n_fft, ctx.chunk_elements):
            g_block = grad[:, block]  # [B, Hb, L]
            if need_skip:
                grad_skip[block] = (g_block * u[:, block]).sum((0, 2))
            if not (need_u or need_k):
                continue
            g_hat = torch.fft.rfft(g_block, n=n_fft)  # [B, Hb, F]
            if need_u:
                k_hat = torch.fft.rfft(k[block], n=n_fft)  # [Hb, F]
                correlation = torch.fft.irfft(g_hat * k_hat.conj(), n=n_fft)[..., :length]
                grad_u[:, block] = correlation + skip[block, None] * g_block
            if need_k:
                u_hat = torch.fft.rfft(u[:, block], n=n_fft)  # [B, Hb, F], recomputed
                grad_k[block] = torch.fft.irfft((g_hat * u_hat.conj()).sum(0), n=n_fft)[..., :length]
        return grad_u, grad_k, grad_skip, None


def fft_conv(u: torch.Tensor, k: torch.Tensor, skip: torch.Tensor, chunk_elements: int | None = None) -> torch.Tensor:
    """y [B, H, L] from u [B, H, L], k [H, L], skip D [H] (one real dtype), differentiable in all three.

    chunk_elements: complex elements per block transform (default: BLOCK_ELEMENTS for the device).
    """
    if u.dim() != 3 or k.shape != u.shape[1:] or skip.shape != u.shape[1:2]:
        raise ValueError(
            f"fft_conv expects u [B,H,L], k [H,L], D [H]; got {tuple(u.shape)}, {tuple(k.shape)}, {tuple(skip.shape)}"
        )
    return FFTConv.apply(u, k, skip, chunk_elements or chunk_elements_for(u.device, BLOCK_ELEMENTS))
