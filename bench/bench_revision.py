"""The ViS4mer training step of this checkout against another git revision's library, side by
side: time (fastest repeat), peak memory (CUDA allocator or peak RSS) and, with bench/common's
measurement for both, torch-allocated memory, with the ratios other / this.

    python bench/bench_revision.py --against 2a9f3e4 --preset cpu   # B=2, d_model=128, L=1024, 4096
    python bench/bench_revision.py --against main --preset lvu      # B=16, d_model=1024, L=11820 (GPU)

The other revision's lib/ is extracted with `git archive` into a temporary folder; each case
runs in a fresh process that imports vis4mer from its tree, and the two take turns (`rounds`
on CPU, where other jobs add noise), so load that comes and goes falls on both alike.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fastest, parse_args, plot_bars, ratio, side_by_side, train_step_case, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PRESETS = {
    "lvu": dict(batch=16, d_input=1024, d_model=1024, n_layers=3, lengths=[11820], warmup=2, repeats=5, rounds=1),
    "cpu": dict(batch=2, d_input=128, d_model=128, n_layers=3, lengths=[1024, 4096], warmup=1, repeats=3, rounds=5),
    "tiny": dict(batch=1, d_input=16, d_model=16, n_layers=2, lengths=[64], warmup=0, repeats=1, rounds=1),
}


def extract_library(revision: str, into: Path) -> Path:
    """lib/ of `revision` (anything git rev-parse accepts) under `into`; returns that lib folder."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision, "lib"], capture_output=True, check=True)
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"--against {revision}: git archive failed: {error.stderr.decode().strip()}") from error
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "lib"


def step_in_tree(lib: str, size: dict, device: str) -> dict:
    """train_step_case("vis4mer") with vis4mer imported from `lib` (run in a fresh process)."""
    sys.path.insert(0, lib)
    import vis4mer

    if not Path(vis4mer.__file__).resolve().is_relative_to(Path(lib).resolve()):
        raise RuntimeError(f"vis4mer was imported from {vis4mer.__file__}, not from {lib}")
    return train_step_case("vis4mer", size, device)


def measure(preset: dict, device: str, libraries: dict[str, str]) -> list[dict]:
    """One row per L: both trees' steps and the ratios other / this of time and memory."""
    rows = []
    for length in preset["lengths"]:
        size = preset | {"length": length}
        row = {"length": length, **side_by_side({name: (step_in_tree, lib, size, device) for name, lib in libraries.items()}, preset["rounds"])}
        this, other = row["this"], row["other"]
        row["time_ratio"] = ratio(fastest(other), fastest(this))
        row["memory_ratio"] = ratio(other.get("peak_extra_mib"), this.get("peak_extra_mib"))
        row["allocated_memory_ratio"] = ratio(other.get("allocated_extra_mib"), this.get("allocated_extra_mib"))
        print(length, row, flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    def against(parser):
        parser.add_argument("--against", required=True, metavar="REVISION", help="the git revision to compare with")

    args, preset = parse_args(__doc__, PRESETS, argv, against)
    if args.inline:
        raise SystemExit("bench_revision.py imports vis4mer from two trees, so each case needs its own process: drop --inline")
    revision = args.against
    with tempfile.TemporaryDirectory(prefix="vis4mer-revision-") as scratch:
        libraries = {"this": str(REPO / "lib"), "other": str(extract_library(revision, Path(scratch)))}
        rows = measure(preset, args.device, libraries)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", revision], capture_output=True, text=True).stdout.strip()
    name = f"revision_{args.preset}"
    longest = rows[-1]
    payload = {
        "preset": args.preset,
        "device": args.device,
        "against": {"revision": revision, "commit": commit},
        "size": preset,
        "results": rows,
        "headline": {"length": longest["length"], **{k: longest[k] for k in ("time_ratio", "memory_ratio", "allocated_memory_ratio")}},
    }
    path = write_json(name, payload)
    bars = {}
    for row in rows:
        for key in ("time_ratio", "memory_ratio", "allocated_memory_ratio"):
            bars[f"L={row['length']} {key.replace('_', ' ')}"] = row[key]
    panels = [dict(title=f"{commit} / this tree (> 1: this tree is faster or smaller)", xlabel="ratio", bars=bars, reference=1)]
    title = f"ViS4mer step, B={preset['batch']}, d_model={preset['d_model']} ({args.device})"
    print(f"wrote {path} and {plot_bars(name, panels, title)}")
    return payload


if __name__ == "__main__":
    main()
