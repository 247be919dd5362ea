// CPU emulation of cauchy_kernel.cu, for tests on machines without a GPU (not part of the
// extension).
//
// Compiles the real kernels and launchers with a host compiler: each CUDA block runs as
// blockDim.x std::threads with a std::barrier for __syncthreads(); atomicAdd takes a lock;
// shared memory is a static buffer poisoned with NaN before every block (a read of
// unstaged shared memory shows up as NaN) and checked afterwards for writes beyond the
// launch's dynamic shared-memory size. What this cannot show: warp-level timing, the
// device memory model, the hardware reciprocal (the host uses IEEE 1/x) and the binding.
//
//   g++ -std=c++20 -O2 -pthread -Wno-unknown-pragmas -I<cuda>/include
//       -o cauchy_emulate cauchy_emulate.cpp
//   cauchy_emulate K B M L in.bin out.bin [n_sm [max_grid_y]]
//
// in.bin:  complex64 (float32 re, im pairs) v (K,B,M), z (L,), w (B,M), g (K,B,L)
// out.bin: complex64 r (K,B,L), grad_v (K,B,M), grad_w (B,M)
// n_sm (default 132) drives the backward's tile choice; max_grid_y (default 65535) caps
// gridDim.y so that a small B exercises the kernels' loop over b.

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include <cuda_runtime.h>  // float2, dim3, cudaError_t (no runtime calls are made)

namespace emu {
constexpr size_t kSmemBytes = 48 * 1024;  // the kernels' per-block budget without opt-in
int n_sm = 132;
int max_grid_y = 65535;
size_t max_smem_requested = 0;
}  // namespace emu

// The kernels' `extern __shared__ float2 xxx_smem[];` (block-scope declarations in this
// TU's unnamed namespace) refer to these.
namespace {
alignas(16) float2 fwd_smem[emu::kSmemBytes / sizeof(float2)];
alignas(16) float2 bwd_smem[emu::kSmemBytes / sizeof(float2)];
}  // namespace

namespace emu {
thread_local uint3 thread_idx;
thread_local uint3 block_idx;
dim3 grid_dim, block_dim;
std::barrier<>* block_barrier = nullptr;
std::mutex atomic_mutex;

float atomic_add(float* p, float x) {
  std::lock_guard<std::mutex> lock(atomic_mutex);
  const float old = *p;
  *p = old + x;
  return old;
}

void poison(float2* buf) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::fill(buf, buf + kSmemBytes / sizeof(float2), make_float2(nan, nan));
}

// True if nothing past `bytes` was written since poison().
bool untouched_after(const float2* buf, size_t bytes) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(buf);
  float2 pattern;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  pattern = make_float2(nan, nan);
  for (size_t i = (bytes + 7) / 8 * 8; i < kSmemBytes; i += 8)
    if (std::memcmp(p + i, &pattern, 8) != 0) return false;
  return true;
}

// Runs the grid block after block on blockDim.x threads (created once per launch).
// `sync` is the blocks' __syncthreads(); `done` separates blocks, and its completion step
// (one thread, all others waiting) checks and re-poisons shared memory.
template <class Body>
void launch(dim3 grid, dim3 block, size_t smem_bytes, Body body) {
  if (smem_bytes > kSmemBytes || block.y != 1 || block.z != 1 || grid.z != 1) {
    std::fprintf(stderr, "emulate: unsupported launch (smem %zu bytes)\n", smem_bytes);
    std::exit(4);
  }
  max_smem_requested = std::max(max_smem_requested, smem_bytes);
  grid_dim = grid;
  block_dim = block;
  poison(fwd_smem);
  poison(bwd_smem);
  auto between_blocks = [smem_bytes]() noexcept {
    if (!untouched_after(fwd_smem, smem_bytes) || !untouched_after(bwd_smem, smem_bytes)) {
      std::fprintf(stderr, "emulate: a block wrote past its %zu bytes of shared memory\n",
                   smem_bytes);
      std::exit(5);
    }
    poison(fwd_smem);
    poison(bwd_smem);
  };
  std::barrier<> sync(block.x);
  std::barrier<decltype(between_blocks)> done(block.x, between_blocks);
  block_barrier = &sync;
  std::vector<std::thread> threads;
  threads.reserve(block.x);
  for (unsigned tx = 0; tx < block.x; ++tx)
    threads.emplace_back([&, tx] {
      thread_idx = make_uint3(tx, 0, 0);
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          block_idx = make_uint3(bx, by, 0);
          body();
          done.arrive_and_wait();
        }
    });
  for (auto& t : threads) t.join();
}
}  // namespace emu

// Device built-ins and qualifiers.
#define threadIdx (::emu::thread_idx)
#define blockIdx (::emu::block_idx)
#define gridDim (::emu::grid_dim)
#define blockDim (::emu::block_dim)
#define __syncthreads() (::emu::block_barrier->arrive_and_wait())
#define atomicAdd(p, x) (::emu::atomic_add((p), (x)))
#undef __global__
#define __global__
#undef __host__
#define __host__
#undef __device__
#define __device__
#undef __shared__
#define __shared__
#undef __launch_bounds__
#define __launch_bounds__(...)
using std::min;

// The runtime calls the launchers make.
namespace emu {
cudaError_t get_last_error() { return cudaSuccess; }
cudaError_t memset_async(void* p, int value, size_t n, cudaStream_t) {
  std::memset(p, value, n);
  return cudaSuccess;
}
cudaError_t get_device(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t device_attribute(int* out, cudaDeviceAttr, int) {
  *out = n_sm;
  return cudaSuccess;
}
}  // namespace emu
#define cudaGetLastError ::emu::get_last_error
#define cudaMemsetAsync ::emu::memset_async
#define cudaGetDevice ::emu::get_device
#define cudaDeviceGetAttribute ::emu::device_attribute
#define CAUCHY_MAX_GRID_Y (::emu::max_grid_y)
#define CAUCHY_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ((void)(stream), ::emu::launch((grid), dim3(block), (smem), [=] { kernel(__VA_ARGS__); }))

#include "cauchy_kernel.cu"

namespace {

bool read_all(const char* path, std::vector<float2>& buf) {
  FILE* f = std::fopen(path, "rb");
  if (!f) return false;
  const size_t n = std::fread(buf.data(), sizeof(float2), buf.size(), f);
  std::fclose(f);
  return n == buf.size();
}

bool write_all(const char* path, const std::vector<float2>& buf) {
  FILE* f = std::fopen(path, "wb");
  if (!f) return false;
  const size_t n = std::fwrite(buf.data(), sizeof(float2), buf.size(), f);
  return std::fclose(f) == 0 && n == buf.size();
}

// The launchers reject sizes out of range without launching anything.
bool rejects_bad_sizes() {
  const int64_t bad[][4] = {{0, 1, 1, 1}, {9, 1, 1, 1}, {1, 1, 0, 1}, {1, 1, 513, 1},
                            {1, -1, 1, 1}, {1, 1, 1, -1}, {1, 1, 1, int64_t{1} << 31}};
  for (const auto& s : bad) {
    if (cauchy_conj_forward_launch(nullptr, nullptr, nullptr, nullptr, s[0], s[1], s[2], s[3],
                                   nullptr) != cudaErrorInvalidValue ||
        cauchy_conj_backward_launch(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, s[0],
                                    s[1], s[2], s[3], nullptr) != cudaErrorInvalidValue)
      return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7 || argc > 9) {
    std::fprintf(stderr, "usage: %s K B M L in.bin out.bin [n_sm [max_grid_y]]\n", argv[0]);
    return 2;
  }
  const long K = std::atol(argv[1]), B = std::atol(argv[2]), M = std::atol(argv[3]),
             L = std::atol(argv[4]);
  if (argc > 7) emu::n_sm = std::atoi(argv[7]);
  if (argc > 8) emu::max_grid_y = std::atoi(argv[8]);
  if (K < 1 || B < 1 || M < 1 || L < 1 || emu::n_sm < 1 || emu::max_grid_y < 1) {
    std::fprintf(stderr, "sizes must be positive\n");
    return 2;
  }
  if (!rejects_bad_sizes()) {
    std::fprintf(stderr, "a launcher accepted sizes out of range\n");
    return 3;
  }
  const size_t nv = K * B * M, nz = L, nw = B * M, ng = K * B * L;
  std::vector<float2> in(nv + nz + nw + ng);
  if (!read_all(argv[5], in)) {
    std::fprintf(stderr, "cannot read %zu complex values from %s\n", in.size(), argv[5]);
    return 1;
  }
  const float2* v = in.data();  // (K, B, M)
  const float2* z = v + nv;     // (L,)
  const float2* w = z + nz;     // (B, M)
  const float2* g = w + nw;     // (K, B, L)

  // Outputs start as NaN: every element must be written (r) or zeroed (grads) by the launch.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float2> out(ng + nv + nw, make_float2(nan, nan));
  float2* r = out.data();        // (K, B, L)
  float2* grad_v = r + ng;       // (K, B, M)
  float2* grad_w = grad_v + nv;  // (B, M)

  cudaError_t err = cauchy_conj_forward_launch(v, z, w, r, K, B, M, L, nullptr);
  if (err == cudaSuccess)
    err = cauchy_conj_backward_launch(g, v, z, w, grad_v, grad_w, K, B, M, L, nullptr);
  if (err != cudaSuccess) {
    std::fprintf(stderr, "launcher returned error %d\n", static_cast<int>(err));
    return 1;
  }
  if (!write_all(argv[6], out)) {
    std::fprintf(stderr, "cannot write %s\n", argv[6]);
    return 1;
  }
  std::printf("max dynamic shared memory requested: %zu bytes\n", emu::max_smem_requested);
  return 0;
}
