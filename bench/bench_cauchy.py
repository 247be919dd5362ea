"""The Cauchy sum, forward and backward, per backend, at ViS4mer's three layer sizes.

    python bench/bench_cauchy.py --preset lvu   # H = 1024/512/256, L = 11820/5910/2955, N = 64 (GPU)
    python bench/bench_cauchy.py --preset cpu   # the same shapes scaled down 4x in H and L

Peak memory is reported beside the two growth laws it is meant to separate:
H·(N + L) (what the inputs and outputs need) and H·N·L (a materialised intermediate).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import backends  # noqa: E402
from common import fastest, isolated, parse_args, plot_bars, time_repeated, write_json  # noqa: E402

LVU_LAYERS = [(1024, 11820), (512, 5910), (256, 2955)]
PRESETS = {
    # 3 layers x 3 backends (torch, keops, cuda) = 9 processes, ~4 s each to start, ms-scale
    # sums; keops compiles its formulas once (~20-40 s): ~60-80 s on an H100/H200
    "lvu": dict(layers=LVU_LAYERS, d_state=64, warmup=2, repeats=5),
    "cpu": dict(layers=[(h // 4, length // 4) for h, length in LVU_LAYERS], d_state=64, warmup=1, repeats=3),
    "tiny": dict(layers=[(4, 64)], d_state=8, warmup=0, repeats=1),
}
NUMERATORS = 4  # k00, k01, k10, k11


def _case(backend_name: str, heads: int, length: int, d_state: int, device: str, warmup: int, repeats: int) -> dict:
    from vis4mer.kernels import cauchy_conj, select_cauchy_backend

    torch.manual_seed(0)
    dev = torch.device(device)
    poles = d_state // 2
    v = torch.randn(NUMERATORS, heads, poles, dtype=torch.complex64, device=dev, requires_grad=True)
    w = (1.001 + torch.rand(heads, poles, device=dev)) * torch.exp(2j * math.pi * torch.rand(heads, poles, device=dev))
    w = w.to(torch.complex64).requires_grad_()
    z = torch.exp(-2j * math.pi * torch.arange(length // 2 + 1, device=dev) / length).to(torch.complex64)
    backend = select_cauchy_backend(backend_name, dev, torch.complex64)

    def forward():
        with torch.no_grad():
            cauchy_conj(v, z, w, backend)

    def forward_backward():
        r = cauchy_conj(v, z, w, backend)
        torch.autograd.grad(r.real.sum() + r.imag.sum(), (v, w))

    nodes = z.shape[0]
    complex_bytes = 8
    return {
        "backend": backend_name,
        "H": heads,
        "L": length,
        "N": d_state,
        "forward": time_repeated(forward, dev, warmup, repeats),
        "forward_backward": time_repeated(forward_backward, dev, warmup, repeats),
        "bytes_H_N_plus_L_mib": round(NUMERATORS * heads * (poles + nodes) * complex_bytes / 2**20, 1),
        "bytes_H_N_L_mib": round(NUMERATORS * heads * poles * nodes * complex_bytes / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    args, preset = parse_args(__doc__, PRESETS, argv)
    results = []
    for heads, length in preset["layers"]:
        for name in backends(args.device):
            result = isolated(_case, name, heads, length, preset["d_state"], args.device, preset["warmup"], preset["repeats"])
            result.setdefault("backend", name)
            print(result, flush=True)
            results.append(result)
    name = f"cauchy_{args.preset}"
    payload = {"preset": args.preset, "device": args.device, "size": preset, "results": results}
    path = write_json(name, payload)
    labels = [f"H={r.get('H', '?')} L={r.get('L', '?')} {r['backend']}" for r in results]
    panels = [
        dict(title=f"{phase.replace('_', ' + ')} (N={preset['d_state']})", xlabel="seconds", log=True,
             bars={label: fastest(r.get(phase, {})) for label, r in zip(labels, results)})
        for phase in ("forward", "forward_backward")
    ]
    print(f"wrote {path} and {plot_bars(name, panels, f'Cauchy sum per backend ({args.device})')}")
    return payload


if __name__ == "__main__":
    main()
