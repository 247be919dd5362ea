"""Backbone weights: which ones, fetched once per machine into the owning library's cache, and
the identity recorded with every feature shard and checkpoint.

A dataset's ``features.weights`` is one of

- ``pretrained``: the backbone's public weights. A timm ViT's come from the Hugging Face hub
  through ``huggingface_hub`` (the repo timm names for the model, e.g.
  ``timm/vit_large_patch16_224.augreg_in21k``), cached where the hub caches
  (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``). A Video Swin's come from the
  checkpoint URL of its release, through ``torch.hub``'s download-and-cache
  (``$TORCH_HOME/hub/checkpoints``), its sha256 checked when one is pinned.
- ``random``: a randomly initialised backbone from a seed, for the demo and tests; recorded
  as ``random-seed<N>`` so such features are never mistaken for real ones.
- a path: a local weights file, recorded by its sha256.

Offline (``HF_HUB_OFFLINE=1`` or ``VIS4MER_OFFLINE=1``, e.g. cluster nodes without internet)
nothing is downloaded: the weights must already be in the cache (fetch them once with
``vis4mer fetch-weights`` or the workflow's ``fetch_weights`` rule on a machine that has
internet, sharing the cache), and a missing cache raises :class:`WeightsUnavailable` naming
the backbone, where it looked and what to run.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vis4mer._logging import logger

PRETRAINED = "pretrained"
RANDOM = "random"
WEIGHTS_FILE = "model.safetensors"  # the file timm publishes on the hub for each model
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "VIS4MER_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}


class WeightsUnavailable(RuntimeError):
    """The configured weights cannot be had here (offline and not cached, a failed download,
    a checksum mismatch, or a missing file); the message says what to do."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights ready to load: `file` (None for random), `identity` as recorded in shards and
    checkpoints, and `sha256` of the file (None for random)."""

    setting: str  # pretrained | random | the configured path
    identity: str
    file: Path | None = None
    sha256: str | None = None

    @property
    def is_random(self) -> bool:
        return self.file is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "identity": self.identity,
            "file": None if self.file is None else str(self.file),
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResolvedWeights:
        file = data.get("file")
        return cls(str(data["setting"]), str(data["identity"]), None if file is None else Path(file), data.get("sha256"))


def offline() -> bool:
    """True when downloads are off (HF_HUB_OFFLINE or VIS4MER_OFFLINE set to 1/true/yes/on)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in OFFLINE_VARIABLES)


def random_identity(seed: int) -> str:
    return f"{RANDOM}-seed{int(seed)}"


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_setting(setting: str) -> str:
    """pretrained | random | file (the kind of a ``features.weights`` value)."""
    return setting if setting in (PRETRAINED, RANDOM) else "file"


# ----------------------------------------------------------------------- the hub (timm ViTs)


def hub_repo(backbone: str) -> str:
    """The Hugging Face hub repo timm loads `backbone`'s pretrained weights from."""
    from vis4mer.compat import import_timm

    import_timm()
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(backbone)
    if cfg is None or not cfg.hf_hub_id:
        raise WeightsUnavailable(
            f"timm has no pretrained weights on the Hugging Face hub for {backbone!r} (features.backbone); "
            "use a tagged name such as vit_large_patch16_224.augreg_in21k (the paper's ViT-L/16), "
            "or features.weights: <path to a local file>"
        )
    return cfg.hf_hub_id


def fetch_hub_weights(backbone: str) -> ResolvedWeights:
    """`backbone`'s timm weights from the hub cache, downloaded first unless offline."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = hub_repo(backbone)
    cache = huggingface_hub.constants.HF_HUB_CACHE
    try:
        path = Path(huggingface_hub.hf_hub_download(repo, WEIGHTS_FILE, local_files_only=offline()))
    except LocalEntryNotFoundError as error:
        raise WeightsUnavailable(
            f"pretrained weights of {backbone} ({repo}/{WEIGHTS_FILE}) are not in the Hugging Face cache "
            f"{cache}{' and downloads are off (HF_HUB_OFFLINE/VIS4MER_OFFLINE)' if offline() else ''}: "
            f"run `vis4mer fetch-weights --backbone {backbone}` (or snakemake's fetch_weights rule) once on a "
            "machine with internet that shares this cache (set HF_HUB_CACHE to a shared folder), then rerun"
        ) from error
    except Exception as error:  # network, HTTP, authentication
        raise WeightsUnavailable(f"could not fetch the pretrained weights of {backbone} from {repo}: {error}") from error
    revision = path.parent.name  # <cache>/models--<org>--<name>/snapshots/<revision>/model.safetensors
    blob = path.resolve().name  # the hub stores LFS files under their sha256
    sha256 = blob if re.fullmatch(r"[0-9a-f]{64}", blob) else file_sha256(path)
    logger.info("weights of %s: %s@%s (%s)", backbone, repo, revision, path)
    return ResolvedWeights(PRETRAINED, f"hf-hub:{repo}@{revision}", path, sha256)


# ----------------------------------------------------------------------- URLs (Video Swin)


def url_cache_path(url: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def fetch_url_weights(backbone: str, url: str, sha256: str | None = None) -> ResolvedWeights:
    """The checkpoint at `url` from torch.hub's cache, downloaded first unless offline; checked
    against `sha256` when given (a mismatching download is removed)."""
    import torch

    path = url_cache_path(url)
    if not path.is_file():
        if offline():
            raise WeightsUnavailable(
                f"pretrained weights of {backbone} ({url}) are not in the torch hub cache {path.parent} and downloads "
                f"are off (HF_HUB_OFFLINE/VIS4MER_OFFLINE): run `vis4mer fetch-weights --backbone {backbone}` (or "
                "snakemake's fetch_weights rule) once on a machine with internet that shares this cache "
                "(TORCH_HOME), then rerun"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("downloading the weights of %s from %s to %s", backbone, url, path)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=False)  # to a temp file, then renamed
        except Exception as error:
            raise WeightsUnavailable(f"could not download the weights of {backbone} from {url}: {error}") from error
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256.lower():
        path.unlink()
        raise WeightsUnavailable(
            f"{path} (weights of {backbone} from {url}) has sha256 {digest}, expected {sha256}: removed; "
            "rerun to download it again, or check features.weights_sha256"
        )
    logger.info("weights of %s: %s (sha256 %s)", backbone, path, digest)
    return ResolvedWeights(PRETRAINED, f"url:{url}", path, digest)


# ----------------------------------------------------------------------- one entry point


def cached_pretrained(backbone: str, url: str | None = None) -> Path | None:
    """The cached file of `backbone`'s pretrained weights, or None; never downloads."""
    if url:
        path = url_cache_path(url)
        return path if path.is_file() else None
    import huggingface_hub

    found = huggingface_hub.try_to_load_from_cache(hub_repo(backbone), WEIGHTS_FILE)
    return Path(found) if isinstance(found, str) else None


def pretrained_source(backbone: str, url: str | None = None) -> str:
    """Where `backbone`'s pretrained weights come from, and the cache they go to."""
    if url:
        return f"{url}, cached in {url_cache_path(url).parent}"
    import huggingface_hub

    return f"the Hugging Face hub ({hub_repo(backbone)}), cached in {huggingface_hub.constants.HF_HUB_CACHE}"



def local_weights(path) -> ResolvedWeights:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights file {path} does not exist (features.weights); give an existing file, "
            f"or write '{PRETRAINED}' for the backbone's public weights"
        )
    digest = file_sha256(path)
    return ResolvedWeights(str(path), digest, path, digest)


def resolve_weights(setting: str, backbone: str, *, seed: int = 0, url: str | None = None, sha256: str | None = None) -> ResolvedWeights:
    """The weights `setting` (``features.weights``) means for `backbone`.

    `url`: the release URL of a backbone whose weights are not on the hub (Video Swin); without
    it, ``pretrained`` means timm's hub weights.
    """
    if setting == RANDOM:
        return ResolvedWeights(RANDOM, random_identity(seed))
    if setting == PRETRAINED:
        return fetch_url_weights(backbone, url, sha256) if url else fetch_hub_weights(backbone)
    return local_weights(setting)


def write_record(path, resolved: ResolvedWeights) -> None:
    """The fetch_weights rule's output: what a features job loads (written atomically)."""
    from vis4mer.atomic import write_json

    write_json(path, resolved.as_dict())


def read_record(path) -> ResolvedWeights:
    """Weights fetched by the fetch_weights rule; the cached file must still be there."""
    import json

    resolved = ResolvedWeights.from_dict(json.loads(Path(path).read_text()))
    if resolved.file is None or not resolved.file.is_file():
        raise WeightsUnavailable(
            f"{path} records the weights file {resolved.file}, which is gone (a cleared cache?): fetch it again with "
            "`snakemake --forcerun fetch_weights ...` (or vis4mer fetch-weights), then rerun"
        )
    return resolved


def from_identity(identity: str, sha256: str | None, backbone: str) -> ResolvedWeights:
    """The pretrained weights an identity recorded in a shard or checkpoint names, from the cache
    (downloaded first unless offline), checked against the recorded sha256 (vis4mer predict)."""
    if identity.startswith("hf-hub:"):
        import huggingface_hub
        from huggingface_hub.errors import LocalEntryNotFoundError

        repo, _, revision = identity.removeprefix("hf-hub:").partition("@")
        try:
            path = Path(huggingface_hub.hf_hub_download(repo, WEIGHTS_FILE, revision=revision or None, local_files_only=offline()))
        except LocalEntryNotFoundError as error:
            raise WeightsUnavailable(
                f"the weights {identity} are not in the Hugging Face cache {huggingface_hub.constants.HF_HUB_CACHE} "
                f"(downloads {'off' if offline() else 'failed'}): run `vis4mer fetch-weights --backbone {backbone}` "
                "on a machine with internet sharing the cache"
            ) from error
        blob = path.resolve().name
        resolved = ResolvedWeights(PRETRAINED, identity, path, blob if re.fullmatch(r"[0-9a-f]{64}", blob) else file_sha256(path))
    elif identity.startswith("url:"):
        resolved = fetch_url_weights(backbone, identity.removeprefix("url:"), sha256 or None)
    else:
        raise WeightsUnavailable(f"{identity!r} is not the identity of pretrained weights (hf-hub:<repo>@<revision> or url:<URL>)")
    if sha256 and resolved.sha256 != sha256:
        raise WeightsUnavailable(f"the cached weights {resolved.file} of {identity} have sha256 {resolved.sha256}, the features were made with {sha256}")
    return resolved


def job_weights(setting: str, backbone: str, *, record=None, seed: int = 0) -> ResolvedWeights:
    """What a features job loads: pretrained weights from the record of the fetch_weights rule
    (the job never downloads), a file or random weights as resolve_weights gives them."""
    if setting == PRETRAINED:
        if record is None:
            raise ValueError("pretrained weights need the fetch_weights record (the job's 'weights' input)")
        return read_record(record)
    return resolve_weights(setting, backbone, seed=seed)


def as_weights(weights: ResolvedWeights | str | os.PathLike | None, seed: int = 0) -> ResolvedWeights:
    """`weights` as the backbone builders take them: None means a random network from `seed`, a
    path that file; resolved weights pass through."""
    if weights is None:
        return ResolvedWeights(RANDOM, random_identity(seed))
    if isinstance(weights, ResolvedWeights):
        return weights
    return local_weights(weights)
