"""features.weights: pretrained through the workflow, offline: rule fetch_weights finds timm's
weights in a Hugging Face cache laid out by the test (HF_HUB_CACHE, HF_HUB_OFFLINE=1), and the
features the pipeline writes equal a direct timm forward with those weights."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from _hub_cache import REVISION, offline_env, write_hub_weights
from _workflow import TINY_CONFIG, TINY_SHARDS, copy_workflow, ran_jobs, snakemake, write_config
from vis4mer.compat import import_timm
from vis4mer.shards import open_shard

BACKBONE = "vit_tiny_patch16_224.augreg_in21k"
DIRECT = """
import json, sys
import numpy as np, torch
from vis4mer.compat import import_timm
from vis4mer.shards import open_shard
timm = import_timm()
model = timm.create_model({backbone!r}, pretrained=True, num_classes=0, img_size={size}).eval()  # timm's own hub loading
out = {{}}
for path in sys.argv[1:]:
    with open_shard(path) as frames:
        for video_id in frames["videos"]:
            x = torch.from_numpy(frames["videos"][video_id][()]).permute(0, 3, 1, 2).float() / 255
            with torch.no_grad():
                out[video_id] = model.forward_features(x).numpy().astype(np.float16).tolist()  # recipe paper: no mean/std
print(json.dumps(out))
"""


@pytest.mark.slow
def test_pretrained_features_offline_equal_a_direct_timm_forward(tmp_path, monkeypatch):
    timm = import_timm()
    cache = tmp_path / "hub"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        published = timm.create_model(BACKBONE, pretrained=False)  # as on the hub: 21843-class head
    info = write_hub_weights(cache, f"timm/{BACKBONE}", published.state_dict())
    for name, value in offline_env(cache).items():
        monkeypatch.setenv(name, value)

    work = copy_workflow(tmp_path / "wf")
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"]["tiny"]["features"] = {"backbone": BACKBONE, "weights": "pretrained"}
    write_config(work / "config" / "tiny.yaml", config)
    shards = [f"results/tiny/features/{BACKBONE}/shard_{i:04d}.h5" for i in range(TINY_SHARDS)]
    run = snakemake(work, "--cores", "2", "--configfile", "config/tiny.yaml", "--", *shards, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert ran_jobs(run.stdout + run.stderr) == {"demo_videos": 1, "fetch_weights": 1, "frames": TINY_SHARDS, "features": TINY_SHARDS}

    record = json.loads((work / f"results/tiny/features/{BACKBONE}/weights.json").read_text())
    assert record["identity"] == f"hf-hub:timm/{BACKBONE}@{REVISION}" and record["sha256"] == info["sha256"]
    code = DIRECT.format(backbone=BACKBONE, size=config["datasets"]["tiny"]["frames"]["size"])
    frames = [str(work / f"results/tiny/frames/shard_{index:04d}.h5") for index in range(TINY_SHARDS)]
    direct = subprocess.run([sys.executable, "-c", code, *frames], capture_output=True, text=True, check=True)
    expected = json.loads(direct.stdout.strip().splitlines()[-1])
    seen = set()
    for shard_path in shards:
        with open_shard(work / shard_path) as shard:
            assert shard.attrs["weights"] == record["identity"] and shard.attrs["weights_sha256"] == info["sha256"]
            assert shard.attrs["normalise"] == "none"  # recipe paper: what DIRECT feeds the backbone
            for video_id in shard["videos"]:
                tokens = np.asarray(expected[video_id], dtype=np.float16)
                np.testing.assert_allclose(shard["videos"][video_id][()], tokens, rtol=0, atol=2e-3)
                seen.add(video_id)
    assert seen == set(expected) and len(seen) == config["datasets"]["tiny"]["demo"]["n_videos"]
