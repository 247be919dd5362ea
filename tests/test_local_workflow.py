"""A local dataset through the workflow: one tiny run on generated videos with ordinary CSV
split files (one video used only in part, one training video unreadable), then dry runs on
the same copy for the data problems found at start-up.

Every run happens in a temporary copy of the workflow, as in tests/test_workflow.py.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from _workflow import TINY_CONFIG, copy_workflow, snakemake, write_config
from _workflow_media import write_video

SPLITS = {  # split -> [(video id, class id)]
    "train": [("v1", 0), ("v2", 1), ("v3", 0), ("v4", 1), ("broken", 0)],
    "val": [("v5", 0), ("v6", 1)],
    "test": [("v7", 0), ("v8", 1)],
}
NAMES = ["cats and kittens", "dogs, mostly"]  # a space and a comma: quoted in the CSV
SECONDS = 8
RANGES = {"v3": (2, 6)}  # start, end in seconds: the part of v3 used


def write_splits(split_dir, splits=SPLITS):
    """Ordinary CSV split files: video_id,label,label_name,start,end."""
    for split, rows in splits.items():
        lines = ["video_id,label,label_name,start,end"]
        for vid, label in rows:
            start, end = RANGES.get(vid, ("", ""))
            lines.append(f'{vid},{label},"{NAMES[label]}",{start},{end}')
        (split_dir / "genre").mkdir(parents=True, exist_ok=True)
        (split_dir / "genre" / f"{split}.csv").write_text("\n".join(lines) + "\n")


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
            write_video(data / "videos" / f"{vid}.mp4", SECONDS, fps=2, seed=index)
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
    assert collected["results"]["genre"]["meanpool"]["confusion"]["labels"] == NAMES  # label_name of the CSV
    summary = (results / "summary.md").read_text()
    assert "- genre: 1 training video (broken), 0 validation videos" in summary
    output = result.stdout + result.stderr
    assert output.count("trained without videos that have no features") == 1, output[-3000:]
    assert "results/mine/all.json: trained without videos that have no features" in output
    assert "genre: 1 training video (broken), 0 validation videos" in output


@pytest.mark.slow
def test_a_csv_start_and_end_select_the_part_of_the_video_used(local_run):
    from vis4mer.feature_store import FeatureStore

    workdir, _, _ = local_run
    store = FeatureStore(sorted((workdir / "results" / "mine" / "features" / "vit_tiny_patch16_224").glob("shard_*.h5")))
    start, end = RANGES["v3"]
    assert store.n_frames("v3") == end - start and store.n_frames("v1") == SECONDS  # 1 fps


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
    (empty / "genre" / "test.csv").write_text("video_id,label,label_name,start,end\n")
    code, output = dry_run("empty_test", split_dir=str(empty))
    assert code == 0
    assert output.count(f"task genre: the test split ({empty}/genre/test.csv) lists no videos: nothing is evaluated") == 1, output[-3000:]
