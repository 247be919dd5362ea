"""vis4mer.sources.lvu's source: LVU 1.0 in the common form (targets, class-id space, roles)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _workflow_media import GENRE_NAMES, LVU_GENRE, LVU_LIKES, write_lvu_split_dir
from vis4mer import sources
from vis4mer.sources import lvu
from vis4mer.sources.splits import read_split_csv

LVU_DIR = Path(__file__).resolve().parents[2] / "shared/data/lvu_1.0"


def test_lvu_source_targets_class_space_and_roles(tmp_path):
    split_dir = write_lvu_split_dir(tmp_path)
    data = lvu.source_data(split_dir, ["genre", "like_ratio"])
    genre, like = data.tasks["genre"], data.tasks["like_ratio"]
    assert genre.kind == "classification" and genre.label_names == GENRE_NAMES
    assert [(r.video_id, r.label) for r in genre.splits["train"]] == LVU_GENRE["train"]
    assert like.kind == "regression" and like.label_names == []
    v01 = like.splits["train"][0]
    assert v01.video_id == "v01" and v01.label == pytest.approx(10 * 900 / 1000 - lvu.LIKE_RATIO_MEAN)
    # a video is "train" if some task trains on it: v01 (both), v10 (like_ratio only); v08 only tests
    assert data.videos["v01"].role == "train" and data.videos["v10"].role == "train"
    assert data.videos["v08"].role == "test" and data.videos["v12"].role == "test"
    assert list(data.videos) == sorted(data.videos)
    # written in the common layout, read back by vis4mer.sources.splits
    sources.write_task_splits(like, tmp_path / "out" / "like_ratio")
    rows = read_split_csv(tmp_path / "out" / "like_ratio" / "test.csv")
    assert [r.video_id for r in rows] == [vid for vid, *_ in LVU_LIKES["test"]]
    assert rows[0].label == pytest.approx(like.splits["test"][0].label)


def test_lvu_targets_as_label_transforms_agree_with_vis4mer_lvu(tmp_path):
    from vis4mer.labels import read_task_rows

    split_dir = write_lvu_split_dir(tmp_path)
    expected = {r.video_id: r.label for r in lvu.source_data(split_dir, ["like_ratio"]).tasks["like_ratio"].splits["val"]}
    target = lvu.TARGETS["like_ratio"].as_config()
    rows = read_task_rows(split_dir / "like_ratio" / "val.csv", "youtube_id", target["label_column"], target["label_transform"])
    assert {r.video_id: r.label for r in rows} == pytest.approx(expected)


@pytest.mark.skipif(not LVU_DIR.is_dir(), reason=f"LVU split files not found at {LVU_DIR}")
def test_lvu_source_on_the_release_keeps_every_class_id():
    data = lvu.source_data(LVU_DIR, list(lvu.TASKS))
    assert len(data.videos) == 9996
    for task, spec in lvu.TASKS.items():
        if spec.kind == "classification":
            assert len(data.tasks[task].label_names) == spec.n_outputs
    assert data.tasks["director"].label_names[2] == "class_2"  # an id no split contains

