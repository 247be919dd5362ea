// Launchers for the conjugate-symmetric Cauchy kernels (cauchy_kernel.cu).
//
// Plain CUDA C++ (no PyTorch headers): the PyTorch binding (cauchy_binding.cpp) calls
// these with raw pointers, and the .cu compiles on its own with `nvcc -c`.
//
// Complex numbers are complex64 stored as float2 {re, im}; every array is C-contiguous
// and 8-byte aligned (what torch gives for a contiguous complex64 tensor).
//
//   r[k, b, l] = sum_m  v[k,b,m] / (z[l] - w[b,m])  +  conj(v[k,b,m]) / (z[l] - conj(w[b,m]))
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>  // cudaError_t, cudaStream_t, float2

// Limits the kernels are built for (checked by the launchers and the binding).
constexpr int64_t kCauchyMaxK = 8;    // numerators sharing the poles
constexpr int64_t kCauchyMaxM = 512;  // poles per row (N/2)

// Forward.
//   v: (K, B, M)   z: (L,)   w: (B, M)   ->   r: (K, B, L)
// Returns cudaErrorInvalidValue for sizes out of range (1 <= K <= 8, 1 <= M <= 512,
// 0 <= B, L < 2^31), otherwise the launch error (cudaGetLastError) of the kernel.
cudaError_t cauchy_conj_forward_launch(const float2* v, const float2* z, const float2* w,
                                       float2* r, int64_t K, int64_t B, int64_t M, int64_t L,
                                       cudaStream_t stream);

// Fused backward: both gradients in one pass over (b, l-tile, m).
//   g: (K, B, L) = dLoss/d conj(r)   v: (K, B, M)   z: (L,)   w: (B, M)
//   -> grad_v: (K, B, M), grad_w: (B, M)
// grad_v and grad_w are zeroed on `stream` by the launcher and then accumulated with
// float atomics over l-tiles, so the result is not bitwise deterministic run to run
// (the summation order of the tiles varies); a single tile (small L) is deterministic.
cudaError_t cauchy_conj_backward_launch(const float2* g, const float2* v, const float2* z,
                                        const float2* w, float2* grad_v, float2* grad_w,
                                        int64_t K, int64_t B, int64_t M, int64_t L,
                                        cudaStream_t stream);
