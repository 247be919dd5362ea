"""vis4mer.sources.coin's source: COIN in the common form (classes, ranges, stratified holdout)."""

from __future__ import annotations

from _workflow_media import write_coin
from vis4mer.sources import coin


def test_coin_source_ranges_and_stratified_holdout(tmp_path):
    annotations = write_coin(tmp_path, tmp_path / "served")
    data = coin.source_data(annotations, "task", {"fraction": 0.2, "seed": 1})
    task = data.tasks["task"]
    assert len(task.label_names) == 180 and task.label_names[2] == "ChangeTire" and task.label_names[1] == "class_1"
    val = task.splits["val"]
    assert sorted(r.label for r in val) == [0, 2]  # one of each class's 3 training videos
    assert len(task.splits["train"]) == 4 and {r.video_id for r in task.splits["test"]} == {"c07", "c08", "gone_c"}
    assert (data.videos["c01"].start, data.videos["c01"].end) == (1.0, 5.0)
    assert data.videos["c01"].role in ("train", "test") and data.videos["c07"].role == "test"
    assert data.videos[val[0].video_id].role == "test"  # held out: encoded like a test video

