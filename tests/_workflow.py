"""Shared helpers of the workflow tests: a temporary copy of the workflow, Snakemake in a
subprocess, configs written as YAML, the jobs of a (dry) run, and the tiny demo config.

Every run happens in a temporary copy of the workflow (Snakefile, workflow/, config/,
envs/), so results/ and .snakemake/ of the checkout are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "envs")

TINY_CONFIG = {
    "targets": ["tiny"],
    "shard_size": 3,  # 8 videos -> 3 shards
    "keep_frames": True,
    "seed": 0,
    "datasets": {
        "tiny": {
            "source": "demo",
            "demo": {
                "n_videos": 8,
                "seed": 1,
                "size": 32,
                "fps": 2.0,
                "min_seconds": 6,
                "max_seconds": 9,
                "event_seconds": [1.0, 1.0],
                "min_gap_seconds": 2.0,
                "split_fractions": [0.5, 0.25, 0.25],  # per label: 2 train, 1 val, 1 test
            },
            "tasks": {"order": {"type": "classification"}},
            "frames": {"fps": 1, "size": 32, "decoder": "decord"},
            "features": {"backbone": "vit_tiny_patch16_224", "weights": "random"},
            "models": ["vis4mer", "meanpool", "transformer"],
        }
    },
    "models": {
        "vis4mer": {"arch": "vis4mer", "d_model": 8, "n_layers": 1, "dropout": 0.0, "kwargs": {"d_state": 8}},
        "meanpool": {"arch": "meanpool", "d_model": 8, "n_layers": 1, "dropout": 0.0, "kwargs": {}},
        "transformer": {"arch": "transformer", "d_model": 8, "n_layers": 1, "dropout": 0.0, "kwargs": {"n_heads": 1}},
    },
    "training": {"window_frames": 8, "tokens": "all", "batch_size": 4, "epochs": 1, "val_stride_frames": 2},
    "evaluation": {"eval_stride_frames": 1},
    "runtime": {"device": "cpu", "feature_batch_size": 16, "eval_batch_size": 8, "num_workers": 0, "progress": False,
                "threads": {"frames": 1, "features": 1, "train": 1, "evaluate": 1}},
}
TINY_SHARDS = 3
RUN_RULES = {"train": 3, "evaluate": 3, "confusion_plot": 3, "aggregate": 1}


def copy_workflow(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, directory / name)
    return directory


def snakemake(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env,
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry-run, without the total."""
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n(?:\s*\n|$)", output, re.S)
    if not match:
        return {}
    counts = {}
    for line in match.group(1).splitlines():
        name, count = line.split()
        counts[name] = int(count)
    counts.pop("total", None)
    return counts


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ran_jobs(output: str) -> dict[str, int]:
    """Jobs per rule that a run started (its 'Job stats' table predates checkpoint updates)."""
    return dict(Counter(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", output, re.M)))
