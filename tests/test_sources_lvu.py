"""vis4mer.sources.lvu's source: LVU 1.0 in the common form (targets, class-id space, roles) and
what the workflow asks of an LVU dataset (ids, task settings, split files configured or
fetched, trim_preview durations, config errors), without Snakemake."""

from __future__ import annotations

from pathlib import Path

import pytest

from _sources import config_with, dataset_settings
from _workflow_media import GENRE_NAMES, LVU_GENRE, LVU_LIKES, LVU_SECONDS, lvu_ids, write_lvu_split_dir
from vis4mer import sources
from vis4mer.config import ConfigError, check_config, validate_config
from vis4mer.sources import lvu
from vis4mer.sources.splits import read_split_csv

LVU_DIR = Path(__file__).resolve().parents[2] / "shared/data/lvu_1.0"
TASKS = {"genre": {"type": "classification"}, "like_ratio": {"type": "regression"}}


def lvu_source(split_dir, **settings) -> lvu.LvuSource:
    return sources.open_source("tl", dataset_settings("tl", {"source": "lvu", "split_dir": split_dir, "tasks": TASKS, **settings}))


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


def test_lvu_dataset_ids_task_settings_and_notes(tmp_path):
    split_dir = write_lvu_split_dir(tmp_path)
    source = lvu_source(str(split_dir))
    assert source.video_ids() == tuple(lvu_ids())
    assert source.downloads and source.writes_splits and not source.generated
    assert source.task_settings("genre") == {
        "type": "classification", "id_column": "youtube_id", "label_column": "class_id", "label_transform": {},
        "label_names": GENRE_NAMES,
    }
    # the split files hold the paper's targets; `target` says how they derive from the raw columns
    assert source.task_settings("like_ratio")["target"] == {
        "label_column": "like_count", "label_transform": {"ratio_with": "dislike_count", "scale": 10.0, "offset": -lvu.LIKE_RATIO_MEAN},
    }
    with pytest.raises(ValueError, match="has no task 'scene'"):
        source.task_settings("scene")
    assert source.roles()["v10"] == "train" and source.roles()["v08"] == "test"
    assert source.ranges(lvu_ids()) == {}  # whole videos
    assert "targets" in source.notes()
    info = source.summary_info()
    assert info["source"] == "lvu" and info["paper"]["genre"]["value"] == 54.71 and info["paper"]["like_ratio"]["value"] == 0.26
    with pytest.raises(TypeError, match="download stage"):
        source.video_files(["v01"])


def test_lvu_split_files_configured_or_fetched(tmp_path):
    split_dir = write_lvu_split_dir(tmp_path)
    configured = lvu_source(str(split_dir))
    assert not lvu.LvuSource.needs_fetch(configured.settings)
    assert configured.split_inputs("genre") == {"source": [str(split_dir / "genre" / f"{s}.csv") for s in ("train", "val", "test")]}
    assert configured.split_arguments("genre") == {"source": "lvu", "split_dir": str(split_dir), "tasks": ["genre"]}
    assert configured.split_file("genre", "test") == "results/tl/splits/genre/test.csv"
    # the splits rule writes what read_source reads from these arguments
    written = sources.read_source(configured.split_arguments("like_ratio")).tasks["like_ratio"]
    assert written.splits == configured.tasks()["like_ratio"].splits
    settings = dataset_settings("tl", {"source": "lvu", "tasks": TASKS})  # split_dir null: fetched
    assert lvu.LvuSource.needs_fetch(settings)
    with pytest.raises(ValueError, match="no fetched lvu_1.0 directory"):
        sources.open_source("tl", settings).video_ids()
    fetched = sources.open_source("tl", settings, fetched=str(split_dir))
    assert fetched.split_inputs("genre") == {"source": str(split_dir)}
    assert fetched.video_ids() == tuple(lvu_ids())


def test_lvu_trim_preview_keeps_the_annotated_duration(tmp_path):
    split_dir = write_lvu_split_dir(tmp_path)
    assert lvu_source(str(split_dir)).keep_last_s(["v01"]) is None
    assert lvu_source(str(split_dir)).frames_inputs() == {}
    trimmed = lvu_source(str(split_dir), trim_preview=True)
    assert trimmed.keep_last_s(["v01", "v02", "unknown"]) == {"v01": LVU_SECONDS, "v02": LVU_SECONDS}
    assert trimmed.frames_inputs() == {"durations": str(split_dir / "lvu_durations.csv")}
    (split_dir / "lvu_durations.csv").unlink()
    with pytest.raises(ValueError, match="trim_preview, see datasets.tl.split_dir"):
        lvu_source(str(split_dir), trim_preview=True).keep_last_s(["v01"])


def test_a_broken_split_file_names_the_dataset_and_its_key(tmp_path):
    split_dir = write_lvu_split_dir(tmp_path)
    (split_dir / "genre" / "val.csv").write_text("class_id youtube_id\n")
    with pytest.raises(sources.SourceError, match=r"dataset 'tl' \(lvu, see datasets.tl.split_dir\): .*genre/val.csv: header"):
        lvu_source(str(split_dir)).video_ids()


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({"tasks": {"genres": {"type": "classification"}}}, "datasets.tl.tasks.genres: not an LVU task"),
        ({"tasks": {"like_ratio": {"type": "classification"}}}, "datasets.tl.tasks.like_ratio.type is classification, but LVU's like_ratio is a regression task"),
        ({"tasks": {"genre": {"type": "classification", "id_column": "x"}}}, "datasets.tl.tasks.genre.id_column: not used with source lvu"),
        ({"trim_preview": True, "features": {"family": "swin", "backbone": "swin_test_patch244_window877"}},
         "datasets.tl.trim_preview needs features.family vit"),
    ],
)
def test_lvu_config_errors_name_the_key(dataset, expected):
    config = validate_config(config_with("tl", {"source": "lvu", "tasks": TASKS, **dataset}))
    with pytest.raises(ConfigError, match=expected):
        check_config(config)
