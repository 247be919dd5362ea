// Per-(l, m) arithmetic shared by the forward and backward kernels.
//
// Everything here is __host__ __device__ so that cauchy_emulate.cpp can run the kernels on
// the CPU (the tests compare that against a float64 reference on a machine without a GPU).
// Only the reciprocal differs: the device uses the hardware approximation (max 1 ulp
// error), the host an IEEE division.
#pragma once

#include <cmath>

#include <cuda_runtime_api.h>  // float2, __host__/__device__ (via the CUDA headers nvcc includes)

namespace cauchy {

// 1/x. On the device: `rcp.approx.ftz.f32`, max relative error 1 ulp (~1.2e-7), one MUFU
// instruction instead of the ~10-instruction IEEE-rounded sequence. Subnormal x (|z - w|
// below ~1e-19, i.e. z on a pole) flushes to 0 and gives inf, which a pole gives anyway.
__host__ __device__ __forceinline__ float fast_rcp(float x) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return 1.0f / x;
#endif
}

// The two pole reciprocals of one (l, m) pair:
//   inv1 = 1 / (z - w)       = p + i q
//   inv2 = 1 / (z - conj(w)) = s + i t
// z - w and z - conj(w) share their real part dr, and 1/d = conj(d) / |d|^2.
// The real and imaginary parts are subtracted separately, so each difference is exact
// or correctly rounded even when z is close to w (no cancellation beyond the inputs').
struct PoleInv {
  float p, q, s, t;
};

__host__ __device__ __forceinline__ PoleInv pole_inverses(float2 z, float2 w) {
  const float dr = z.x - w.x;
  const float di1 = z.y - w.y;  // Im(z - w)
  const float di2 = z.y + w.y;  // Im(z - conj(w))
  const float r1 = fast_rcp(fmaf(dr, dr, di1 * di1));
  const float r2 = fast_rcp(fmaf(dr, dr, di2 * di2));
  return PoleInv{dr * r1, -di1 * r1, dr * r2, -di2 * r2};
}

// inv1^2 and inv2^2 (for the w gradient): (p + iq)^2 = (p^2 - q^2) + i 2pq.
__host__ __device__ __forceinline__ PoleInv pole_inverses_squared(PoleInv i) {
  return PoleInv{fmaf(i.p, i.p, -i.q * i.q), 2.0f * i.p * i.q,
                 fmaf(i.s, i.s, -i.t * i.t), 2.0f * i.s * i.t};
}

// A term that is linear over the reals in x = a + ib, written as
//   term(x) = (a*c0 + b*c1) + i (a*c2 + b*c3),
// so that the coefficients are computed once per (l, m) and every one of the K
// numerators (or upstream gradients) then costs 4 FMAs.
struct LinCoef {
  float c0, c1, c2, c3;
};

// Forward term for numerator v = a + ib:  v*inv1 + conj(v)*inv2
//   v*inv1       = (ap - bq) + i(aq + bp)
//   conj(v)*inv2 = (as + bt) + i(at - bs)
__host__ __device__ __forceinline__ LinCoef forward_coef(PoleInv i) {
  return LinCoef{i.p + i.s, i.t - i.q, i.q + i.t, i.p - i.s};
}

// Backward term for upstream gradient g = a + ib and pole factors x1 = p + iq,
// x2 = s + it:  g*conj(x1) + conj(g)*x2
//   g*conj(x1)  = (ap + bq) + i(bp - aq)
//   conj(g)*x2  = (as + bt) + i(at - bs)
// With (x1, x2) = (inv1, inv2) this is the grad_v term; with (inv1^2, inv2^2) the
// per-k grad_w term before the conj(v) factor.
__host__ __device__ __forceinline__ LinCoef backward_coef(PoleInv x) {
  return LinCoef{x.p + x.s, x.q + x.t, x.t - x.q, x.p - x.s};
}

// acc += term(x)
__host__ __device__ __forceinline__ void accumulate(float2& acc, float2 x, const LinCoef& c) {
  acc.x = fmaf(x.x, c.c0, fmaf(x.y, c.c1, acc.x));
  acc.y = fmaf(x.x, c.c2, fmaf(x.y, c.c3, acc.y));
}

// acc += conj(v) * t
__host__ __device__ __forceinline__ void accumulate_conj_mul(float2& acc, float2 v, float2 t) {
  acc.x = fmaf(v.x, t.x, fmaf(v.y, t.y, acc.x));
  acc.y = fmaf(v.x, t.y, fmaf(-v.y, t.x, acc.y));
}

}  // namespace cauchy
