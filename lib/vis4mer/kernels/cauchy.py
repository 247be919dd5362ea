"""The conjugate-symmetric Cauchy sum at the heart of the S4 (NPLR) kernel.

    r[k, b, l] = Σ_m  v[k, b, m] / (z[l] - w[b, m])  +  conj(v[k, b, m]) / (z[l] - conj(w[b, m]))

Only one of each conjugate pair of poles is stored; the mirrored term is added. K numerators
share the poles w (the S4 kernel needs four sums, k00, k01, k10, k11, over the same poles).

Every backend implements the same two reductions, forward and backward, and one autograd
Function (`CauchyConj`) wires them up, so the backends differ only in how they reduce:

    forward(v [K,B,M], z [L], w [B,M]) -> r [K,B,L]
    backward(g [K,B,L], v, z, w) -> (grad_v [K,B,M], grad_w [B,M])

with g = ∂loss/∂conj(r) (PyTorch's convention for complex gradients) and

    inv1 = 1/(z[l] - w[b,m]),  inv2 = 1/(z[l] - conj(w[b,m]))
    grad_v[k,b,m] = Σ_l g·conj(inv1) + conj(g)·inv2
    grad_w[b,m]   = Σ_k conj(v[k,b,m]) Σ_l ( g·conj(inv1²) + conj(g)·inv2² )
"""

from __future__ import annotations

from typing import Protocol

import torch

# Complex elements per [B, L_chunk, M] temporary in the torch reference, by device type.
# CPU: cache-sized blocks; measured on 2 cores (H=256, L=4096, N=64, forward+backward):
# 2^18 -> 0.26 s and 0.33 GB peak, 2^20 -> 0.34 s, 2^24 -> 1.70 s and 0.86 GB. With the
# temporaries computed in place, one thread, H=128, L=4096: 2^16 -> 0.24 s, 2^17 -> 0.20 s
# (1 MiB temporaries), 2^18 -> 0.22 s; H=256, L=2955: 2^16 -> 0.40 s, 2^17 and 2^18 -> 0.33 s.
# CUDA: large blocks (128 MiB in complex64) so that kernel launches stay few.
CHUNK_ELEMENTS = {"cpu": 1 << 17, "cuda": 1 << 24}


def chunk_elements_for(device: torch.device, table: dict[str, int] = CHUNK_ELEMENTS) -> int:
    """Block size of a chunked torch kernel for tensors on `device`, from its table by device type."""
    return table.get(device.type, table["cuda"])


class CauchyBackend(Protocol):
    name: str

    def forward(self, v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor: ...

    def backward(
        self, grad: torch.Tensor, v: torch.Tensor, z: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def _chunks(length: int, batch: int, poles: int, chunk_elements: int):
    step = max(1, chunk_elements // max(1, batch * poles))
    for start in range(0, length, step):
        yield slice(start, min(start + step, length))


class TorchCauchy:
    """Plain-torch reference: exact formulas, chunked over L so that no [B, L, M] tensor exists.

    Peak extra memory is two [B, L_chunk, M] complex tensors (bounded by CHUNK_ELEMENTS) and
    their products, in forward and backward alike, because the backward is analytic rather
    than autograd's and squares the reciprocals in place.
    """

    name = "torch"

    def __init__(self, chunk_elements: int | None = None):
        self.chunk_elements = chunk_elements  # None: CHUNK_ELEMENTS for the tensors' device

    def _chunk_elements(self, tensor: torch.Tensor) -> int:
        return self.chunk_elements or chunk_elements_for(tensor.device)

    def _reciprocals(self, z_chunk, w):
        # z_chunk [Lc], w [B, M] -> inv1, inv2 [B, Lc, M], each inverted in place
        inv1 = (z_chunk[None, :, None] - w[:, None, :]).reciprocal_()
        inv2 = (z_chunk[None, :, None] - w.conj()[:, None, :]).reciprocal_()
        return inv1, inv2

    def forward(self, v, z, w):
        n_num, batch, poles = v.shape
        out = v.new_empty(n_num, batch, z.shape[0])
        v_t, v_conj_t = v.permute(1, 2, 0), v.conj().permute(1, 2, 0)  # [B, M, K]
        for part in _chunks(z.shape[0], batch, poles, self._chunk_elements(v)):
            inv1, inv2 = self._reciprocals(z[part], w)
            # [B, Lc, M] @ [B, M, K] -> [B, Lc, K]
            out[..., part] = (inv1 @ v_t + inv2 @ v_conj_t).permute(2, 0, 1)
        return out

    def backward(self, grad, v, z, w):
        n_num, batch, poles = v.shape
        grad_v = torch.zeros_like(v)  # [K, B, M]
        weighted = torch.zeros_like(v)  # Σ_l (g·conj(inv1²) + conj(g)·inv2²)  [K, B, M]
        g_t, g_conj_t = grad.transpose(0, 1), grad.conj().transpose(0, 1)  # [B, K, L]
        for part in _chunks(z.shape[0], batch, poles, self._chunk_elements(v)):
            inv1, inv2 = self._reciprocals(z[part], w)
            inv1_conj = inv1.conj_physical_()  # in place: two [B, Lc, M] temporaries in all
            g_c, g_conj_c = g_t[..., part], g_conj_t[..., part]  # [B, K, Lc]
            # [B, K, Lc] @ [B, Lc, M] -> [B, K, M]
            grad_v += (g_c @ inv1_conj + g_conj_c @ inv2).transpose(0, 1)
            weighted += (g_c @ inv1_conj.square_() + g_conj_c @ inv2.square_()).transpose(0, 1)
        grad_w = (v.conj() * weighted).sum(0)
        return grad_v, grad_w


class KeopsCauchy:
    """pykeops reductions (compiled on first use; CPU or GPU), same formulas as the reference."""

    name = "keops"

    def __init__(self):
        from pykeops.torch import Genred  # noqa: PLC0415 - optional dependency

        variables_fwd = ["v = Vj(2)", "z = Vi(2)", "w = Vj(2)"]
        variables_bwd = ["g = Vj(2)", "z = Vj(2)", "w = Vi(2)"]
        self._forward = Genred(
            "ComplexDivide(v, z - w) + ComplexDivide(Conj(v), z - Conj(w))",
            variables_fwd, reduction_op="Sum", axis=1,
        )
        self._grad_v = Genred(
            "ComplexDivide(g, Conj(z - w)) + ComplexDivide(Conj(g), z - Conj(w))",
            variables_bwd, reduction_op="Sum", axis=1,
        )
        self._grad_w = Genred(
            "ComplexDivide(g, Conj(ComplexMult(z - w, z - w)))"
            " + ComplexDivide(Conj(g), ComplexMult(z - Conj(w), z - Conj(w)))",
            variables_bwd, reduction_op="Sum", axis=1,
        )

    @staticmethod
    def _real(x, shape):
        # complex [..., n] -> real [prod(batch), n, 2] as keops expects
        return torch.view_as_real(x.expand(shape).contiguous()).reshape(-1, shape[-1], 2)

    def _backend_name(self, tensor):
        return "GPU" if tensor.is_cuda else "CPU"

    def forward(self, v, z, w):
        n_num, batch, poles = v.shape
        length = z.shape[0]
        out = self._forward(
            self._real(v, (n_num, batch, poles)),
            self._real(z, (n_num, batch, length)),
            self._real(w, (n_num, batch, poles)),
            backend=self._backend_name(v),
        )
        return torch.view_as_complex(out.reshape(n_num, batch, length, 2).contiguous())

    def backward(self, grad, v, z, w):
        n_num, batch, poles = v.shape
        length = z.shape[0]
        args = (
            self._real(grad, (n_num, batch, length)),
            self._real(z, (n_num, batch, length)),
            self._real(w, (n_num, batch, poles)),
        )
        backend = self._backend_name(v)

        def to_complex(out):
            return torch.view_as_complex(out.reshape(n_num, batch, poles, 2).contiguous())

        grad_v = to_complex(self._grad_v(*args, backend=backend))
        grad_w = (v.conj() * to_complex(self._grad_w(*args, backend=backend))).sum(0)
        return grad_v, grad_w


class CauchyConj(torch.autograd.Function):
    """Autograd wrapper shared by all backends (z is treated as a constant)."""

    @staticmethod
    def forward(ctx, v, z, w, backend: CauchyBackend):
        ctx.backend = backend
        ctx.save_for_backward(v, z, w)
        return backend.forward(v.contiguous(), z.contiguous(), w.contiguous())

    @staticmethod
    def backward(ctx, grad):
        v, z, w = ctx.saved_tensors
        grad_v, grad_w = ctx.backend.backward(grad.contiguous(), v, z, w)
        return grad_v, None, grad_w, None


def cauchy_conj(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, backend: CauchyBackend) -> torch.Tensor:
    """r [K, B, L] from v [K, B, M], z [L], w [B, M] (complex, one dtype), differentiable in v and w."""
    if v.dim() != 3 or w.dim() != 2 or z.dim() != 1 or v.shape[1:] != w.shape:
        raise ValueError(
            f"cauchy_conj expects v [K,B,M], z [L], w [B,M]; got {tuple(v.shape)}, {tuple(z.shape)}, {tuple(w.shape)}"
        )
    return CauchyConj.apply(v, z, w, backend)


def cauchy_conj_dense(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The definition, materialising [K, B, L, M]: for tests on small inputs only."""
    zz = z[None, None, :, None]
    return (v[:, :, None, :] / (zz - w[None, :, None, :]) + v.conj()[:, :, None, :] / (zz - w.conj()[None, :, None, :])).sum(-1)
