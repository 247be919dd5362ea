"""The headline numbers of one device's benchmark JSON as a Markdown table (what the README's
Benchmarks section quotes), read from the files, never typed by hand, each with the command
that wrote it.

    python bench/summary.py --preset cpu               # this machine's device tag
    python bench/summary.py --preset lvu --tag nvidia_h100_80gb_hbm3
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_tag, results_dir  # noqa: E402


def _load(name: str, preset: str, tag: str) -> dict | None:
    path = results_dir() / f"{name}_{preset}_{tag}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _x(value) -> str:
    return f"{value:.3g}×" if isinstance(value, (int, float)) else "n/a"


def _num(value, unit: str = "") -> str:
    return f"{value:.3g}{unit}" if isinstance(value, (int, float)) else "n/a"


def _scaling_rows(scaling: dict) -> list[tuple[str, str, str]]:
    """Baseline / ViS4mer at the longest L: time, memory (on CPU: peak RSS and torch-allocated),
    for the SDPA Transformer (also against ViS4mer with keops) and the L×L-attention one."""
    size, head, longest = scaling["size"], scaling["headline"], scaling["results"][-1]
    where = f"B={size['batch']}, d_model={size['d_model']}, L={head['length']}"
    on_cpu = scaling["device"] == "cpu"
    measures = [("time_ratio", "time"), ("memory_ratio", "memory (peak RSS)" if on_cpu else "memory")]
    if on_cpu:
        measures.append(("allocated_memory_ratio", "memory (torch-allocated)"))
    baselines = [("transformer", "", "Transformer"), ("transformer_lxl", "_lxl", "Transformer (L×L attention)")]
    out = []
    for baseline, suffix, name in baselines:
        if baseline not in longest:
            continue
        failed = longest[baseline].get("error")  # e.g. "oom": the baseline did not fit
        for key, what in measures:
            value = f"{name}: {failed}" if failed else _x(head.get(key + suffix))
            out.append((f"{name} / ViS4mer training-step {what}", value, where))
            if not suffix and key + "_keops" in head:
                out.append((f"{name} / ViS4mer (keops Cauchy) training-step {what}", _x(head[key + "_keops"]), where))
    return out


def _speedups_rows(speedups: dict) -> list[tuple[str, str, str]]:
    """The ratios of the parts that ran (--parts)."""
    results, step = speedups["results"], speedups["size"]["step"]
    where = f"B={step['batch']}, d_model={step['d_model']}, L={step['length']}"
    out = []
    if "autocast" in results:
        out.append(("fp32 / bf16-autocast ViS4mer step time", _x(results["autocast"]["time_ratio"]), where))
    for row in results.get("fft", []):
        batch, heads, length = row["shape"]
        out.append((
            f"FFT conv fwd+bwd, n={row['naive']} / n={row['fast']}",
            _x(row["forward_backward_ratio"]),
            f"[B, H, L] = [{batch}, {heads}, {length}]",
        ))
    if cauchy := results.get("cauchy"):
        for pair, value in cauchy["forward_backward_ratios"].items():
            out.append((f"Cauchy fwd+bwd, {pair}", _x(value), f"H={cauchy['shape']['heads']}, L={cauchy['shape']['length']}"))
    if storage := results.get("storage"):
        layout = storage["layout"]
        where = f"{layout['videos']} × [{layout['frames']}·{layout['tokens']}, {layout['dim']}], batch {layout['batch']}"
        out.append(("fp64 / fp16 HDF5 batch read, cold cache", _x(storage["cold_read_ratio"]), where))
        out.append(("fp64 / fp16 HDF5 batch read, warm cache", _x(storage["warm_read_ratio"]), where))
        out.append(("fp64 / fp16 HDF5 file size", _x(storage["file_size_ratio"]), where))
    return out


def _floor_rows(floor: dict) -> list[tuple[str, str, str]]:
    size = floor["size"]
    where = f"B={size['batch']}, d_model={size['d_model']}, L={size['length']}"
    return [
        (f"measured step / floor ({precision}, {floor['floor'][precision]['bound']}-bound)", _x(multiple), where)
        for precision, multiple in floor["measured_over_floor"].items()
    ]


def _extraction_rows(extraction: dict) -> list[tuple[str, str, str]]:
    """The ViT and the decoders, each when its part ran (--parts)."""
    head, out = extraction["headline"], []
    if "vit" in extraction:
        vit = extraction["vit"]
        out.append((f"{vit.get('model', 'ViT')} frames/s (roofline {_num(head['vit_roofline_frames_per_s'])})",
                    _num(head["vit_frames_per_s"]), f"{_num(head['vit_fraction_of_roofline'])} of roofline"))
    if "decode" in extraction:
        for name in ("decord", "torchcodec"):
            out.append((f"{name} decode at 1 fps, frames/s per core", _num(head.get(f"{name}_frames_per_s_per_core")), "640×360 H.264"))
        out.append(("decord / torchcodec decode speed", _x(head["decord_over_torchcodec_speed"]), "same files"))
    return out


def _revision_rows(revision: dict) -> list[tuple[str, str, str]]:
    """The ViS4mer step of another revision / this tree's, at each measured L."""
    commit, size = revision["against"]["commit"], revision["size"]
    out = []
    for row in revision["results"]:
        where = f"B={size['batch']}, d_model={size['d_model']}, L={row['length']}"
        memory = "memory (peak RSS)" if revision["device"] == "cpu" else "memory"
        out.append((f"ViS4mer step time, {commit} / this tree", _x(row["time_ratio"]), where))
        out.append((f"ViS4mer step {memory}, {commit} / this tree", _x(row["memory_ratio"]), where))
        if revision["device"] == "cpu":
            out.append((f"ViS4mer step memory (torch-allocated), {commit} / this tree", _x(row["allocated_memory_ratio"]), where))
    return out


def _input_rows(payload: dict) -> list[tuple[str, str, str]]:
    """The training loader per runtime.feature_cache: MB/s and windows/s, and as a fraction of memcpy."""
    size, memcpy = payload["size"], payload["memcpy_mb_per_s"]
    where = f"[{size['window']}·{size['tokens']}, {size['dim']}] float32 windows, batch {size['batch']}"
    out = [("host memcpy, MB/s copied", _num(memcpy["host"]), "same run")]
    for name, result in payload["results"].items():
        case = f"training loader, feature_cache {name}"
        out.append((f"{case}: MB/s (windows/s)", f"{_num(result.get('mb_per_s'))} ({_num(result.get('windows_per_s'))}/s)", where))
        out.append((f"{case} / host memcpy", _x(result.get("ratio_to_host_memcpy")), where))
        if "ratio_to_bound" in result:
            out.append((f"{case} / {result['bound'].replace('_', '-')} copy", _x(result["ratio_to_bound"]), where))
    return out


def _training_where(size: dict) -> str:
    return f"B={size['batch']}, {size['frames']}×{size['tokens']} tokens × {size['dim']}, d_model={size['d_model']}"


def _training_rows(training: dict) -> list[tuple[str, str, str]]:
    """Each run of the training loop (one per feature-cache mode): step time, peak memory, loss."""
    out, where = [], _training_where(training["size"])
    for run in training["results"]:
        name = f"train_model step (feature cache {run['feature_cache']})"
        if "error" in run:
            out.append((name, run["error"][:60], where))
            continue
        out.append((name, _num(run.get("step_seconds"), " s"), where))
        out.append((f"train_model peak memory (feature cache {run['feature_cache']})", _num((run.get("peak_mib") or 0) / 1024, " GiB"), where))
        out.append((f"train_model loss finite over {run['steps']} steps (feature cache {run['feature_cache']})", str(run["loss_finite"]), where))
    return out


def _ddp_rows(ddp: dict) -> list[tuple[str, str, str]]:
    result = ddp["result"]
    value = result["error"][:60] if "error" in result else f"loss finite: {result['loss_finite']}, {_num(result.get('wall_seconds'), ' s')}"
    return [(f"DDP under torchrun, 1 process, {result.get('backend', '?')}", value, _training_where(ddp["size"]))]


# results <name>_<preset>_<tag>.json -> (its rows, the script that wrote it, the options it was run with)
SECTIONS = {
    "scaling": (_scaling_rows, "bench_scaling", ""),
    "revision": (_revision_rows, "bench_revision", ""),
    "speedups": (_speedups_rows, "bench_speedups", ""),
    "floor": (_floor_rows, "bench_floor", ""),
    "extraction": (_extraction_rows, "bench_extraction", ""),
    "training": (_training_rows, "bench_training", ""),
    "ddp": (_ddp_rows, "bench_training", " --torchrun"),
    "input": (_input_rows, "bench_input", ""),
}


def _options(script: str, payload: dict) -> str:
    """The options beyond --preset that wrote `payload`: --against, or --parts when not all ran."""
    if "against" in payload:
        return f" --against {payload['against']['revision']}"
    if "parts" in payload and payload["parts"] != list(importlib.import_module(script).PARTS):
        return f" --parts {','.join(payload['parts'])}"
    return ""


def rows(preset: str, tag: str) -> list[tuple[str, str, str, str]]:
    """(measurement, value, size, command) rows for whatever JSON exists for this preset and tag;
    the command is the one that wrote the JSON."""
    out = []
    for name, (section, script, options) in SECTIONS.items():
        if payload := _load(name, preset, tag):
            command = f"`python bench/{script}.py --preset {preset}{options}{_options(script, payload)}`"
            out += [(*row, command) for row in section(payload)]
    return out


def table(preset: str, tag: str) -> str:
    lines = ["| measurement | value | size | command |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {value} | {where} | {command} |" for name, value, where, command in rows(preset, tag)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--tag", default=None, help="device tag in the file names (default: this machine's)")
    args = parser.parse_args(argv)
    text = table(args.preset, args.tag or device_tag())
    print(text)
    return text


if __name__ == "__main__":
    main()
