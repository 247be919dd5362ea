"""vis4mer doctor's checks on this machine (no GPU, system ffmpeg, the installed decoders and
deno), with a small disk quota simulated and a hub cache laid out by the test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from _hub_cache import offline_env, write_hub_weights
from vis4mer import doctor

Usage = namedtuple("Usage", "total used free")


def by_name(checks):
    return {c.name: c for c in checks}


def test_no_gpu_is_a_warning_with_the_consequence():
    (row,) = doctor.check_gpus()  # this machine has no CUDA device
    assert row.status == "warn" and "no CUDA device" in row.detail and "CPU" in row.fix and not row.blocking


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the system ffmpeg")
def test_codecs_per_decoder_flag_av1_for_decord():
    """Measured here (ENVIRONMENT.md): decord 0.6 cannot decode AV1, torchcodec can."""
    rows = by_name(doctor.check_decoding(configured=["decord"]))
    assert rows["ffmpeg"].status == "ok"
    assert rows["codec h264"].status == "ok" and "decord, torchcodec" in rows["codec h264"].detail
    av1 = rows["codec av1"]
    assert av1.status == "warn" and "decoded by torchcodec" in av1.detail and "decord:" in av1.detail
    assert av1.fix == "videos in av1 need frames.decoder: torchcodec"
    assert by_name(doctor.check_decoding(configured=["torchcodec"]))["codec av1"].status == "ok"


def test_missing_ffmpeg_blocks(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    (row,) = doctor.check_decoding()
    assert row.name == "ffmpeg" and row.blocking


def test_js_runtime_found_and_missing():
    assert doctor.check_js_runtime(["deno"]).status == "ok"  # make setup installs deno
    missing = doctor.check_js_runtime(["node:/nonexistent/node"])
    assert missing.blocking and "node: not found" in missing.detail and "deno" in missing.fix


def test_disk_quota_blocks_and_names_what_needs_the_space(tmp_path):
    needs = [
        doctor.SpaceNeed("lvu features", tmp_path / "results" / "lvu" / "features", doctor.vit_feature_bytes(370 * 3600, 1, 197, 1024)),
        doctor.SpaceNeed("lvu videos", tmp_path / "data" / "videos", doctor.download_bytes(370 * 3600)),
    ]
    assert doctor.human_bytes(needs[0].bytes) == "537.40 GB"  # the "about 0.54 TB for 370 h"
    (row,) = doctor.check_disk(needs, disk_usage=lambda path: Usage(10**12, 9 * 10**11, 10**11))  # 100 GB free
    assert row.blocking and "need 703.90 GB" in row.detail and "free 100.00 GB" in row.detail
    assert "lvu features 537.40 GB" in row.detail and str(tmp_path / "data" / "videos") in row.detail
    (roomy,) = doctor.check_disk(needs, disk_usage=lambda path: Usage(10**13, 0, 10**13))
    assert roomy.status == "ok"


def test_weights_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert doctor.check_weights("lvu", "random", "vit_tiny_patch16_224").status == "warn"
    assert doctor.check_weights("lvu", str(tmp_path / "none.pth"), "vit_tiny_patch16_224").blocking
    url_row = doctor.check_weights("breakfast", "pretrained", "swin_x", url="http://127.0.0.1:9/swin_x.pth")
    assert url_row.blocking and "vis4mer fetch-weights --backbone swin_x" in url_row.fix


def test_hub_weights_cached_or_not(tmp_path):
    """In a fresh process with HF_HUB_CACHE set before the hub library is imported."""
    import torch

    cache = tmp_path / "hub"
    write_hub_weights(cache, "timm/vit_tiny_patch16_224.augreg_in21k", {"w": torch.zeros(1)})
    code = (
        "from vis4mer.doctor import check_weights\n"
        "for b in ('vit_tiny_patch16_224.augreg_in21k', 'vit_small_patch16_224.augreg_in21k'):\n"
        "    c = check_weights('lvu', 'pretrained', b); print(c.status, '|', c.detail)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=offline_env(cache), capture_output=True, text=True, check=True).stdout
    cached, missing = out.strip().splitlines()[-2:]
    assert cached.startswith("ok | vit_tiny_patch16_224.augreg_in21k: cached at " + str(cache))
    assert missing.startswith("fail | vit_small_patch16_224.augreg_in21k: not cached")


def test_table_lists_every_row():
    rows = [doctor.Check("gpus", "warn", "none", "use a GPU"), doctor.Check("ffmpeg", "ok", "/usr/bin/ffmpeg")]
    table = doctor.format_table(rows).splitlines()
    assert table[0].split() == ["check", "status", "detail", "fix"]
    assert table[2].startswith("gpus") and "WARN" in table[2] and table[2].endswith("use a GPU")
    assert "OK" in table[3]


# --------------------------------------------------------------------------- a configuration

REPO = Path(__file__).resolve().parents[1]
LVU = REPO.parent / "shared" / "data" / "lvu_1.0"


def test_demo_config_is_ready_on_this_machine(capsys):
    from vis4mer.cli import main

    assert main(["doctor", "--configfile", str(REPO / "config" / "demo.yaml")]) == 0
    table = capsys.readouterr().out
    assert "weights demo" in table and "RANDOM weights" in table and "0 blocking" in table


@pytest.mark.skipif(not LVU.is_dir(), reason=f"LVU split files not found at {LVU}")
def test_lvu_sizes_from_the_split_files_against_a_small_disk(tmp_path, monkeypatch, capsys):
    from vis4mer.cli import main

    override = tmp_path / "lvu.yaml"
    override.write_text(f"datasets:\n  lvu:\n    split_dir: {LVU}\n")
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: Usage(10**12, 9 * 10**11, 10**11))  # 100 GB free
    code = main(["doctor", "--configfile", str(override), "--dataset", "lvu", "--results", str(tmp_path / "results"),
                 "--json", str(tmp_path / "doctor.json")])
    assert code == 1  # the disk blocks the run
    rows = {row["name"]: row for row in __import__("json").loads((tmp_path / "doctor.json").read_text())["rows"]}
    assert rows["lvu inputs"]["detail"] == "9996 videos in 9 task(s)"
    assert rows["lvu size"]["detail"].startswith("9996 videos, 370 h at 1 fps, 197 x 1024 fp16 tokens per frame")
    assert rows["disk space"]["status"] == "fail" and "lvu features 538.04 GB" in rows["disk space"]["detail"]
    assert rows["yt-dlp js runtime"]["status"] == "ok"
    assert "1 blocking" in capsys.readouterr().out


def test_missing_inputs_block_and_name_the_key(tmp_path):
    from vis4mer.config import validate_config

    config = validate_config({"targets": ["bf"], "datasets": {"bf": {
        "source": "breakfast", "video_dir": str(tmp_path / "nowhere"), "tasks": {"activity": {"type": "classification"}},
        "features": {"family": "swin", "backbone": "swin_test_patch244_window877", "weights": "random"}, "models": ["m"]}},
        "models": {"m": {"arch": "meanpool", "d_model": 8, "n_layers": 1}}})
    rows = by_name(doctor.check_dataset("bf", config, tmp_path / "results")[0])
    assert rows["bf inputs"].blocking and "datasets.bf.video_dir" in rows["bf inputs"].fix
