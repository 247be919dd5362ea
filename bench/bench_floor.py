"""The floor: how fast one ViS4mer training step could possibly be on this device, and how far
our measured step is from it.

The step's FLOPs and memory traffic are counted from the model's shapes (formulas below, one
comment per term); the device's large-GEMM rate (fp32 and bf16) and copy bandwidth are measured
in the same run; then

    floor = max(compute time, memory time)
    compute time = linear FLOPs / GEMM rate (bf16 or fp32) + other FLOPs / fp32 GEMM rate
    memory time  = bytes moved / copy bandwidth

and the measured step (fp32, and with bf16 autocast) is reported as a multiple of its floor.
Both the FLOPs and the bytes are lower-bound estimates (no recomputation, FFT passes counted
once, fp32 activations), so the floor is optimistic.

    python bench/bench_floor.py --preset lvu   # B=16, d_model=1024, L=11820, 3 layers, N=64 (GPU)
    python bench/bench_floor.py --preset cpu   # B=2, d_model=128, L=4096, 3 layers, N=64
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from scipy.fft import next_fast_len

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import copy_bandwidth, fastest, matmul_rate, parse_args, plot_bars, ratio, side_by_side, train_step_case, write_json  # noqa: E402

FLOAT = 4  # bytes per fp32 value
COMPLEX = 8  # bytes per complex64 value
N_CLASSES = 10
PRESETS = {
    # 5 processes (GEMM fp32 and bf16, copy, the step in fp32 and bf16), ~4 s each to start: ~30 s on an H100/H200
    "lvu": dict(
        step=dict(batch=16, d_input=1024, d_model=1024, n_layers=3, d_state=64, length=11820, warmup=2, repeats=5),
        gemm=dict(fp32=8192, bf16=16384, repeats=10), copy=dict(mib=2048, repeats=10), rounds=1,
    ),
    "cpu": dict(
        step=dict(batch=2, d_input=128, d_model=128, n_layers=3, d_state=64, length=4096, warmup=1, repeats=3),
        gemm=dict(fp32=2048, bf16=1024, repeats=5), copy=dict(mib=256, repeats=5), rounds=2,
    ),
    "tiny": dict(
        step=dict(batch=1, d_input=16, d_model=16, n_layers=2, d_state=64, length=64, warmup=0, repeats=1),
        gemm=dict(fp32=64, bf16=64, repeats=1), copy=dict(mib=1, repeats=1), rounds=1,
    ),
}


def layer_shapes(size: dict) -> list[dict]:
    """Per block i: width H = d_model / 2^i, length L = ceil(L / 2^i) (pooling keeps an odd
    last step), the S4 layer's l_max (built for the model's l_max = L), the convolution's FFT
    size n = next_fast_len(2L - 1) and the number of kernel nodes l_max // 2 + 1."""
    shapes = []
    for i in range(size["n_layers"]):
        length = math.ceil(size["length"] / 2**i)
        shapes.append(
            dict(heads=size["d_model"] // 2**i, length=length, l_max=length, n_fft=next_fast_len(2 * length - 1, real=True), nodes=length // 2 + 1)
        )
    return shapes


def real_fft_flops(n: int) -> float:
    """One real FFT (or inverse) of length n: half a complex FFT's conventional 5·n·log2(n)."""
    return 2.5 * n * math.log2(n)


# Cauchy sum per (head, node l, pole m), forward + backward (vis4mer.kernels.cauchy):
CAUCHY_RECIPROCALS = 2 * (2 + 6)  # 1/(z-w) and 1/(z-w̄): a complex subtraction (2) and reciprocal (~6) each
CAUCHY_NUMERATORS = 4  # k00, k01, k10, k11 share the poles
COMPLEX_FMA = 8  # complex multiply-add
CAUCHY_FLOPS_FORWARD = CAUCHY_RECIPROCALS + CAUCHY_NUMERATORS * 2 * COMPLEX_FMA  # v/(z-w) + v̄/(z-w̄) per numerator
CAUCHY_FLOPS_BACKWARD = (
    CAUCHY_RECIPROCALS  # recomputed, not stored
    + CAUCHY_NUMERATORS * 2 * COMPLEX_FMA  # grad_v: g·conj(inv1) + conj(g)·inv2
    + 2 * 6  # inv1², inv2²
    + CAUCHY_NUMERATORS * 2 * COMPLEX_FMA  # grad_w: g·conj(inv1²) + conj(g)·inv2², weighted by conj(v)
)


def step_flops(size: dict) -> dict:
    """FLOPs of one training step (forward + backward), by term."""
    batch, d_input, d_model = size["batch"], size["d_input"], size["d_model"]
    shapes = layer_shapes(size)
    # Linears: 2·B·L·d_in·d_out forward; the backward computes the input gradient and the weight
    # gradient, each as large, so ×3 (the encoder's input needs no gradient: ×2).
    linear = 2 * 2 * batch * size["length"] * d_input * d_model if d_input != d_model else 0  # encoder
    for s in shapes:
        linear += 3 * 2 * batch * s["length"] * s["heads"] * s["heads"]  # S4 output_linear H -> H (Conv1d k=1)
        linear += 3 * 2 * batch * math.ceil(s["length"] / 2) * s["heads"] * (s["heads"] // 2)  # project H -> H/2 after pooling
    linear += 3 * 2 * batch * shapes[-1]["heads"] // 2 * N_CLASSES  # decoder
    fft = pointwise = cauchy = 0.0
    for s in shapes:
        rows, n, bins = batch * s["heads"], s["n_fft"], s["n_fft"] // 2 + 1
        # FFT convolution: forward rfft(u) and irfft(y) per [B, H] row, rfft(k) per head; backward
        # rfft(grad y) and irfft(grad Û) per row, irfft(grad K̂) per head: 4 per row, 2 per head.
        fft += (4 * rows + 2 * s["heads"]) * real_fft_flops(n)
        # Kernel K = irfft(K̂, n=l_max) per head, forward and backward (an rfft).
        fft += 2 * s["heads"] * real_fft_flops(s["l_max"])
        # Spectrum product Û·K̂ (6 flops per complex multiply): forward once, backward twice.
        pointwise += 3 * 6 * rows * bins
        # Cauchy sum: heads × nodes × poles (N/2), forward + backward.
        cauchy += s["heads"] * s["nodes"] * (size["d_state"] // 2) * (CAUCHY_FLOPS_FORWARD + CAUCHY_FLOPS_BACKWARD)
    total = linear + fft + pointwise + cauchy
    return {"linear": linear, "fft": fft, "spectrum_product": pointwise, "cauchy": cauchy, "total": total}


def parameter_count(size: dict) -> int:
    """ViS4mer's parameters (must equal sum(p.numel()) of the model; tested)."""
    d_input, d_model, poles = size["d_input"], size["d_model"], size["d_state"] // 2
    count = (d_input * d_model + d_model) if d_input != d_model else 0  # encoder
    for s in layer_shapes(size):
        h = s["heads"]
        count += 2 * h  # LayerNorm weight and bias
        count += h * poles * (1 + 1 + 2 + 2 + 2) + h  # Re log Λ, Im Λ, B, C, P (complex as 2 reals), log Δ
        count += h + h * h + h  # D, output_linear weight and bias
        count += h * (h // 2) + h // 2  # project
    h_last = d_model // 2 ** size["n_layers"]
    return count + h_last * N_CLASSES + N_CLASSES  # decoder


def step_bytes(size: dict) -> dict:
    """Bytes moved to and from memory by one training step, by term (fp32 activations).

    E = B·L·H values per block activation, C = B·H·(n/2 + 1) complex spectrum values.
    The backward of each elementwise op reads its saved input(s) and the output gradient and
    writes the input gradient: counted as twice the forward traffic.
    """
    batch = size["batch"]
    forward = {"input": 2 * batch * size["length"] * size["d_input"] * FLOAT}  # the finite check, then the encoder/first LN read
    if size["d_input"] != size["d_model"]:
        forward["input"] += batch * size["length"] * size["d_model"] * FLOAT  # encoder output
    terms = dict.fromkeys(["layernorm", "fft_conv", "skip_gelu", "output_linear", "residual", "pool_project_gelu"], 0.0)
    for s in layer_shapes(size):
        e = batch * s["length"] * s["heads"] * FLOAT
        c = batch * s["heads"] * (s["n_fft"] // 2 + 1) * COMPLEX
        padded = batch * s["heads"] * s["n_fft"] * FLOAT
        terms["layernorm"] += 2 * e  # read x, write normalised x
        terms["fft_conv"] += (e + c) + (2 * c) + (c + padded)  # rfft(u): read E, write C; Û·K̂: read C, write C; irfft: read C, write n reals
        terms["skip_gelu"] += 3 * e + 2 * e  # y + D·u: read y and u, write; GELU: read, write
        terms["output_linear"] += 2 * e  # read, write (weights are small)
        terms["residual"] += 3 * e  # x + z: read two, write one
        terms["pool_project_gelu"] += 1.5 * e + 0.75 * e + 0.5 * e  # pool: read E, write E/2; project: read E/2, write E/4; GELU E/4 twice
    forward |= terms
    backward = {f"{key}_backward": 2 * value for key, value in forward.items() if key != "input"}
    optimizer = 7 * FLOAT * parameter_count(size)  # AdamW reads p, g, m, v and writes p, m, v
    result = forward | backward | {"optimizer": optimizer}
    return result | {"total": sum(result.values())}


def floor_seconds(flops: dict, bytes_moved: float, linear_rate: float, fp32_rate: float, bandwidth: float) -> dict:
    """Compute time (linears at linear_rate, the rest at the fp32 rate), memory time, their max."""
    compute = flops["linear"] / linear_rate + (flops["total"] - flops["linear"]) / fp32_rate
    memory = bytes_moved / bandwidth
    return {"compute_s": compute, "memory_s": memory, "floor_s": max(compute, memory), "bound": "compute" if compute >= memory else "memory"}


def main(argv: list[str] | None = None) -> dict:
    args, preset = parse_args(__doc__, PRESETS, argv)
    size, gemm = preset["step"], preset["gemm"]
    rates = side_by_side(
        {
            "fp32": (matmul_rate, args.device, "float32", gemm["fp32"], gemm["repeats"]),
            "bf16": (matmul_rate, args.device, "bfloat16", gemm["bf16"], gemm["repeats"]),
            "copy": (copy_bandwidth, args.device, preset["copy"]["mib"], preset["copy"]["repeats"]),
        },
        preset["rounds"],
    )
    copy = rates.pop("copy")
    cases = {precision: (train_step_case, "vis4mer", size, args.device, precision == "bf16") for precision in ("fp32", "bf16")}
    measured = side_by_side(cases, preset["rounds"])
    print("rates", rates, "copy", copy, "measured", measured, sep="\n", flush=True)
    flops, moved = step_flops(size), step_bytes(size)
    floors, multiples = {}, {}
    if all("error" not in r for r in (*rates.values(), copy)):
        fp32_rate = rates["fp32"]["flop_per_s"]
        for precision in ("fp32", "bf16"):
            floors[precision] = floor_seconds(flops, moved["total"], rates[precision]["flop_per_s"], fp32_rate, copy["bytes_per_s"])
            multiples[precision] = ratio(fastest(measured[precision]), floors[precision]["floor_s"])
    payload = {
        "preset": args.preset,
        "device": args.device,
        "size": size,
        "flops": flops,
        "bytes": moved,
        "parameters": parameter_count(size),
        "matmul": rates,
        "copy": copy,
        "floor": floors,
        "measured": measured,
        "measured_over_floor": multiples,
        "headline": {"measured_over_floor": multiples, "best": min((m for m in multiples.values() if m), default=None)},
    }
    name = f"floor_{args.preset}"
    path = write_json(name, payload)
    ms = {}
    for precision, floor in floors.items():
        ms[f"{precision} floor: compute"] = 1e3 * floor["compute_s"]
        ms[f"{precision} floor: memory"] = 1e3 * floor["memory_s"]
        ms[f"{precision} measured (x{multiples[precision]} floor)"] = 1e3 * (fastest(measured[precision]) or float("nan"))
    panels = [
        dict(title="training step vs its floor", xlabel="milliseconds", bars=ms, log=True),
        dict(title="FLOPs per step by term", xlabel="GFLOP", bars={k: v / 1e9 for k, v in flops.items()}, log=True),
    ]
    title = f"ViS4mer step floor, B={size['batch']}, d_model={size['d_model']}, L={size['length']} ({args.device})"
    print(f"wrote {path} and {plot_bars(name, panels, title)}")
    return payload


if __name__ == "__main__":
    main()
