"""HiPPO-LegS initialisation and its normal-plus-low-rank (NPLR) diagonalisation.

The LegS state matrix is A = S - P Pᵀ with P_n = sqrt(n + 1/2) and S = -I/2 + (skew-symmetric).
The skew part is diagonalised through the Hermitian matrix -i·S_skew with `eigh` in float64,
which is numerically stable (unitary eigenvectors), unlike a general `eig` of A itself.

Eigenvalues of a real skew-symmetric matrix come in conjugate pairs, so only the half with
positive imaginary part is kept; the other half is implied as the complex conjugate
(the "conjugate-symmetric" representation used by the kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def hippo_legs(n_state: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The HiPPO-LegS matrices in float64: A [N, N], B [N]."""
    n = torch.arange(n_state, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    a = -torch.tril(root[:, None] * root[None, :], diagonal=-1) - torch.diag(n + 1)
    return a, root.clone()


@dataclass(frozen=True)
class NPLR:
    """Diagonal-plus-low-rank form of LegS in the eigenbasis of its normal part (half spectrum).

    A ≅ diag(Λ) - P Pᴴ (over the full conjugate-symmetric spectrum), B in the same basis.
    """

    eigenvalues: torch.Tensor  # Λ  [N/2] complex128, Re = -1/2, Im > 0
    low_rank: torch.Tensor  # P  [rank, N/2] complex128
    input_matrix: torch.Tensor  # B  [N/2] complex128
    eigenvectors: torch.Tensor  # V  [N, N/2] complex128 (columns orthonormal)


def nplr_legs(n_state: int, rank: int = 1) -> NPLR:
    """Diagonalise the normal part of HiPPO-LegS stably (float64, Hermitian eigensolver)."""
    if n_state % 2:
        raise ValueError(f"d_state must be even (conjugate pairs), got {n_state}")
    if rank != 1:
        raise ValueError(f"only rank 1 is supported for HiPPO-LegS, got rank={rank}")
    a, b = hippo_legs(n_state)
    p = torch.sqrt(torch.arange(n_state, dtype=torch.float64) + 0.5)  # [N]
    normal = a + p[:, None] * p[None, :]  # S = -I/2 + skew
    skew = normal + 0.5 * torch.eye(n_state, dtype=torch.float64)
    hermitian = -1j * skew.to(torch.complex128)
    frequencies, vectors = torch.linalg.eigh(hermitian)  # ascending real eigenvalues w
    # skew = V diag(i w) Vᴴ ; keep w > 0 (the other half is the conjugate)
    keep = frequencies > 0
    if int(keep.sum()) != n_state // 2:
        raise RuntimeError("HiPPO-LegS skew part has eigenvalues at zero; cannot split conjugate pairs")
    w, v = frequencies[keep], vectors[:, keep]
    eigenvalues = -0.5 + 1j * w
    v_h = v.conj().T
    return NPLR(
        eigenvalues=eigenvalues,
        low_rank=(v_h @ p.to(torch.complex128))[None, :],
        input_matrix=v_h @ b.to(torch.complex128),
        eigenvectors=v,
    )
