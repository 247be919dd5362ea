"""Vandermonde kernel of a diagonal SSM (S4D): K[h, l] = 2·Re Σ_n c[h, n] · exp(a[h, n] · l).

Chunked over L with activation checkpointing, so neither forward nor backward ever holds the
[H, N/2, L] complex tensor at once (only one [H, N/2, L_chunk] block is alive at a time).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from vis4mer.kernels.cauchy import chunk_elements_for


def _vandermonde_block(coefficients, log_base, positions):
    # coefficients, log_base [H, M] complex; positions [Lc] real -> [H, Lc] real
    powers = torch.exp(log_base[:, :, None] * positions[None, None, :])  # [H, M, Lc]
    return 2 * torch.einsum("hm,hml->hl", coefficients, powers).real


def vandermonde_conj(
    coefficients: torch.Tensor, log_base: torch.Tensor, length: int, chunk_elements: int | None = None
) -> torch.Tensor:
    """K [H, L] from c [H, M] and log of the discrete eigenvalues [H, M] (conjugates implied)."""
    heads, poles = coefficients.shape
    chunk_elements = chunk_elements or chunk_elements_for(coefficients.device)
    step = max(1, chunk_elements // max(1, heads * poles))
    positions = torch.arange(length, device=coefficients.device, dtype=coefficients.real.dtype)
    blocks = [
        checkpoint(_vandermonde_block, coefficients, log_base, positions[start : start + step], use_reentrant=False)
        for start in range(0, length, step)
    ]
    return torch.cat(blocks, dim=-1)
