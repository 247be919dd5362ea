"""ViS4mer against self-attention as the sequence grows: training-step time (forward, backward,
AdamW step) and peak memory of `vis4mer.ViS4mer` and `vis4mer.TransformerBaseline` (same
width and depth), side by side at each length L, and their ratios.

    python bench/bench_scaling.py --preset lvu   # B=16, d_model=1024, L = 2048, 4096, 11820 (GPU)
    python bench/bench_scaling.py --preset cpu   # B=2, d_model=128, L = 256 .. 4096

Two Transformers: with SDPA as PyTorch picks it (flash or memory-efficient attention, memory
linear in L), and with SDPA's math backend, softmax(QKᵀ)V, which materialises the L×L matrix
as the attention the paper compared with did. The paper reports 2.63x faster and 8x less
memory than a Transformer at LVU length; a Transformer that runs out of CUDA memory is
recorded as "oom". The series at one L run round-robin (`rounds` times on CPU, where other
jobs add noise); time ratios use the fastest repeat. Memory ratios compare peak_extra_mib,
the memory the step needs above the model and its input (CUDA allocator, or peak RSS on CPU),
and on CPU also allocated_extra_mib, what torch allocates (the same on every run; peak RSS
also holds what malloc keeps after frees). All models train in fp32; bench_speedups.py
measures what bf16 autocast adds. The CPU preset also runs ViS4mer with the keops Cauchy backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fastest, parse_args, plot_lines, ratio, side_by_side, train_step_case, write_json  # noqa: E402

# series: key -> model, ViS4mer's Cauchy backend, the Transformer's attention backend, label
SERIES = {
    "vis4mer": dict(model="vis4mer", backend="auto", attention="auto", label="ViS4mer"),
    "vis4mer_keops": dict(model="vis4mer", backend="keops", attention="auto", label="ViS4mer (keops Cauchy)"),
    "transformer": dict(model="transformer", backend="auto", attention="auto", label="Transformer (SDPA)"),
    "transformer_lxl": dict(model="transformer", backend="auto", attention="math", label="Transformer (L×L attention)"),
}
# baselines: key -> suffix of their ratio keys ("" for the SDPA Transformer)
BASELINES = {"transformer": "", "transformer_lxl": "_lxl"}
MEMORY_KEYS = {"memory_ratio": "peak_extra_mib", "allocated_memory_ratio": "allocated_extra_mib"}
PRESETS = {
    # three L values (9 processes, ~4 s each to start, steps of ~0.05-2 s; the L×L Transformer
    # is expected to run out of memory at 11820): ~60-90 s on an H100/H200
    "lvu": dict(batch=16, d_input=1024, d_model=1024, n_layers=3, lengths=[2048, 4096, 11820], warmup=2, repeats=5, rounds=1,
                series=["vis4mer", "transformer", "transformer_lxl"]),
    # on CPU "auto" is the torch Cauchy reference, whose chunked [H, L_chunk, N/2] temporaries
    # are a fixed part of the step's memory at these sizes; the keops series shows the step without them
    "cpu": dict(batch=2, d_input=128, d_model=128, n_layers=3, lengths=[256, 512, 1024, 2048, 4096], warmup=1, repeats=3, rounds=2,
                series=["vis4mer", "vis4mer_keops", "transformer", "transformer_lxl"]),
    "tiny": dict(batch=1, d_input=16, d_model=16, n_layers=2, lengths=[32, 64], warmup=0, repeats=1, rounds=1,
                 series=["vis4mer", "transformer", "transformer_lxl"]),
}


def ratios(row: dict, series: list[str]) -> dict:
    """baseline / ViS4mer ratios of time (fastest repeat) and memory, for every ViS4mer series
    (suffix _<series>, none for the default "vis4mer") against the SDPA Transformer, and for the
    default ViS4mer against the L×L Transformer (suffix _lxl)."""
    out = {}
    for key in series:
        if not key.startswith("vis4mer"):
            continue
        for baseline, baseline_suffix in BASELINES.items():
            if baseline not in series or (baseline_suffix and key != "vis4mer"):
                continue
            suffix = key[len("vis4mer"):] + baseline_suffix
            out["time_ratio" + suffix] = ratio(fastest(row[baseline]), fastest(row[key]))
            for ratio_key, memory_key in MEMORY_KEYS.items():
                out[ratio_key + suffix] = ratio(row[baseline].get(memory_key), row[key].get(memory_key))
    return out


def measure(preset: dict, device: str) -> list[dict]:
    """One row per L: each series' timing (or error), and the ratios (see `ratios`)."""
    rows = []
    for length in preset["lengths"]:
        size = preset | {"length": length}
        cases = {
            key: (train_step_case, SERIES[key]["model"], size, device, False, SERIES[key]["backend"], SERIES[key]["attention"])
            for key in preset["series"]
        }
        row = {"length": length, **side_by_side(cases, preset["rounds"])}
        print(length, {key: row[key] for key in preset["series"]}, flush=True)
        rows.append(row | ratios(row, preset["series"]))
    return rows


def plot(name: str, rows: list[dict], series: list[str], title: str, device: str):
    lengths = [row["length"] for row in rows]
    panels = []
    metrics = [("min_seconds", "time_ratio", "training step (s)"), ("peak_extra_mib", "memory_ratio", "step memory (MiB)")]
    if device == "cpu":
        metrics[1] = ("peak_extra_mib", "memory_ratio", "step memory, peak RSS (MiB)")
        metrics.append(("allocated_extra_mib", "allocated_memory_ratio", "step memory, torch-allocated (MiB)"))
    for key, ratio_key, ylabel in metrics:
        lines = {SERIES[s]["label"]: (lengths, [row[s].get(key) for row in rows]) for s in series}
        notes = []
        for row in rows:
            transformer = row["transformer"]
            if "error" in transformer:
                notes.append((row["length"], row["vis4mer"].get(key) or 1, transformer["error"][:12]))
            elif row[ratio_key] is not None:
                notes.append((row["length"], transformer[key], f"×{row[ratio_key]:.2g}"))
        panels.append(dict(xlabel="sequence length L", ylabel=ylabel, series=lines, notes=notes, xticks=lengths,
                           title="×: Transformer (SDPA) / ViS4mer"))
    return plot_lines(name, panels, title)


def main(argv: list[str] | None = None) -> dict:
    args, preset = parse_args(__doc__, PRESETS, argv)
    rows = measure(preset, args.device)
    name = f"scaling_{args.preset}"
    longest = rows[-1]
    payload = {
        "preset": args.preset,
        "device": args.device,
        "size": preset,
        "results": rows,
        "headline": {
            "length": longest["length"],
            **{k: v for k, v in longest.items() if k.startswith(("time_ratio", "memory_ratio", "allocated_memory_ratio"))},
        },
    }
    path = write_json(name, payload)
    title = f"Transformer / ViS4mer training step, B={preset['batch']}, d_model={preset['d_model']} ({args.device})"
    print(f"wrote {path} and {plot(name, rows, preset['series'], title, args.device)}")
    return payload


if __name__ == "__main__":
    main()
