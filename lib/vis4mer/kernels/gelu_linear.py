"""The S4 layer's output stage, position-wise:

    out = W (mask ⊙ GELU(y)) + b        y [B, H, L], mask [B, H, 1] or None, W [O, H, 1], b [O]

mask holds channel dropout's kept channels, scaled (Dropout1d of a [B, H, 1] tensor of ones
draws the same mask as Dropout1d of [B, H, L]); W and b are a Conv1d(H, O, kernel_size=1)'s.

Two paths, equal in value and gradient (tests hold them so):

- `gelu_linear_reference`: F.conv1d(mask ⊙ F.gelu(y), W, b); autograd saves both y (for
  GELU's backward) and the activation mask ⊙ GELU(y) (for the weight gradient).
- `gelu_linear`: an autograd Function that saves y (and the mask) and recomputes the
  activation in backward, which is elementwise and cheap: one [B, H, L] tensor fewer per layer.

Under autocast the linear runs in the autocast dtype, as conv1d does, and GELU in y's dtype;
the backward computes in the dtype the forward's linear used (fp32/fp64 as matmuls, reduced
precision through conv1d's own backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _activation(y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    h = F.gelu(y)
    return h if mask is None else h * mask


def gelu_linear_reference(y: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """out [B, O, L]: the definition, autograd's gradients."""
    return F.conv1d(_activation(y, mask), weight, bias)


class GeluLinear(torch.autograd.Function):
    """out = W (mask ⊙ GELU(y)) + b, saving y, the mask and W; the activation is recomputed."""

    @staticmethod
    def forward(ctx, y, mask, weight, bias):
        out = F.conv1d(_activation(y, mask), weight, bias)  # [B, O, L]; autocast applies here
        ctx.save_for_backward(y, mask, weight)
        ctx.compute_dtype = out.dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        y, mask, weight = ctx.saved_tensors
        dtype = ctx.compute_dtype
        need_y, _, need_weight, need_bias = ctx.needs_input_grad
        h = _activation(y, mask).to(dtype)  # [B, H, L], recomputed
        grad = grad.to(dtype)  # [B, O, L]
        if dtype in (torch.float32, torch.float64):
            # as matmuls: conv1d's CPU backward (im2col) allocates column buffers besides
            grad_h = torch.matmul(weight[..., 0].to(dtype).T, grad) if need_y else None  # [B, H, L]
            grad_weight = torch.matmul(grad, h.transpose(1, 2)).sum(0)[..., None] if need_weight else None  # Σ_b [O, H, 1]
            grad_bias = grad.sum((0, 2)) if need_bias else None
        else:
            # autocast's bf16/fp16: conv1d's own backward, as autograd would call it (oneDNN or
            # cuDNN); a bf16 matmul on a CPU without bf16 units is ~100x slower than fp32 (0.63
            # vs 58 GFLOP/s measured on this machine)
            grad_h, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad, h, weight.to(dtype), [weight.shape[0]], [1], [0], [1], False, [0], 1, [need_y, need_weight, need_bias]
            )
        grad_y = None
        if need_y:
            grad_h = grad_h.to(y.dtype)  # [B, H, L]
            grad_y = torch.ops.aten.gelu_backward(grad_h if mask is None else grad_h * mask, y)
        to_weight = lambda g: None if g is None else g.to(weight.dtype)  # noqa: E731
        return grad_y, None, to_weight(grad_weight), to_weight(grad_bias)


def gelu_linear(y: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """out [B, O, L] from y [B, H, L], mask [B, H, 1] or None, Conv1d weight [O, H, 1] and bias [O]."""
    if y.dim() != 3 or weight.shape[1:] != (y.shape[1], 1) or bias.shape != weight.shape[:1]:
        raise ValueError(
            f"gelu_linear expects y [B,H,L], weight [O,H,1], bias [O]; got {tuple(y.shape)}, {tuple(weight.shape)}, {tuple(bias.shape)}"
        )
    if mask is not None and mask.shape != (*y.shape[:2], 1):
        raise ValueError(f"gelu_linear expects mask [B,H,1]; got {tuple(mask.shape)}")
    return GeluLinear.apply(y, mask, weight, bias)
