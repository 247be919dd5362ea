"""The rank-1 Woodbury step of the S4 (NPLR) kernel at the nodes z, with s = 1 + z:

    K̂ = 2 [ k00 - s k01 k10 / (1 + s k11) ]        k_ab [H, F] (Cauchy sums), s [F]

Two paths, equal in value and gradient (tests hold them so):

- `woodbury_reference`: plain torch; autograd saves every k_ab and the products between them,
  about seven complex [H, F] tensors per layer.
- `woodbury`: an autograd Function with the same forward expression that saves only the two
  partial derivatives a = ∂K̂/∂k01 and b = ∂K̂/∂k10 ([H, F] each), from which the others follow:

      a = -2 s k10 / (1 + s k11),   b = -2 s k01 / (1 + s k11),   ∂K̂/∂k00 = 2,   ∂K̂/∂k11 = a b / 2

  K̂ is holomorphic in each k_ab, so (PyTorch's convention) grad k_ab = g · conj(∂K̂/∂k_ab).
"""

from __future__ import annotations

import torch


def woodbury_reference(k: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """K̂ [H, F] from k = (k00, k01, k10, k11) [4, H, F] and s = 1 + z [F]."""
    k00, k01, k10, k11 = k
    return 2 * (k00 - s * k01 * k10 / (1 + s * k11))


class Woodbury(torch.autograd.Function):
    """K̂ from the four Cauchy sums, saving two [H, F] partial derivatives (s is a constant)."""

    @staticmethod
    def forward(ctx, k, s):
        k00, k01, k10, k11 = k
        denominator = 1 + s * k11  # [H, F]
        ctx.save_for_backward(-2 * s * k10 / denominator, -2 * s * k01 / denominator)  # a, b
        return 2 * (k00 - s * k01 * k10 / denominator)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_k = grad.new_empty((4, *grad.shape))  # [4, H, F]
        grad_k[0] = 2 * grad
        grad_k[1] = grad * a.conj()
        grad_k[2] = grad * b.conj()
        grad_k[3] = grad * (a * b / 2).conj()
        return grad_k, None


def woodbury(k: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """K̂ [H, F] from k [4, H, F] and s [F] (complex, one dtype), differentiable in k."""
    if k.dim() != 3 or k.shape[0] != 4 or s.shape != k.shape[-1:]:
        raise ValueError(f"woodbury expects k [4, H, F] and s [F]; got {tuple(k.shape)}, {tuple(s.shape)}")
    return Woodbury.apply(k, s)
