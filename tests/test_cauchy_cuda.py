"""Tests of the CUDA Cauchy extension (cuda/cauchy/*, vis4mer.kernels.cauchy_cuda).

What runs where:
- everywhere: the closed-form gradient formulas the kernels implement vs autograd; the
  loader's reasons, memoization, cache directory and CLI;
- with nvcc on the PATH: the kernel source compiles for sm_90 without warnings;
- with g++ and the CUDA headers: the real kernels and launchers, compiled for the CPU by
  cauchy_emulate.cpp, match a float64 reference (indexing, tiling, reductions);
- with g++ (slow): the PyTorch binding parses against torch's headers;
- with a CUDA device (@gpu): the built extension's forward and both gradients vs float64.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vis4mer.kernels import cauchy_cuda as cc

REPO = Path(__file__).resolve().parents[1]
CUDA_DIR = REPO / "cuda" / "cauchy"
HAS_GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device")
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found on PATH")

# (K, B, M, L)
SHAPES = [(4, 3, 32, 97), (4, 16, 32, 1000), (1, 2, 1, 33), (2, 5, 512, 64), (4, 8, 17, 4097)]
REGIMES = ["outside_unit_circle", "left_half_plane"]
RTOL = 1e-5


# ----------------------------------------------------------------------------------------
# Dense float64 references, straight from the definitions
# ----------------------------------------------------------------------------------------
def dense_cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """r (K, B, L) = sum_m v/(z - w) + conj(v)/(z - conj(w)); v (K,B,M), z (L,), w (B,M)."""
    inv1 = 1 / (z[None, :, None] - w[:, None, :])  # (B, L, M)
    inv2 = 1 / (z[None, :, None] - w.conj()[:, None, :])  # (B, L, M)
    return torch.einsum("kbm,blm->kbl", v, inv1) + torch.einsum("kbm,blm->kbl", v.conj(), inv2)


def autograd_grads(g, v, z, w):
    """Ground truth: (grad_v (K,B,M), grad_w (B,M)) by autograd through dense_cauchy, for the
    upstream gradient g (K,B,L) (PyTorch's convention: g = dLoss/d conj(r))."""
    v = v.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    grad_v, grad_w = torch.autograd.grad(dense_cauchy(v, z, w), (v, w), grad_outputs=g)
    return grad_v, grad_w


def closed_form_grads(g, v, z, w):
    """The formulas the kernels implement (see cuda/cauchy/cauchy_kernel.cu)."""
    inv1 = 1 / (z[None, :, None] - w[:, None, :])  # (B, L, M)
    inv2 = 1 / (z[None, :, None] - w.conj()[:, None, :])  # (B, L, M)
    grad_v = torch.einsum("kbl,blm->kbm", g, inv1.conj()) + torch.einsum(
        "kbl,blm->kbm", g.conj(), inv2
    )
    t = torch.einsum("kbl,blm->kbm", g, (inv1**2).conj()) + torch.einsum(
        "kbl,blm->kbm", g.conj(), inv2**2
    )
    grad_w = (v.conj() * t).sum(0)  # (B, M)
    return grad_v, grad_w


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    got = got.detach().cpu().to(torch.complex128)
    ref = ref.detach().cpu().to(torch.complex128)
    return float(torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref))


def make_inputs(K: int, B: int, M: int, L: int, regime: str, seed: int = 0):
    """complex64 CPU tensors v (K,B,M), z (L,), w (B,M), g (K,B,L).

    z are unit-circle nodes exp(-i pi l / L) (the half circle S4 evaluates on).
    outside_unit_circle: w = (1 + a) exp(i theta), a in [0.001, 0.5] (poles up to 1e-3 from z).
    left_half_plane: Re(w) in [-1, -0.01], |w| kept >= 0.05 away from the unit circle.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)

    def cnormal(shape):
        return torch.complex(
            torch.randn(shape, generator=gen, dtype=torch.float64),
            torch.randn(shape, generator=gen, dtype=torch.float64),
        )

    z = torch.exp(-1j * math.pi * torch.arange(L, dtype=torch.float64) / L)
    if regime == "outside_unit_circle":
        w = (1 + uniform((B, M), 0.001, 0.5)) * torch.exp(1j * uniform((B, M), 0, 2 * math.pi))
    elif regime == "left_half_plane":
        w = torch.complex(uniform((B, M), -1.0, -0.01), uniform((B, M), -3.0, 3.0))
        near = (w.abs() - 1).abs() < 0.05
        w = torch.where(near, w * (1.1 / w.abs()), w)
    else:
        raise ValueError(regime)
    c64 = torch.complex64
    return cnormal((K, B, M)).to(c64), z.to(c64), w.to(c64), cnormal((K, B, L)).to(c64)


# ----------------------------------------------------------------------------------------
# CPU: the formulas
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("regime", REGIMES)
def test_closed_form_grads_match_autograd(regime):
    """The closed-form gradients (what the kernels compute) equal autograd through the
    dense definition of r, in complex128, i.e. they follow PyTorch's complex convention."""
    v, z, w, g = (t.to(torch.complex128) for t in make_inputs(3, 4, 6, 23, regime, seed=1))
    ref_v, ref_w = autograd_grads(g, v, z, w)
    got_v, got_w = closed_form_grads(g, v, z, w)
    assert rel_err(got_v, ref_v) < 1e-10
    assert rel_err(got_w, ref_w) < 1e-10


# ----------------------------------------------------------------------------------------
# nvcc: the kernel source; g++: the kernels emulated on the CPU
# ----------------------------------------------------------------------------------------
@needs_nvcc
def test_cu_source_compiles_with_nvcc(tmp_path):
    obj = tmp_path / "x.o"
    cmd = ["nvcc", "-c", "-arch=sm_90", "-std=c++17", "-O3", "-Xcompiler", "-Wall,-Wextra",
           "-o", str(obj), str(CUDA_DIR / "cauchy_kernel.cu")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert obj.is_file() and obj.stat().st_size > 0
    assert "warning" not in (proc.stdout + proc.stderr).lower(), proc.stderr


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """cauchy_emulate.cpp: the real kernels and launchers compiled for the CPU (one
    std::thread per CUDA thread), so that their indexing runs on a machine without a GPU."""
    gxx = shutil.which("g++")
    cuda_include = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    if gxx is None:
        pytest.skip("g++ not found on PATH")
    if not (cuda_include / "cuda_runtime.h").is_file():
        pytest.skip(f"CUDA headers not found in {cuda_include}")
    exe = tmp_path_factory.mktemp("emulate") / "cauchy_emulate"
    cmd = [gxx, "-std=c++20", "-O2", "-pthread", "-Wall", "-Wextra", "-Werror",
           "-Wno-unknown-pragmas", f"-I{cuda_include}", "-o", str(exe),
           str(CUDA_DIR / "cauchy_emulate.cpp")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return exe


def run_emulated(exe: Path, v, z, w, g, tmp_path: Path, n_sm: int = 132, max_grid_y: int = 65535):
    """(r, grad_v, grad_w) from the emulated launchers; n_sm steers the backward's tile
    size (many SMs -> short tiles -> many atomics per value), max_grid_y the loop over b."""
    K, B, M = v.shape
    L = z.shape[0]
    inp, out = tmp_path / "in.bin", tmp_path / "out.bin"
    with open(inp, "wb") as f:
        for t in (v, z, w, g):
            f.write(t.contiguous().numpy().astype(np.complex64).tobytes())
    args = [K, B, M, L, inp, out, n_sm, max_grid_y]
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    flat = torch.from_numpy(np.fromfile(out, dtype=np.complex64))
    r, grad_v, grad_w = torch.split(flat, [K * B * L, K * B * M, B * M])
    return r.view(K, B, L), grad_v.view(K, B, M), grad_w.view(B, M)


def check_against_float64(r, grad_v, grad_w, v, z, w, g):
    v64, z64, w64, g64 = (t.to(torch.complex128) for t in (v, z, w, g))
    ref_v, ref_w = autograd_grads(g64, v64, z64, w64)
    errors = {
        "r": rel_err(r, dense_cauchy(v64, z64, w64)),
        "grad_v": rel_err(grad_v, ref_v),
        "grad_w": rel_err(grad_w, ref_w),
    }
    assert all(e < RTOL for e in errors.values()), errors  # NaN fails too


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "K{}-B{}-M{}-L{}".format(*s))
def test_emulated_kernels_match_float64(emulator, shape, regime, tmp_path):
    """The kernels, run by the CPU emulator, are within 1e-5 of float64 for forward and
    both gradients (the device's 1-ulp hardware reciprocal is an IEEE division there)."""
    v, z, w, g = make_inputs(*shape, regime)
    check_against_float64(*run_emulated(emulator, v, z, w, g, tmp_path), v, z, w, g)


@pytest.mark.parametrize(("n_sm", "max_grid_y"), [(1, 65535), (1000, 2)], ids=["long-tiles", "short-tiles-b-loop"])
@pytest.mark.parametrize("shape", [(4, 16, 32, 1000), (8, 3, 40, 300), (3, 2, 200, 77), (5, 1, 128, 2000)],
                         ids=lambda s: "K{}-B{}-M{}-L{}".format(*s))  # fmt: skip
def test_emulated_kernels_tilings(emulator, shape, n_sm, max_grid_y, tmp_path):
    """Other launch geometries: the largest tiles (up to the full 48 KB of shared memory),
    the shortest (many atomics per value), gridDim.y capped below B (loop over b), K = 8,
    and M between 128 and 256 (one l group, no shared-memory reduction)."""
    v, z, w, g = make_inputs(*shape, "outside_unit_circle")
    out = run_emulated(emulator, v, z, w, g, tmp_path, n_sm=n_sm, max_grid_y=max_grid_y)
    check_against_float64(*out, v, z, w, g)


# ----------------------------------------------------------------------------------------
# g++: the binding
# ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_binding_parses_against_torch_headers():
    """cauchy_binding.cpp parses with torch's headers (-fsyntax-only, warnings as errors
    for our file). A CPU torch ships the c10/cuda headers but not the CMake-generated
    cuda_cmake_macros.h, hence -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE (it only sets the shared
    library export macro)."""
    from torch.utils import cpp_extension

    gxx = shutil.which("g++")
    py_include = Path(sysconfig.get_paths()["include"])
    cuda_include = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    if gxx is None:
        pytest.skip("g++ not found on PATH")
    if not (py_include / "Python.h").is_file():
        pytest.skip(f"Python.h not found in {py_include}")
    if not (cuda_include / "cuda_runtime_api.h").is_file():
        pytest.skip(f"CUDA headers not found in {cuda_include}")
    torch_includes = cpp_extension.include_paths()
    if not (Path(torch_includes[0]) / "c10" / "cuda" / "CUDAGuard.h").is_file():
        pytest.skip("this torch ships no c10/cuda headers")
    cmd = [gxx, "-fsyntax-only", "-std=c++20", "-Wall", "-Wextra", "-Werror",
           "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE", "-DTORCH_EXTENSION_NAME=vis4mer_cauchy",
           "-DTORCH_API_INCLUDE_EXTENSION_H"]  # fmt: skip
    for inc in [*torch_includes, str(py_include), str(cuda_include)]:
        cmd += ["-isystem", inc]  # system headers: their warnings are not ours
    proc = subprocess.run([*cmd, str(CUDA_DIR / "cauchy_binding.cpp")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]


# ----------------------------------------------------------------------------------------
# The loader (CPU; torch and the build step are faked where needed)
# ----------------------------------------------------------------------------------------
def test_import_and_api_exist():
    for name in ("load", "forward", "backward", "main", "build_directory"):
        assert callable(getattr(cc, name))
    assert all(p.is_file() for p in cc.source_paths()), cc.source_paths()


def test_load_reports_reason_without_gpu():
    if HAS_GPU:
        pytest.skip("a CUDA device is present")
    module, reason = cc.load()
    assert module is None
    assert reason and "CUDA" in reason
    assert cc.load(build_if_missing=False) == (None, reason)  # memoized, never raises
    with pytest.raises(RuntimeError, match="unavailable: no CUDA device visible"):
        cc.forward(torch.zeros(1, 1, 1, dtype=torch.complex64), torch.zeros(1), torch.zeros(1))


@pytest.fixture
def fake_cuda_torch(monkeypatch, tmp_path):
    """A process that looks like it has a CUDA torch and a GPU, with a fresh memo and an
    empty build directory; the real build step is replaced by the returned recorder."""
    monkeypatch.setattr(cc, "_result", None)
    monkeypatch.setattr(cc, "_last_build_log", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setenv("VIS4MER_EXT_DIR", str(tmp_path / "ext"))
    calls = []
    fake_module = SimpleNamespace(forward=lambda v, z, w: "r", backward=lambda g, v, z, w: ("gv", "gw"))

    def fake_build(directory, *, verbose=False):
        calls.append(directory)
        return fake_module

    monkeypatch.setattr(cc, "_build", fake_build)
    return SimpleNamespace(calls=calls, module=fake_module, directory=tmp_path / "ext")


def test_load_reports_cpu_torch(monkeypatch, fake_cuda_torch):
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    assert cc.load() == (None, "torch is a CPU build (torch.version.cuda is None)")
    assert fake_cuda_torch.calls == []


def test_load_not_built_then_builds(fake_cuda_torch):
    assert cc.load(build_if_missing=False) == (None, "not built (run `make cuda`)")
    assert fake_cuda_torch.calls == []
    module, reason = cc.load()  # "not built" was not memoized
    assert module is fake_cuda_torch.module
    assert reason == f"loaded from {fake_cuda_torch.directory}"
    assert fake_cuda_torch.calls == [fake_cuda_torch.directory]
    assert cc.load() == (module, reason) and len(fake_cuda_torch.calls) == 1  # memoized
    assert cc.forward(None, None, None) == "r"
    assert cc.backward(None, None, None, None) == ("gv", "gw")


def test_no_build_env_loads_only_a_cached_build(monkeypatch, fake_cuda_torch):
    """VIS4MER_EXT_NO_BUILD: a caller whose build failed keeps every later process from compiling."""
    monkeypatch.setenv("VIS4MER_EXT_NO_BUILD", "1")
    assert cc.load() == (None, "not built (run `make cuda`)")
    assert fake_cuda_torch.calls == []
    fake_cuda_torch.directory.mkdir()
    (fake_cuda_torch.directory / "vis4mer_cauchy.so").write_bytes(b"")
    assert cc.load()[0] is fake_cuda_torch.module  # an existing build still loads


def test_load_uses_cached_build(fake_cuda_torch):
    fake_cuda_torch.directory.mkdir()
    (fake_cuda_torch.directory / "vis4mer_cauchy.so").write_bytes(b"")
    module, _ = cc.load(build_if_missing=False)
    assert module is fake_cuda_torch.module


NINJA_FAILURE = """Error building extension 'vis4mer_cauchy': [1/3] /usr/local/cuda/bin/nvcc --generate-dependencies-with-compile -DTORCH_EXTENSION_NAME=vis4mer_cauchy -c /repo/cuda/cauchy/cauchy_kernel.cu -o cauchy_kernel.cuda.o
FAILED: cauchy_kernel.cuda.o
/repo/cuda/cauchy/cauchy_kernel.cu(42): error: identifier "foo" is undefined
/repo/cuda/cauchy/cauchy_kernel.cu(43): error: expected a ";"
2 errors detected in the compilation of "/repo/cuda/cauchy/cauchy_kernel.cu".
ninja: build stopped: subcommand failed.
"""


def test_load_reports_first_compiler_error(monkeypatch, fake_cuda_torch):
    def failing_build(directory, *, verbose=False):
        raise RuntimeError(NINJA_FAILURE)

    monkeypatch.setattr(cc, "_build", failing_build)
    module, reason = cc.load()
    assert module is None
    assert reason == 'build failed: /repo/cuda/cauchy/cauchy_kernel.cu(42): error: identifier "foo" is undefined'
    assert "expected a" in cc._last_build_log  # full log kept for `--build` to print
    assert cc.load() == (None, reason)  # a failed build is not retried in this process


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NINJA_FAILURE, '/repo/cuda/cauchy/cauchy_kernel.cu(42): error: identifier "foo" is undefined'),
        ("Error building extension 'x': [1/2] c++ -c b.cpp\nb.cpp:3:10: fatal error: t.h: No such file",
         "b.cpp:3:10: fatal error: t.h: No such file"),
        ("ptxas error   : Entry function uses too much shared data", "ptxas error   : Entry function uses too much shared data"),
        ("Ninja is required to load C++ extensions (pip install ninja to get it)",
         "Ninja is required to load C++ extensions (pip install ninja to get it)"),
        ("Error building extension 'vis4mer_cauchy'", "Error building extension 'vis4mer_cauchy'"),
        ("x\nsomething error-ish happened\n", "something error-ish happened"),
        ("", "unknown error"),
    ],
)  # fmt: skip
def test_first_error_line(text, expected):
    assert cc.first_error_line(text) == expected


def test_first_error_line_truncates():
    assert len(cc.first_error_line("a.cu(1): error: " + "x" * 1000)) == 300


def test_build_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("VIS4MER_EXT_DIR", raising=False)
    default = cc.build_directory()
    assert default.parent == Path.home() / ".cache" / "vis4mer" / "ext"
    assert default.name == f"{torch.__version__}-{torch.version.cuda}-{cc.source_hash()}"
    monkeypatch.setattr(cc, "EXTRA_CUDA_CFLAGS", ["-O2"])  # flags are part of the hash
    assert cc.build_directory() != default
    monkeypatch.setenv("VIS4MER_EXT_DIR", str(tmp_path))
    assert cc.build_directory() == tmp_path


def test_cli_build_reports_reason_without_gpu():
    if HAS_GPU:
        pytest.skip("a CUDA device is present (the build would run)")
    proc = subprocess.run([sys.executable, "-m", "vis4mer.kernels.cauchy_cuda", "--build"],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 1
    assert "vis4mer_cauchy was not built: no CUDA device visible" in proc.stderr


def test_cli_build_success_and_failure(monkeypatch, fake_cuda_torch, capsys):
    assert cc.main(["--build"]) == 0
    assert "built: loaded from" in capsys.readouterr().out
    monkeypatch.setattr(cc, "_result", None)

    def failing_build(directory, *, verbose=False):
        raise RuntimeError(NINJA_FAILURE)

    monkeypatch.setattr(cc, "_build", failing_build)
    assert cc.main(["--build"]) == 1
    err = capsys.readouterr().err
    assert 'build failed: /repo/cuda/cauchy/cauchy_kernel.cu(42): error: identifier "foo"' in err
    assert "ninja: build stopped" in err  # the full compiler output follows


# ----------------------------------------------------------------------------------------
# GPU: the built extension
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ext():
    module, reason = cc.load()
    if module is None:
        pytest.fail(f"a CUDA device is present but the extension is unavailable: {reason}")
    return module


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "K{}-B{}-M{}-L{}".format(*s))
def test_gpu_matches_float64(ext, shape, regime):
    v, z, w, g = make_inputs(*shape, regime)
    r = ext.forward(v.cuda(), z.cuda(), w.cuda())
    grad_v, grad_w = ext.backward(g.cuda(), v.cuda(), z.cuda(), w.cuda())
    K, B, M, L = shape
    assert r.shape == (K, B, L) and grad_v.shape == (K, B, M) and grad_w.shape == (B, M)
    assert r.dtype == grad_v.dtype == grad_w.dtype == torch.complex64
    v64, z64, w64, g64 = (t.to(torch.complex128) for t in (v, z, w, g))
    ref_v, ref_w = autograd_grads(g64, v64, z64, w64)
    assert rel_err(r, dense_cauchy(v64, z64, w64)) < RTOL
    assert rel_err(grad_v, ref_v) < RTOL
    assert rel_err(grad_w, ref_w) < RTOL


@pytest.mark.gpu
@needs_gpu
def test_gpu_views_and_large_b(ext):
    """Conjugate-bit views and non-contiguous inputs are materialised; B > 65535 exercises
    the kernels' loop over b (grid.y is capped at 65535)."""
    v, z, w, g = make_inputs(2, 70000, 3, 40, "left_half_plane")
    v_view = v.conj().resolve_conj().cuda().conj()  # is_conj() view holding conj(conj(v))
    assert v_view.is_conj()
    w_nc = torch.stack([w, w], dim=-1).cuda()[..., 0]  # stride (2M, 2)
    assert not w_nc.is_contiguous()
    r = ext.forward(v_view, z.cuda(), w_nc)
    grad_v, grad_w = ext.backward(g.cuda().transpose(0, 1).contiguous().transpose(0, 1), v_view, z.cuda(), w_nc)
    v64, z64, w64, g64 = (t.to(torch.complex128) for t in (v, z, w, g))
    ref_v, ref_w = autograd_grads(g64, v64, z64, w64)
    assert rel_err(r, dense_cauchy(v64, z64, w64)) < RTOL
    assert rel_err(grad_v, ref_v) < RTOL
    assert rel_err(grad_w, ref_w) < RTOL


@pytest.mark.gpu
@needs_gpu
def test_gpu_empty_l(ext):
    v, _, w, _ = (t.cuda() for t in make_inputs(2, 3, 4, 1, "outside_unit_circle"))
    z = torch.zeros(0, dtype=torch.complex64, device="cuda")
    assert ext.forward(v, z, w).shape == (2, 3, 0)
    grad_v, grad_w = ext.backward(torch.zeros(2, 3, 0, dtype=torch.complex64, device="cuda"), v, z, w)
    assert grad_v.abs().max() == 0 and grad_w.abs().max() == 0


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v, z, w: (v.cpu(), z, w), "v must be a CUDA tensor"),
        (lambda v, z, w: (v, z.to(torch.complex128), w), "z must be complex64"),
        (lambda v, z, w: (v[0], z, w), r"v must have shape \(K, B, M\)"),
        (lambda v, z, w: (v, z, w[:, :-1]), r"w must have shape \(B, M\)"),
        (lambda v, z, w: (v.repeat(3, 1, 1), z, w), r"K = v.size\(0\) must be in \[1, 8\]"),
        (lambda v, z, w: (v.repeat(1, 1, 171), z, w.repeat(1, 171)), r"M = v.size\(2\) must be in \[1, 512\]"),
    ],
)  # fmt: skip
def test_gpu_rejects_bad_inputs(ext, change, message):
    v, z, w, _ = (t.cuda() for t in make_inputs(4, 2, 3, 5, "outside_unit_circle"))
    with pytest.raises(RuntimeError, match=message):
        ext.forward(*change(v, z, w))
    g = torch.zeros(4, 2, 5, dtype=torch.complex64, device="cuda")
    with pytest.raises(RuntimeError, match=r"g must have shape \(K, B, L\)"):
        ext.backward(g[:, :, :-1], v, z, w)
