"""A local dataset through the workflow: one tiny run on generated videos (one training video
unreadable), then dry runs on the same copy for the data problems that stop it at start-up.

Every run happens in a temporary copy of the workflow, as in tests/test_workflow.py.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from _workflow import TINY_CONFIG, copy_workflow, snakemake, write_config
from _workflow_media import write_video
from vis4mer.sources.splits import SplitRow, write_split_csv

SPLITS = {  # split -> [(video id, class id)]
    "train": [("v1", 0), ("v2", 1), ("v3", 0), ("v4", 1), ("broken", 0)],
    "val": [("v5", 0), ("v6", 1)],
    "test": [("v7", 0), ("v8", 1)],
}
NAMES = ["cats", "dogs"]


def write_splits(split_dir, splits=SPLITS):
    for split, rows in splits.items():
        write_split_csv(split_dir / "genre" / f"{split}.csv", [SplitRow(vid, label, NAMES[label]) for vid, label in rows])


def local_config(data, **settings):
    config = copy.deepcopy({key: TINY_CONFIG[key] for key in ("seed", "models", "training", "evaluation", "runtime")})
    dataset = {
        "source": "local",
        "video_dir": str(data / "videos"),
        "split_dir": str(data / "splits"),
        "tasks": {"genre": {"type": "classification"}},
        "frames": {"fps": 1, "size": 32},
        "features": {"backbone": "vit_tiny_patch16_224", "weights": "random"},
        "models": ["meanpool"],
        **settings,
    }
    return {**config, "shard_size": 16, "targets": ["mine"], "datasets": {"mine": dataset}}  # one shard


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("local"))
    data = workdir / "data"
    write_splits(data / "splits")
    for index, (vid, _) in enumerate(row for rows in SPLITS.values() for row in rows):
        if vid != "broken":
            write_video(data / "videos" / f"{vid}.mp4", 8, fps=2, seed=index)
    (data / "videos" / "broken.mp4").write_text("not a video\n")  # unreadable: skipped by the frames stage
    config = write_config(workdir / "config" / "local.yaml", local_config(data))
    result = snakemake(workdir, "--cores", "2", "--configfile", str(config), timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return workdir, data, result


@pytest.mark.slow
def test_training_videos_left_out_are_counted_and_warned_about_once(local_run):
    workdir, _, result = local_run
    results = workdir / "results" / "mine"
    collected = json.loads((results / "all.json").read_text())
    left = collected["left_out_of_training"]
    assert list(left) == ["genre"] and left["genre"]["val"] == {} and list(left["genre"]["train"]) == ["broken"]
    assert left["genre"]["train"]["broken"].startswith("skipped: ")
    assert collected["results"]["genre"]["meanpool"]["n_total"] == 2  # the test split is whole
    summary = (results / "summary.md").read_text()
    assert "- genre: 1 training video (broken), 0 validation videos" in summary
    output = result.stdout + result.stderr
    assert output.count("trained without videos that have no features") == 1, output[-3000:]
    assert "results/mine/all.json: trained without videos that have no features" in output
    assert "genre: 1 training video (broken), 0 validation videos" in output


@pytest.mark.slow
def test_leakage_stops_at_start_up_and_an_empty_test_split_is_warned_about(local_run, tmp_path):
    workdir, data, _ = local_run

    def dry_run(name, **settings):
        config = write_config(tmp_path / f"{name}.yaml", local_config(data, **settings))
        result = snakemake(workdir, "-n", "--configfile", str(config))
        return result.returncode, result.stdout + result.stderr

    leaky = tmp_path / "leaky"
    write_splits(leaky, {**SPLITS, "test": [*SPLITS["test"], ("v2", 0)]})  # v2 in train and test, another label
    code, output = dry_run("leaky", split_dir=str(leaky))
    assert code != 0
    assert (f"dataset 'mine': task genre: 1 video(s) in both the train split ({leaky}/genre/train.csv) and the test split "
            f"({leaky}/genre/test.csv): v2.") in output, output[-3000:]
    code, output = dry_run("leaky_allowed", split_dir=str(leaky), allow_split_overlap=True)
    assert code == 0, output[-3000:]

    empty = tmp_path / "empty"
    shutil.copytree(data / "splits", empty)
    (empty / "genre" / "test.csv").write_text("class_id class_name youtube_id imdb_id\n")
    code, output = dry_run("empty_test", split_dir=str(empty))
    assert code == 0
    assert output.count(f"task genre: the test split ({empty}/genre/test.csv) lists no videos: nothing is evaluated") == 1, output[-3000:]
