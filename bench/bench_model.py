"""Forward+backward time and peak memory of the S4 layer and of ViS4mer per kernel backend,
and of the Transformer baseline at the same size.

    python bench/bench_model.py --preset cpu     # small sizes, this machine
    python bench/bench_model.py --preset lvu     # the paper's LVU size (B=16, d_model=1024, L=11820, 3 layers), GPU
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fastest, isolated, parse_args, plot_bars, time_repeated, write_json  # noqa: E402

PRESETS = {
    "cpu": dict(batch=2, d_input=256, d_model=256, length=2048, n_layers=3, warmup=1, repeats=3),
    # 7 processes (S4 layer and ViS4mer per backend, the Transformer), ~4 s each to start,
    # 7 steps of ~0.05-2 s each: ~40-60 s on an H100/H200
    "lvu": dict(batch=16, d_input=1024, d_model=1024, length=11820, n_layers=3, warmup=2, repeats=5),
    "tiny": dict(batch=1, d_input=16, d_model=16, length=64, n_layers=2, warmup=0, repeats=1),
}


def _case(kind: str, backend: str, size: dict, device: str) -> dict:
    from vis4mer import S4, build_model

    torch.manual_seed(0)
    dev = torch.device(device)
    batch, length = size["batch"], size["length"]
    if kind == "s4_layer":
        module = S4(size["d_model"], l_max=length, backend=backend).to(dev)
        x = torch.randn(batch, size["d_model"], length, device=dev)
    else:
        extra = {"backend": backend} if kind == "vis4mer" else {}
        module = build_model(kind, size["d_input"], length, 10, size["d_model"], size["n_layers"], dropout=0.0, **extra).to(dev)
        x = torch.randn(batch, length, size["d_input"], device=dev)

    def step():
        module.zero_grad(set_to_none=True)
        module(x).float().square().mean().backward()

    return {"case": kind, "backend": backend, **time_repeated(step, dev, size["warmup"], size["repeats"])}


def backends(device: str) -> list[str]:
    names = ["torch"]
    try:
        import pykeops  # noqa: F401

        names.append("keops")
    except ImportError:
        pass
    if device == "cuda":
        names.append("cuda")
    return names


def main(argv: list[str] | None = None) -> dict:
    args, size = parse_args(__doc__, PRESETS, argv)
    cases = [("s4_layer", b) for b in backends(args.device)] + [("vis4mer", b) for b in backends(args.device)]
    cases.append(("transformer", "sdpa"))
    results = []
    for kind, backend in cases:
        result = isolated(_case, kind, backend, size, args.device)
        result.setdefault("case", kind), result.setdefault("backend", backend)
        print(result, flush=True)
        results.append(result)
    name = f"model_{args.preset}"
    payload = {"preset": args.preset, "device": args.device, "size": size, "results": results}
    path = write_json(name, payload)
    labels = [f"{r['case']} ({r['backend']})" for r in results]
    panels = [
        dict(title="forward + backward", xlabel="seconds", bars={k: fastest(r) for k, r in zip(labels, results)}),
        dict(title="memory above model and input", xlabel="MiB", bars={k: r.get("peak_extra_mib") for k, r in zip(labels, results)}),
    ]
    title = f"B={size['batch']}, d_model={size['d_model']}, L={size['length']} ({args.device})"
    print(f"wrote {path} and {plot_bars(name, panels, title)}")
    return payload


if __name__ == "__main__":
    main()
