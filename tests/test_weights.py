"""Backbone weights (vis4mer.weights): the hub cache for timm ViTs, a release URL for Video Swin,
local files and random weights, each with the identity recorded in shards; offline errors that
say what to run. No network: a hub cache laid out by the test, a server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _hub_cache import REVISION, offline_env, write_hub_weights
from _workflow_media import VideoServer
from vis4mer import weights
from vis4mer.compat import import_timm

TINY = "vit_tiny_patch16_224.augreg_in21k"
TINY_REPO = f"timm/{TINY}"


def run_resolve(setting: str, backbone: str, env: dict) -> dict:
    """resolve_weights in a fresh process (the hub library reads its settings at import)."""
    code = (
        "import json, sys\nfrom vis4mer.weights import resolve_weights, WeightsUnavailable\n"
        f"try:\n    print(json.dumps(resolve_weights({setting!r}, {backbone!r}).as_dict()))\n"
        "except WeightsUnavailable as e:\n    print(json.dumps({'error': str(e)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A hub cache with timm's tiny in21k ViT (21843-class head, as published)."""
    timm = import_timm()
    cache = tmp_path_factory.mktemp("hub")
    model = timm.create_model(TINY, pretrained=False)
    info = write_hub_weights(cache, TINY_REPO, model.state_dict())
    return cache, info


def test_pretrained_vit_comes_from_the_hub_cache_offline(hub_cache):
    cache, info = hub_cache
    resolved = run_resolve("pretrained", TINY, offline_env(cache))
    assert resolved["identity"] == f"hf-hub:{TINY_REPO}@{REVISION}"
    assert resolved["sha256"] == info["sha256"]  # the blob's name, as the hub stores it
    assert Path(resolved["file"]) == info["path"]


def test_missing_hub_cache_offline_says_what_to_run(tmp_path):
    resolved = run_resolve("pretrained", TINY, offline_env(tmp_path / "empty"))
    message = resolved["error"]
    assert TINY in message and TINY_REPO in message and str(tmp_path / "empty") in message
    assert f"vis4mer fetch-weights --backbone {TINY}" in message and "HF_HUB_OFFLINE" in message


def test_backbone_without_hub_weights_is_named():
    with pytest.raises(weights.WeightsUnavailable, match=r"no pretrained weights on the Hugging Face hub for 'vit_large_patch16_224_in21k'"):
        weights.hub_repo("vit_large_patch16_224_in21k")  # timm's deprecated alias: no pretrained cfg of its own


def test_default_tag_of_the_plain_name_is_not_the_papers():
    """Why the config names the tag: plain vit_large_patch16_224 is the in1k fine-tuned variant."""
    assert weights.hub_repo("vit_large_patch16_224") == "timm/vit_large_patch16_224.augreg_in21k_ft_in1k"
    assert weights.hub_repo("vit_large_patch16_224.augreg_in21k") == "timm/vit_large_patch16_224.augreg_in21k"


@pytest.fixture
def release(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    payload = served / "swin_test.pth"
    torch.save({"state_dict": {"w": torch.arange(4.0)}}, payload)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VIS4MER_OFFLINE", raising=False)
    server = VideoServer(served)
    yield server, f"{server.base}/swin_test.pth", weights.file_sha256(payload)
    server.close()


def test_url_weights_are_downloaded_once_and_checked(release, tmp_path):
    server, url, digest = release
    first = weights.resolve_weights("pretrained", "swin_test", url=url, sha256=digest)
    second = weights.resolve_weights("pretrained", "swin_test", url=url, sha256=digest)
    assert first == second and first.identity == f"url:{url}" and first.sha256 == digest
    assert first.file == tmp_path / "torch" / "hub" / "checkpoints" / "swin_test.pth"
    assert server.hits["swin_test"] == 1  # cached where torch.hub caches, not fetched per job


def test_url_weights_with_another_checksum_are_removed(release):
    _, url, _ = release
    with pytest.raises(weights.WeightsUnavailable, match="expected " + "0" * 64):
        weights.resolve_weights("pretrained", "swin_test", url=url, sha256="0" * 64)
    assert not weights.url_cache_path(url).exists()


def test_url_weights_offline_and_not_cached(release, monkeypatch):
    server, url, _ = release
    monkeypatch.setenv("VIS4MER_OFFLINE", "1")
    with pytest.raises(weights.WeightsUnavailable, match=r"not in the torch hub cache .* `vis4mer fetch-weights --backbone swin_test`"):
        weights.resolve_weights("pretrained", "swin_test", url=url)
    assert server.hits["swin_test"] == 0


def test_local_file_and_random(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(2)}, path)
    local = weights.resolve_weights(str(path), "any")
    assert local.identity == local.sha256 == weights.file_sha256(path) and local.file == path
    with pytest.raises(FileNotFoundError, match=r"does not exist \(features.weights\)"):
        weights.resolve_weights(str(tmp_path / "missing.pth"), "any")
    random = weights.resolve_weights("random", "any", seed=3)
    assert random.is_random and random.identity == "random-seed3"
    assert weights.ResolvedWeights.from_dict(local.as_dict()) == local


def test_recorded_hub_identity_is_found_again_offline(hub_cache):
    """vis4mer predict rebuilds the backbone from the identity a checkpoint records."""
    cache, info = hub_cache
    code = (
        "import sys\nfrom vis4mer.weights import from_identity, WeightsUnavailable\n"
        f"r = from_identity('hf-hub:{TINY_REPO}@{REVISION}', {info['sha256']!r}, {TINY!r}); print(r.file)\n"
        "try:\n    from_identity('hf-hub:" + TINY_REPO + "@" + REVISION + "', '0' * 64, " + repr(TINY) + ")\n"
        "except WeightsUnavailable as e:\n    print('refused', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=offline_env(cache), capture_output=True, text=True, check=True).stdout
    found, refused = out.strip().splitlines()[-2:]
    assert Path(found) == info["path"]
    assert refused.startswith("refused") and "the features were made with " + "0" * 64 in refused


def test_fetch_weights_command(hub_cache, tmp_path):
    cache, info = hub_cache
    command = [sys.executable, "-m", "vis4mer.cli", "fetch-weights", "--backbone", TINY]
    found = subprocess.run(command, env=offline_env(cache), capture_output=True, text=True)
    assert found.returncode == 0 and f"{TINY}: hf-hub:{TINY_REPO}@{REVISION}" in found.stdout and info["sha256"] in found.stdout
    missing = subprocess.run(command, env=offline_env(tmp_path / "empty"), capture_output=True, text=True)
    assert missing.returncode == 1 and "not in the Hugging Face cache" in missing.stderr
