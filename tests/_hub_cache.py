"""A Hugging Face hub cache laid out by hand, as huggingface_hub writes it, for tests that load
pretrained timm weights offline (HF_HUB_CACHE + HF_HUB_OFFLINE=1, set before the hub library is
imported, i.e. in a subprocess or a Snakemake job):

    <cache>/models--<org>--<name>/refs/main                      the revision (40 hex)
    <cache>/models--<org>--<name>/blobs/<sha256>                 the file
    <cache>/models--<org>--<name>/snapshots/<revision>/model.safetensors -> ../../blobs/<sha256>
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

REVISION = "0123456789abcdef0123456789abcdef01234567"


def write_hub_weights(cache: Path, repo: str, state_dict: dict[str, torch.Tensor], revision: str = REVISION) -> dict:
    """Put `state_dict` into `cache` as `repo`'s model.safetensors; returns sha256, revision, path."""
    from safetensors.torch import save_file

    root = Path(cache) / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    scratch = root / "blobs" / "incoming.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(scratch))
    sha256 = hashlib.sha256(scratch.read_bytes()).hexdigest()
    blob = root / "blobs" / sha256
    os.replace(scratch, blob)
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return {"sha256": sha256, "revision": revision, "path": snapshot / "model.safetensors"}


def offline_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that must load from `cache` only."""
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", **extra}
