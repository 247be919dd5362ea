// Conjugate-symmetric Cauchy sum with K numerators sharing the poles (S4's Cauchy kernel).
//
//   r[k, b, l] = sum_m  v[k,b,m] / (z[l] - w[b,m])  +  conj(v[k,b,m]) / (z[l] - conj(w[b,m]))
//
// and its fused backward (g = dLoss/d conj(r), PyTorch's complex-gradient convention):
//
//   inv1 = 1/(z[l] - w[b,m]),  inv2 = 1/(z[l] - conj(w[b,m]))
//   grad_v[k,b,m] = sum_l g[k,b,l] conj(inv1) + conj(g[k,b,l]) inv2
//   grad_w[b,m]   = sum_k conj(v[k,b,m]) sum_l g[k,b,l] conj(inv1^2) + conj(g[k,b,l]) inv2^2
//
// Plain CUDA C++, no PyTorch headers: `nvcc -c -arch=sm_90 -std=c++17 cauchy_kernel.cu`
// compiles it on its own. Complex64 values are float2 {re, im}.
//
// Both kernels are compute bound (two reciprocals per (l, m) pair, then 4 FMAs per
// numerator and pair); no (B, L, M) intermediate is ever written to global memory.

#include <climits>
#include <cstdint>

#include <cuda_runtime.h>

#include "cauchy_kernel.h"
#include "cauchy_math.cuh"

// Hooks for cauchy_emulate.cpp, which runs this file's kernels and launchers on the CPU
// (one std::thread per CUDA thread) so that machines without a GPU can test the indexing.
#ifndef CAUCHY_LAUNCH
#define CAUCHY_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#endif
#ifndef CAUCHY_MAX_GRID_Y
#define CAUCHY_MAX_GRID_Y 65535  // gridDim.y limit; blocks loop over b beyond it
#endif

namespace {

using cauchy::LinCoef;
using cauchy::PoleInv;

// ------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------
// Grid: (ceil(L / kFwdTileL), min(B, 65535)); a block loops over b with stride gridDim.y.
// Block: kFwdThreads threads, each computes kFwdLPerThread values of l (strided by the
// block size so that the stores of a warp are coalesced) for all K numerators.
// Shared memory: w_s[M] and v_s[M][K] (m-major: one m's K numerators are contiguous and
// every thread of the block reads the same address, a broadcast).
constexpr int kFwdThreads = 128;
constexpr int kFwdLPerThread = 2;
constexpr int kFwdTileL = kFwdThreads * kFwdLPerThread;

template <int K>
__global__ void __launch_bounds__(kFwdThreads)
    cauchy_conj_fwd_kernel(const float2* __restrict__ v,  // (K, B, M)
                           const float2* __restrict__ z,  // (L,)
                           const float2* __restrict__ w,  // (B, M)
                           float2* __restrict__ r,        // (K, B, L)
                           int B, int M, int L) {
  extern __shared__ float2 fwd_smem[];
  float2* w_s = fwd_smem;      // [M]
  float2* v_s = fwd_smem + M;  // [M][K]

  const int l_first = blockIdx.x * kFwdTileL + threadIdx.x;
  const bool any_l = l_first < L;  // a thread with no l still helps stage and syncs

  // z of this thread's l values (0 for l >= L: computed, never stored).
  float2 zl[kFwdLPerThread];
#pragma unroll
  for (int j = 0; j < kFwdLPerThread; ++j) {
    const int l = l_first + j * kFwdThreads;
    zl[j] = l < L ? z[l] : make_float2(0.f, 0.f);
  }

  for (int b = blockIdx.y; b < B; b += gridDim.y) {
    __syncthreads();  // the previous b's readers are done with w_s / v_s
    for (int m = threadIdx.x; m < M; m += kFwdThreads) w_s[m] = w[(int64_t)b * M + m];
    for (int i = threadIdx.x; i < K * M; i += kFwdThreads) {
      const int k = i / M;
      const int m = i - k * M;
      v_s[m * K + k] = v[((int64_t)k * B + b) * M + m];  // coalesced over m
    }
    __syncthreads();
    if (!any_l) continue;

    float2 acc[kFwdLPerThread][K];
#pragma unroll
    for (int j = 0; j < kFwdLPerThread; ++j)
#pragma unroll
      for (int k = 0; k < K; ++k) acc[j][k] = make_float2(0.f, 0.f);

#pragma unroll 2
    for (int m = 0; m < M; ++m) {
      const float2 wm = w_s[m];
      float2 vm[K];
#pragma unroll
      for (int k = 0; k < K; ++k) vm[k] = v_s[m * K + k];
#pragma unroll
      for (int j = 0; j < kFwdLPerThread; ++j) {
        // Reciprocals once per (l, m), reused by all K numerators.
        const LinCoef c = cauchy::forward_coef(cauchy::pole_inverses(zl[j], wm));
#pragma unroll
        for (int k = 0; k < K; ++k) cauchy::accumulate(acc[j][k], vm[k], c);
      }
    }

#pragma unroll
    for (int j = 0; j < kFwdLPerThread; ++j) {
      const int l = l_first + j * kFwdThreads;
      if (l < L) {
#pragma unroll
        for (int k = 0; k < K; ++k) r[((int64_t)k * B + b) * L + l] = acc[j][k];
      }
    }
  }
}

// ------------------------------------------------------------------------------------
// Backward (fused grad_v and grad_w)
// ------------------------------------------------------------------------------------
// Both gradients are reductions over l. Grid: (ceil(L / tile_l), min(B, 65535)); a block
// handles one b (looping with stride gridDim.y) and one tile of l, for every m.
// Block: kBwdThreads threads viewed as a (gy, mt) grid: tx = tid % mt picks m (m = tx,
// tx + mt, ...), ty = tid / mt picks every gy-th l of the tile. mt = min(M, 256) and
// gy = 256 / mt, so small M still fills the block (M = 32: 8 groups of l; M = 1: 256).
// Each thread keeps, for its m, per-k sums S_k (grad_v) and T_k (grad_w before conj(v))
// in registers; then
//   gy == 1: it atomically adds its partials to global memory directly;
//   gy  > 1: the gy partials of each m are summed in shared memory first, then one
//            atomic per value and block. gy > 1 implies mt == M (M <= 128), so there is
//            exactly one m pass per b, and the reduction buffer is used once per b.
// Shared memory: g_s[K][tile_l], z_s[tile_l], and (gy > 1) red[NV][gy][mt] floats,
// NV = 2K + 2 (re/im of S_k for each k, re/im of the grad_w partial).
constexpr int kBwdThreads = 256;
constexpr int kSmemBudget = 48 * 1024;  // the default per-block limit, no opt-in needed

template <int K>
__global__ void __launch_bounds__(kBwdThreads)
    cauchy_conj_bwd_kernel(const float2* __restrict__ g,  // (K, B, L)
                           const float2* __restrict__ v,  // (K, B, M)
                           const float2* __restrict__ z,  // (L,)
                           const float2* __restrict__ w,  // (B, M)
                           float* __restrict__ grad_v,    // (K, B, M) complex as floats, zeroed
                           float* __restrict__ grad_w,    // (B, M) complex as floats, zeroed
                           int B, int M, int L, int tile_l, int mt, int gy) {
  constexpr int NV = 2 * K + 2;
  extern __shared__ float2 bwd_smem[];
  float2* g_s = bwd_smem;                             // [K][tile_l]
  float2* z_s = g_s + K * tile_l;                     // [tile_l]
  float* red = reinterpret_cast<float*>(z_s + tile_l);  // [NV][gy][mt], only if gy > 1

  const int tid = threadIdx.x;
  const int tx = tid % mt;
  const int ty = tid / mt;
  const bool active = ty < gy;  // mt * gy may be < 256 (e.g. M = 17: 255 threads)
  const int l0 = blockIdx.x * tile_l;
  const int n_l = min(tile_l, L - l0);  // valid l in this tile

  for (int b = blockIdx.y; b < B; b += gridDim.y) {
    __syncthreads();  // the previous b's readers are done with g_s / z_s / red
    for (int i = tid; i < K * n_l; i += kBwdThreads) {
      const int k = i / n_l;
      const int j = i - k * n_l;
      g_s[k * tile_l + j] = g[((int64_t)k * B + b) * L + l0 + j];  // coalesced over j
    }
    for (int j = tid; j < n_l; j += kBwdThreads) z_s[j] = z[l0 + j];
    __syncthreads();

    for (int m0 = 0; m0 < M; m0 += mt) {
      const int m = m0 + tx;
      const bool has_m = active && m < M;

      float2 sv[K];  // S_k = sum_l g conj(inv1) + conj(g) inv2          -> grad_v[k]
      float2 tw[K];  // T_k = sum_l g conj(inv1^2) + conj(g) inv2^2      -> grad_w
#pragma unroll
      for (int k = 0; k < K; ++k) sv[k] = tw[k] = make_float2(0.f, 0.f);
      float2 gw = make_float2(0.f, 0.f);  // sum_k conj(v[k]) T_k

      if (has_m) {
        const float2 wm = w[(int64_t)b * M + m];
        for (int j = ty; j < n_l; j += gy) {
          const PoleInv inv = cauchy::pole_inverses(z_s[j], wm);
          const LinCoef cv = cauchy::backward_coef(inv);
          const LinCoef cw = cauchy::backward_coef(cauchy::pole_inverses_squared(inv));
#pragma unroll
          for (int k = 0; k < K; ++k) {
            const float2 gk = g_s[k * tile_l + j];  // same address across the m threads
            cauchy::accumulate(sv[k], gk, cv);
            cauchy::accumulate(tw[k], gk, cw);
          }
        }
#pragma unroll
        for (int k = 0; k < K; ++k)
          cauchy::accumulate_conj_mul(gw, v[((int64_t)k * B + b) * M + m], tw[k]);
      }

      if (gy == 1) {
        if (has_m) {
#pragma unroll
          for (int k = 0; k < K; ++k) {
            float* dst = grad_v + 2 * (((int64_t)k * B + b) * M + m);
            atomicAdd(dst, sv[k].x);
            atomicAdd(dst + 1, sv[k].y);
          }
          float* dst = grad_w + 2 * ((int64_t)b * M + m);
          atomicAdd(dst, gw.x);
          atomicAdd(dst + 1, gw.y);
        }
      } else {
        // Sum the gy partials of each (value, m) in shared memory. Layout [NV][gy][mt]:
        // both the writes (over tx) and the summing reads (over m) are consecutive.
        if (active) {
#pragma unroll
          for (int k = 0; k < K; ++k) {
            red[((2 * k) * gy + ty) * mt + tx] = sv[k].x;
            red[((2 * k + 1) * gy + ty) * mt + tx] = sv[k].y;
          }
          red[((2 * K) * gy + ty) * mt + tx] = gw.x;
          red[((2 * K + 1) * gy + ty) * mt + tx] = gw.y;
        }
        __syncthreads();
        for (int i = tid; i < NV * mt; i += kBwdThreads) {
          const int c = i / mt;       // value index in [0, NV)
          const int mm = i - c * mt;  // == m, since m0 == 0 here
          const float* src = red + c * gy * mt + mm;
          float s = 0.f;
          for (int y = 0; y < gy; ++y) s += src[y * mt];
          float* dst = c < 2 * K ? grad_v + 2 * (((int64_t)(c >> 1) * B + b) * M + mm) + (c & 1)
                                 : grad_w + 2 * ((int64_t)b * M + mm) + (c - 2 * K);
          atomicAdd(dst, s);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------
// Host side
// ------------------------------------------------------------------------------------
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks along y (one per b, capped; the kernels loop over the rest of b).
inline unsigned grid_y(int B) {
  return static_cast<unsigned>(B < CAUCHY_MAX_GRID_Y ? B : CAUCHY_MAX_GRID_Y);
}

bool sizes_ok(int64_t K, int64_t B, int64_t M, int64_t L) {
  return K >= 1 && K <= kCauchyMaxK && M >= 1 && M <= kCauchyMaxM && B >= 0 && L >= 0 &&
         B <= INT_MAX && L <= INT_MAX;
}

template <int K>
cudaError_t launch_forward(const float2* v, const float2* z, const float2* w, float2* r, int B,
                           int M, int L, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(L, kFwdTileL)), grid_y(B));
  const size_t smem = static_cast<size_t>(K + 1) * M * sizeof(float2);  // <= 36 KB
  CAUCHY_LAUNCH(cauchy_conj_fwd_kernel<K>, grid, kFwdThreads, smem, stream, v, z, w, r, B, M, L);
  return cudaGetLastError();
}

int multiprocessor_count() {
  int device = 0, n_sm = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) error; fall back to a guess
    return 132;          // H100 SXM
  }
  return n_sm;
}

template <int K>
cudaError_t launch_backward(const float2* g, const float2* v, const float2* z, const float2* w,
                            float2* grad_v, float2* grad_w, int B, int M, int L,
                            cudaStream_t stream) {
  constexpr int NV = 2 * K + 2;
  const int mt = M < kBwdThreads ? M : kBwdThreads;
  const int gy = kBwdThreads / mt;
  const int red_bytes = gy > 1 ? NV * gy * mt * static_cast<int>(sizeof(float)) : 0;
  const int stage_bytes_per_l = (K + 1) * static_cast<int>(sizeof(float2));  // g_s + z_s

  // Largest tile (multiple of 32, at most 2048) whose staging fits next to `red` ...
  int tile_l = (kSmemBudget - red_bytes) / stage_bytes_per_l;
  tile_l = (tile_l < 2048 ? tile_l : 2048) / 32 * 32;
  // ... but no longer than L, and short enough that small B still fills the GPU
  // (more tiles = more blocks, at the cost of more atomics).
  const int l_cap = static_cast<int>(ceil_div(L, 32) * 32);
  if (tile_l > l_cap) tile_l = l_cap;
  const int64_t want_blocks = 2LL * multiprocessor_count();
  while (tile_l > 128 && B * ceil_div(L, tile_l) < want_blocks) {
    const int half = tile_l / 2 / 32 * 32;
    tile_l = half > 128 ? half : 128;
  }

  const dim3 grid(static_cast<unsigned>(ceil_div(L, tile_l)), grid_y(B));
  const size_t smem = static_cast<size_t>(tile_l) * stage_bytes_per_l + red_bytes;
  CAUCHY_LAUNCH(cauchy_conj_bwd_kernel<K>, grid, kBwdThreads, smem, stream, g, v, z, w,
                reinterpret_cast<float*>(grad_v), reinterpret_cast<float*>(grad_w), B, M, L,
                tile_l, mt, gy);
  return cudaGetLastError();
}

}  // namespace

// Dispatch the runtime K to the kernel instantiated for it (accumulators in registers).
#define CAUCHY_DISPATCH_K(K, CALL)            \
  switch (K) {                                \
    case 1: { constexpr int kK = 1; return CALL; } \
    case 2: { constexpr int kK = 2; return CALL; } \
    case 3: { constexpr int kK = 3; return CALL; } \
    case 4: { constexpr int kK = 4; return CALL; } \
    case 5: { constexpr int kK = 5; return CALL; } \
    case 6: { constexpr int kK = 6; return CALL; } \
    case 7: { constexpr int kK = 7; return CALL; } \
    case 8: { constexpr int kK = 8; return CALL; } \
    default: return cudaErrorInvalidValue;    \
  }

cudaError_t cauchy_conj_forward_launch(const float2* v, const float2* z, const float2* w,
                                       float2* r, int64_t K, int64_t B, int64_t M, int64_t L,
                                       cudaStream_t stream) {
  if (!sizes_ok(K, B, M, L)) return cudaErrorInvalidValue;
  if (B == 0 || L == 0) return cudaSuccess;  // empty output
  const int b = static_cast<int>(B), m = static_cast<int>(M), l = static_cast<int>(L);
  CAUCHY_DISPATCH_K(K, launch_forward<kK>(v, z, w, r, b, m, l, stream))
}

cudaError_t cauchy_conj_backward_launch(const float2* g, const float2* v, const float2* z,
                                        const float2* w, float2* grad_v, float2* grad_w,
                                        int64_t K, int64_t B, int64_t M, int64_t L,
                                        cudaStream_t stream) {
  if (!sizes_ok(K, B, M, L)) return cudaErrorInvalidValue;
  if (B == 0) return cudaSuccess;  // empty gradients
  cudaError_t err = cudaMemsetAsync(grad_v, 0, sizeof(float2) * K * B * M, stream);
  if (err != cudaSuccess) return err;
  err = cudaMemsetAsync(grad_w, 0, sizeof(float2) * B * M, stream);
  if (err != cudaSuccess) return err;
  if (L == 0) return cudaSuccess;  // empty sums
  const int b = static_cast<int>(B), m = static_cast<int>(M), l = static_cast<int>(L);
  CAUCHY_DISPATCH_K(K, launch_backward<kK>(g, v, z, w, grad_v, grad_w, b, m, l, stream))
}
