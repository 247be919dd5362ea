// PyTorch binding of the conjugate-symmetric Cauchy kernels (cauchy_kernel.cu).
//
//   forward(v, z, w) -> r                              v: (K, B, M)  z: (L,)  w: (B, M)
//   backward(g, v, z, w) -> (grad_v, grad_w)           g: (K, B, L) = dLoss/d conj(r)
//
// All complex64 CUDA tensors on one device; 1 <= K <= 8, 1 <= M <= 512. Inputs are made
// contiguous (and lazy conj/neg views materialised) here; kernels run on the current
// CUDA stream of the inputs' device. The autograd Function lives in Python
// (vis4mer/kernels/cauchy.py); these functions do no autograd bookkeeping.

#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <tuple>

#include "cauchy_kernel.h"

namespace {

// Device, dtype and rank of one argument.
void check_arg(const at::Tensor& t, const char* fn, const char* name, int64_t dim,
               const char* shape) {
  TORCH_CHECK(t.is_cuda(), "cauchy_conj_", fn, ": ", name, " must be a CUDA tensor, got device ",
              t.device());
  TORCH_CHECK(t.scalar_type() == at::kComplexFloat, "cauchy_conj_", fn, ": ", name,
              " must be complex64, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, "cauchy_conj_", fn, ": ", name, " must have shape ", shape,
              " (", dim, " dims), got ", t.sizes());
}

// Contiguous, with a lazily conjugated / negated view resolved: the kernels read raw memory.
at::Tensor prepare(const at::Tensor& t) { return t.resolve_conj().resolve_neg().contiguous(); }

const float2* cptr(const at::Tensor& t) {
  return reinterpret_cast<const float2*>(t.data_ptr<c10::complex<float>>());
}

float2* mptr(at::Tensor& t) { return reinterpret_cast<float2*>(t.data_ptr<c10::complex<float>>()); }

struct Sizes {
  int64_t K, B, M, L;
};

// Checks v (K, B, M), z (L,), w (B, M) and returns the sizes.
Sizes check_vzw(const at::Tensor& v, const at::Tensor& z, const at::Tensor& w, const char* fn) {
  check_arg(v, fn, "v", 3, "(K, B, M)");
  check_arg(z, fn, "z", 1, "(L,)");
  check_arg(w, fn, "w", 2, "(B, M)");
  TORCH_CHECK(z.device() == v.device() && w.device() == v.device(), "cauchy_conj_", fn,
              ": v, z and w must be on the same device, got ", v.device(), ", ", z.device(),
              ", ", w.device());
  const Sizes s{v.size(0), v.size(1), v.size(2), z.size(0)};
  TORCH_CHECK(w.size(0) == s.B && w.size(1) == s.M, "cauchy_conj_", fn,
              ": w must have shape (B, M) = (", s.B, ", ", s.M, ") to match v ", v.sizes(),
              ", got ", w.sizes());
  TORCH_CHECK(s.K >= 1 && s.K <= kCauchyMaxK, "cauchy_conj_", fn,
              ": the number of numerators K = v.size(0) must be in [1, ", kCauchyMaxK, "], got ",
              s.K);
  TORCH_CHECK(s.M >= 1 && s.M <= kCauchyMaxM, "cauchy_conj_", fn,
              ": the number of poles M = v.size(2) must be in [1, ", kCauchyMaxM, "], got ", s.M);
  TORCH_CHECK(s.B <= INT32_MAX && s.L <= INT32_MAX, "cauchy_conj_", fn,
              ": B and L must be < 2^31, got B = ", s.B, ", L = ", s.L);
  return s;
}

void check_launch(cudaError_t err, const char* fn) {
  TORCH_CHECK(err == cudaSuccess, "cauchy_conj_", fn, ": kernel launch failed: ",
              cudaGetErrorString(err));
}

}  // namespace

// r: (K, B, L)
at::Tensor cauchy_conj_forward(const at::Tensor& v_in, const at::Tensor& z_in,
                               const at::Tensor& w_in) {
  const Sizes s = check_vzw(v_in, z_in, w_in, "forward");
  const c10::cuda::CUDAGuard device_guard(v_in.device());
  const at::Tensor v = prepare(v_in), z = prepare(z_in), w = prepare(w_in);
  at::Tensor r = at::empty({s.K, s.B, s.L}, v.options());
  check_launch(cauchy_conj_forward_launch(cptr(v), cptr(z), cptr(w), mptr(r), s.K, s.B, s.M, s.L,
                                          c10::cuda::getCurrentCUDAStream()),
               "forward");
  return r;
}

// (grad_v: (K, B, M), grad_w: (B, M))
std::tuple<at::Tensor, at::Tensor> cauchy_conj_backward(const at::Tensor& g_in,
                                                        const at::Tensor& v_in,
                                                        const at::Tensor& z_in,
                                                        const at::Tensor& w_in) {
  const Sizes s = check_vzw(v_in, z_in, w_in, "backward");
  check_arg(g_in, "backward", "g", 3, "(K, B, L)");
  TORCH_CHECK(g_in.device() == v_in.device(),
              "cauchy_conj_backward: g must be on the same device as v, got ", g_in.device(),
              " and ", v_in.device());
  TORCH_CHECK(g_in.size(0) == s.K && g_in.size(1) == s.B && g_in.size(2) == s.L,
              "cauchy_conj_backward: g must have shape (K, B, L) = (", s.K, ", ", s.B, ", ", s.L,
              "), got ", g_in.sizes());
  const c10::cuda::CUDAGuard device_guard(v_in.device());
  const at::Tensor g = prepare(g_in), v = prepare(v_in), z = prepare(z_in), w = prepare(w_in);
  // The launcher zeroes both on the stream before accumulating.
  at::Tensor grad_v = at::empty({s.K, s.B, s.M}, v.options());
  at::Tensor grad_w = at::empty({s.B, s.M}, w.options());
  check_launch(cauchy_conj_backward_launch(cptr(g), cptr(v), cptr(z), cptr(w), mptr(grad_v),
                                           mptr(grad_w), s.K, s.B, s.M, s.L,
                                           c10::cuda::getCurrentCUDAStream()),
               "backward");
  return {grad_v, grad_w};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "vis4mer conjugate-symmetric Cauchy kernel (CUDA)";
  m.def("forward", &cauchy_conj_forward,
        "r[k,b,l] = sum_m v[k,b,m]/(z[l]-w[b,m]) + conj(v[k,b,m])/(z[l]-conj(w[b,m])); "
        "v: (K,B,M), z: (L,), w: (B,M) complex64 CUDA -> r: (K,B,L)",
        py::arg("v"), py::arg("z"), py::arg("w"));
  m.def("backward", &cauchy_conj_backward,
        "Gradients of forward given g = dLoss/d conj(r) (K,B,L) -> (grad_v (K,B,M), grad_w (B,M))",
        py::arg("g"), py::arg("v"), py::arg("z"), py::arg("w"));
}
