"""LVU through the workflow: the DAG on the real split files, config errors, and an end-to-end
run on a tiny LVU (2 tasks, split files fetched as a tarball, videos from a local HTTP server
standing in for YouTube, some of them gone).

Every run happens in a temporary copy of the workflow (tests/_workflow.py).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path

import h5py
import pytest

from _workflow import copy_workflow, job_counts, ran_jobs, snakemake, write_config
from _workflow_media import (
    GENRE_NAMES,
    LVU_GONE,
    LVU_PREVIEW,
    LVU_SECONDS,
    VideoServer,
    lvu_ids,
    tar_directory,
    write_lvu_split_dir,
    write_lvu_videos,
)
from vis4mer.sources import lvu

LVU_DIR = Path(__file__).resolve().parents[2] / "shared/data/lvu_1.0"
needs_lvu = pytest.mark.skipif(not LVU_DIR.is_dir(), reason=f"LVU split files not found at {LVU_DIR}")

TINY_MODELS = {"vis4mer": {"arch": "vis4mer", "d_model": 8, "n_layers": 1, "dropout": 0.0, "kwargs": {"d_state": 8}}}
TINY_RUNTIME = {"device": "cpu", "feature_batch_size": 16, "eval_batch_size": 8, "num_workers": 0, "progress": False,
                "threads": {"frames": 1, "features": 1, "train": 1, "evaluate": 1}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("lvu_workflow"))


# ----------------------------------------------------------------------------- the real splits


@needs_lvu
def test_dry_run_on_the_real_lvu_splits_plans_shard_jobs_for_all_nine_tasks(workdir, tmp_path):
    """config/config.yaml's LVU (9 tasks, 3 seeds, shards of 16) on the lvu_1.0 release: one
    download/frames/features job per shard of 16 of the 9996 videos, never one per video."""
    config = write_config(tmp_path / "real.yaml", {"datasets": {"lvu": {"split_dir": str(LVU_DIR)}}})
    started = time.monotonic()
    result = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", str(config), "--", "results/lvu/all.json")
    seconds = time.monotonic() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    n_videos = len(lvu.all_video_ids(LVU_DIR))
    assert n_videos == 9996
    shards = math.ceil(n_videos / 16)
    assert job_counts(result.stdout + result.stderr) == {
        "splits": 9, "download": shards, "frames": shards, "features": shards,
        "train": 27, "evaluate": 27, "confusion_plot": 21, "aggregate": 1,
        "fetch_weights": 1,  # the backbone's public weights, fetched once before the first features job
    }
    print(f"planning took {seconds:.0f} s")  # a figure for README, not a pass condition: timing belongs in bench/


def test_dry_run_without_split_dir_fetches_the_splits_first(workdir, tmp_path):
    config = write_config(tmp_path / "fetch.yaml", {"datasets": {"lvu": {"split_dir": None}}})
    result = snakemake(workdir, "-n", "--configfile", str(config), "--", "results/lvu/all.json")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    output = result.stdout + result.stderr
    assert job_counts(output) == {"lvu_splits": 1, "aggregate": 1}  # the rest is planned once the splits are there
    assert "checkpoint lvu_splits:" in output and "results/lvu/lvu_1.0" in output


def test_dry_run_seeds_and_download_shards_of_other_sizes(workdir, tmp_path):
    """Two seeds -> two runs per task; frames shards of 5 ids read the download shards of 7
    that hold their ids; a configured split_dir needs no fetch."""
    split_dir = write_lvu_split_dir(tmp_path)
    config = tiny_lvu_config("http://unused", "http://unused/{id}.mp4", tmp_path)
    config["shard_size"] = 5  # 14 ids: frames/features shards 0-4, 5-9, 10-13
    dataset = config["datasets"]["tinylvu"]
    dataset.update({"split_dir": str(split_dir), "seeds": [0, 1], "download": {"shard_size": 7}})  # 0-6, 7-13
    path = write_config(tmp_path / "tiny.yaml", config)
    result = snakemake(workdir, "-n", "--configfile", str(path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert job_counts(output) == {"splits": 2, "download": 2, "frames": 3, "features": 3, "train": 4, "evaluate": 4,
                                  "confusion_plot": 2, "aggregate": 1, "all": 1}
    assert "results/tinylvu/genre/vis4mer/seed_1/metrics.json" in output
    frames_jobs = {m.group(2): m.group(1) for m in re.finditer(r"rule frames:\n\s+input: ([^\n]+)\n\s+output: (\S+)", output)}
    assert "shard_0000.json" in frames_jobs["results/tinylvu/frames/shard_0001.h5"]  # ids 5-9: download shards 0 and 1
    assert "shard_0001.json" in frames_jobs["results/tinylvu/frames/shard_0001.h5"]
    assert "shard_0000.json" not in frames_jobs["results/tinylvu/frames/shard_0002.h5"]
    assert "lvu_durations.csv" in frames_jobs["results/tinylvu/frames/shard_0000.h5"]  # trim_preview


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({"tasks": {"genres": {"type": "classification"}}}, "datasets.mine.tasks.genres: not an LVU task"),
        ({"tasks": {"like_ratio": {"type": "classification"}}}, "datasets.mine.tasks.like_ratio.type is classification, but LVU's like_ratio is a regression task"),
        ({"tasks": {"view_count": {"type": "regression", "label_transform": {"log": True}}}},
         "datasets.mine.tasks.view_count.label_transform: not used with source lvu"),
        ({"download": {"source": ["youtube", "local"], "local_dirs": ["x"]}}, "write [local, youtube]"),
        ({"download": {"source": "local"}}, "datasets.mine.download.local_dirs is empty"),
        ({"features": {"family": "swin", "backbone": "vit_large_patch16_224"}}, "datasets.mine.features.backbone 'vit_large_patch16_224' is not a Video Swin backbone"),
    ],
)
def test_lvu_config_errors_name_the_key(workdir, tmp_path, dataset, expected):
    mine = {"source": "lvu", "split_dir": str(tmp_path), "tasks": {"genre": {"type": "classification"}},
            "features": {"backbone": "vit_tiny_patch16_224"}, "models": ["vis4mer"]}
    path = write_config(tmp_path / "bad.yaml", {"targets": ["mine"], "datasets": {"mine": {**mine, **dataset}}})
    result = snakemake(workdir, "-n", "--configfile", str(path))
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]


# ----------------------------------------------------------------------------- end to end


def tiny_lvu_config(splits_url: str, url_template: str, mirror: Path) -> dict:
    return {
        "targets": ["tinylvu"],
        "shard_size": 7,  # 14 ids -> 2 download, frames and features shards
        "keep_frames": True,
        "seed": 0,
        "datasets": {
            "tinylvu": {
                "source": "lvu",
                "split_dir": None,  # fetched: rule lvu_splits
                "splits_url": splits_url,
                "trim_preview": True,
                "download": {
                    "source": ["local", "youtube"],
                    "local_dirs": [str(mirror)],
                    "url_template": url_template,
                    "retries": 1,
                    "backoff_s": 0.01,
                    "socket_timeout_s": 10,
                },
                "tasks": {"genre": {"type": "classification"}, "like_ratio": {"type": "regression"}},
                "frames": {"fps": 1, "size": 32, "decoder": "decord"},
                "features": {"family": "vit", "backbone": "vit_tiny_patch16_224", "weights": "random"},
                "models": ["vis4mer"],
                "seeds": [3],  # runs in <model>/seed_3 (several seeds: see the dry-run test)
            }
        },
        "models": TINY_MODELS,
        "training": {"window_frames": 4, "tokens": "all", "batch_size": 4, "epochs": 1, "val_stride_frames": 2, "val_every_epochs": 1},
        "evaluation": {"eval_stride_frames": 1},
        "runtime": TINY_RUNTIME,
    }


@pytest.fixture(scope="module")
def tiny_lvu(tmp_path_factory):
    data = tmp_path_factory.mktemp("tiny_lvu_data")
    served, mirror = data / "served", data / "mirror"
    write_lvu_videos(served)
    mirror.mkdir()
    shutil.move(served / "v12.mp4", mirror / "v12.mp4")  # only in the local mirror
    tar_directory(write_lvu_split_dir(data / "release"), served / "lvu_1.0.tar.gz")
    server = VideoServer(served)
    try:
        workdir = copy_workflow(tmp_path_factory.mktemp("tiny_lvu"))
        config = write_config(workdir / "config" / "tinylvu.yaml",
                              tiny_lvu_config(f"{server.base}/lvu_1.0.tar.gz", server.url_template, mirror))
        started = time.monotonic()
        result = snakemake(workdir, "--cores", "2", "--configfile", str(config), timeout=600)
        seconds = time.monotonic() - started
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        yield workdir, config, result, server, seconds
    finally:
        server.close()


@pytest.mark.slow
def test_tiny_lvu_end_to_end(tiny_lvu):
    workdir, _, result, server, seconds = tiny_lvu
    assert ran_jobs(result.stdout + result.stderr) == {
        "lvu_splits": 1, "splits": 2, "download": 2, "frames": 2, "features": 2,
        "train": 2, "evaluate": 2, "confusion_plot": 1, "aggregate": 1, "all": 1,
    }
    results = workdir / "results" / "tinylvu"

    # downloads: one manifest per shard; gone ids unavailable (asked once), v12 from the mirror
    manifests = [json.loads((results / "downloads" / f"shard_{i:04d}.json").read_text()) for i in range(2)]
    records = {vid: record for manifest in manifests for vid, record in manifest["ids"].items()}
    assert sorted(records) == lvu_ids()
    assert {vid for vid, r in records.items() if r["status"] == "unavailable"} == LVU_GONE
    assert records["v12"]["status"] == "local" and server.hits["v12"] == 0
    assert all(server.hits[vid] == 1 for vid in LVU_GONE)
    assert (workdir / "data" / "tinylvu" / "videos" / "v01.mp4").is_file()

    # split files written through vis4mer.sources.lvu: the paper's like_ratio target, genre's class ids
    like_train = (results / "splits" / "like_ratio" / "train.csv").read_text().splitlines()
    assert like_train[0] == "class_id class_name youtube_id imdb_id"
    v01 = next(line.split() for line in like_train if " v01 " in line)
    assert float(v01[0]) == pytest.approx(9.0 - lvu.LIKE_RATIO_MEAN)

    # frames: the preview of v01 is cut (the last 8 s kept); gone ids recorded as skipped
    with h5py.File(results / "frames" / "shard_0000.h5") as shard:
        manifest = json.loads(shard.attrs["manifest"])
        assert shard["videos/v01"].shape[0] == LVU_SECONDS
        assert shard["videos/v01"].attrs["start_s"] == pytest.approx(LVU_PREVIEW["v01"], abs=0.3)
        assert shard["videos/v02"].shape[0] == LVU_SECONDS and shard["videos/v02"].attrs["start_s"] == 0
    assert manifest["gone_1"]["status"] == "skipped"
    assert "download unavailable" in manifest["gone_1"]["message"] and "404" in manifest["gone_1"]["message"]

    # one run per task; the missing test video is counted, with the download's reason
    run = "vis4mer/seed_3"
    for task in ("genre", "like_ratio"):
        metrics = json.loads((results / task / run / "metrics.json").read_text())
        assert metrics["model"] == run
        assert (metrics["n_total"], metrics["n_evaluated"], metrics["n_missing"]) == (3, 2, 1)
        assert metrics["missing_ids"] == ["gone_2"] and "unavailable" in metrics["missing_reasons"]["gone_2"]
        assert metrics["window_frames"] == 4 and metrics["eval_stride_frames"] == 1
        assert len((results / task / run / "train_log.csv").read_text().splitlines()) == 2  # 1 epoch
    genre = json.loads((results / "genre" / run / "metrics.json").read_text())
    assert genre["metric"] == "accuracy" and genre["confusion"]["labels"] == GENRE_NAMES
    like = json.loads((results / "like_ratio" / run / "metrics.json").read_text())
    assert like["metric"] == "mse" and like["value"] >= 0 and "confusion" not in like
    assert (results / "genre" / run / "confusion.png").stat().st_size > 0

    # all.json and summary.md: our number, evaluated/total, the paper's number, coverage
    collected = json.loads((results / "all.json").read_text())
    assert collected["n_runs"] == 2 and collected["seeds"] == [3] and collected["source"] == "lvu"
    rows = {row["task"]: row for row in collected["table"]}
    assert list(rows) == ["genre", "like_ratio"]
    assert rows["genre"]["seeds"] == [3] and rows["genre"]["paper"]["value"] == 54.71
    assert rows["like_ratio"]["paper"]["value"] == 0.26 and rows["like_ratio"]["mean"] == like["value"]
    assert (rows["genre"]["n_evaluated"], rows["genre"]["n_total"]) == (2, 3)
    downloads = collected["downloads"]
    assert downloads["total"] == 14 and downloads["counts"] == {"downloaded": 11, "local": 1, "unavailable": 2, "failed": 0}
    summary = (results / "summary.md").read_text()
    assert "| task | model | metric | value | evaluated/total | paper |" in summary
    assert re.search(r"\| genre \| vis4mer \| accuracy \| [0-9.]+% \| 2/3 \| 54.71% \|", summary)
    assert re.search(r"\| like_ratio \| vis4mer \| mse \| [0-9.e+-]+ \| 2/3 \| 0.26 \|", summary)
    assert "## Downloads" in summary and "12 of 14 videos available" in summary and "gone_1, gone_2" in summary

    # every rule logged, heavy rules benchmarked
    logs, benchmarks = workdir / "logs" / "tinylvu", workdir / "benchmarks" / "tinylvu"
    for log in ("lvu_splits.log", "splits/genre.log", "downloads/shard_0000.log", "frames/shard_0001.log",
                "genre/vis4mer/seed_3/train.log", "aggregate.log"):
        assert (logs / log).stat().st_size > 0, log
    for bench in ("downloads/shard_0001.tsv", "frames/shard_0000.tsv", "like_ratio/vis4mer/seed_3/train.tsv"):
        assert (benchmarks / bench).exists(), bench
    print(f"the tiny LVU run took {seconds:.0f} s")  # a figure for README, not a pass condition


@pytest.mark.slow
def test_tiny_lvu_second_run_has_nothing_to_do(tiny_lvu):
    workdir, config, _, server, _ = tiny_lvu
    hits = dict(server.hits)
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config))
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    assert dict(server.hits) == hits
