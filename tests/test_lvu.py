"""LVU tasks and split files: the real lvu_1.0 release, and the errors malformed files give.

The release lives outside the repository (../shared/data/lvu_1.0 relative to the repo root);
tests on it are skipped when it is absent. Expected counts are computed two ways: by a plain
line count of each file and from the table below (observed 2026-11), so a loader that
silently drops or duplicates rows fails either way.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vis4mer.sources import lvu

LVU_DIR = Path(__file__).resolve().parents[2] / "shared/data/lvu_1.0"
needs_lvu = pytest.mark.skipif(not LVU_DIR.is_dir(), reason=f"LVU split files not found at {LVU_DIR}")

# Data rows (train, val, test) per task, counted in lvu_1.0.
ROW_COUNTS = {
    "relationship": (149, 53, 42),
    "way_speaking": (939, 205, 201),
    "scene": (557, 120, 86),
    "director": (680, 163, 107),
    "writer": (769, 174, 168),
    "year": (770, 165, 143),
    "genre": (3063, 597, 647),
    "like_ratio": (658, 142, 140),
    "view_count": (577, 124, 126),
}

# Class ids present per split (train, val, test). Some ids of the declared class space never
# occur (director 2, 3; writer 3, 4, 8) and some occur in only some splits.
LABEL_SETS = {
    "relationship": ({0, 1, 2, 3}, {0, 1, 2, 3}, {0, 2, 3}),
    "way_speaking": ({0, 1, 2, 3, 4},) * 3,
    "scene": ({0, 1, 2, 3, 4, 5},) * 3,
    "director": ({0, 1, 4, 5, 6, 7, 8, 9}, {0, 1, 4, 6, 7, 8, 9}, {0, 1, 4, 5, 6, 7, 8}),
    "writer": ({0, 1, 2, 5, 6, 7, 9},) * 3,
    "year": (set(range(9)),) * 3,
    "genre": ({0, 1, 2, 3},) * 3,
}

DECLARED = {
    # task: (kind, n_outputs, metric, ViS4mer paper result)
    "relationship": ("classification", 4, "accuracy", 57.14),
    "way_speaking": ("classification", 5, "accuracy", 40.79),
    "scene": ("classification", 6, "accuracy", 67.44),
    "director": ("classification", 10, "accuracy", 62.61),
    "writer": ("classification", 10, "accuracy", 48.80),
    "year": ("classification", 9, "accuracy", 44.75),
    "genre": ("classification", 4, "accuracy", 54.71),
    "like_ratio": ("regression", 1, "mse", 0.26),
    "view_count": ("regression", 1, "mse", 3.63),
}


def _data_lines(path: Path) -> int:
    """Non-empty lines minus the header: an independent count of data rows."""
    with open(path) as f:
        return sum(1 for line in f if line.strip()) - 1


def test_task_table_matches_the_benchmark():
    assert set(lvu.TASKS) == set(DECLARED)
    for name, (kind, n_outputs, metric, paper) in DECLARED.items():
        spec = lvu.TASKS[name]
        assert (spec.name, spec.kind, spec.n_outputs, spec.metric, spec.paper_result) == (
            name,
            kind,
            n_outputs,
            metric,
            paper,
        )
        assert (spec.target_from_raw is None) == (kind == "classification")


def test_regression_transforms_invert():
    like, views = lvu.TASKS["like_ratio"], lvu.TASKS["view_count"]
    assert like.target_from_raw(9.138220535629456) == pytest.approx(0.0)
    assert like.raw_from_target(like.target_from_raw(7.25)) == pytest.approx(7.25)
    assert views.target_from_raw(math.exp(11.76425435683139)) == pytest.approx(0.0)
    assert views.raw_from_target(views.target_from_raw(123456.0)) == pytest.approx(123456.0)


@needs_lvu
@pytest.mark.parametrize("task", list(ROW_COUNTS))
def test_row_counts_per_split(task):
    for split, expected in zip(lvu.SPLITS, ROW_COUNTS[task]):
        examples = lvu.read_task_split(LVU_DIR, task, split)
        assert len(examples) == _data_lines(LVU_DIR / task / f"{split}.csv") == expected, split
        assert len({e.video_id for e in examples}) == len(examples)


@needs_lvu
@pytest.mark.parametrize("task", list(LABEL_SETS))
def test_class_ids_keep_the_release_id_space(task):
    n_classes = lvu.TASKS[task].n_outputs
    for split, expected in zip(lvu.SPLITS, LABEL_SETS[task]):
        examples = lvu.read_task_split(LVU_DIR, task, split)
        labels = {e.target for e in examples}
        assert all(isinstance(e.target, int) for e in examples)
        assert labels == expected, split
        assert labels <= set(range(n_classes))


@needs_lvu
def test_label_names_fill_missing_ids():
    assert lvu.label_names(LVU_DIR, "relationship") == [
        "friend",
        "ex_boyfriend_ex_girlfriend",
        "husband_wife",
        "boyfriend_girlfriend",
    ]
    assert lvu.label_names(LVU_DIR, "year") == [str(y) for y in range(1930, 2020, 10)]
    director = lvu.label_names(LVU_DIR, "director")
    assert director[:4] == ["nm0000229", "nm0000217", "class_2", "class_3"]
    writer = lvu.label_names(LVU_DIR, "writer")  # class 0 is named "\N" (NULL) in the files
    assert [writer[i] for i in (0, 3, 4, 8)] == ["class_0", "class_3", "class_4", "class_8"]
    assert writer[1] == "nm0001220"
    for task in LABEL_SETS:
        assert len(lvu.label_names(LVU_DIR, task)) == lvu.TASKS[task].n_outputs
    with pytest.raises(ValueError, match="regression"):
        lvu.label_names(LVU_DIR, "view_count")


@needs_lvu
def test_regression_targets_match_hand_computed_rows():
    for task in ("like_ratio", "view_count"):
        for split in lvu.SPLITS:
            assert all(math.isfinite(e.target) for e in lvu.read_task_split(LVU_DIR, task, split))
    like = {e.video_id: e.target for e in lvu.read_task_split(LVU_DIR, "like_ratio", "test")}
    # "100101 39251 Gl5GVViqvjo": 10 * 100101 / 139352 = 7.183320, minus the mean 9.138221
    assert like["Gl5GVViqvjo"] == pytest.approx(-1.954901, abs=1e-6)
    like_val = {e.video_id: e.target for e in lvu.read_task_split(LVU_DIR, "like_ratio", "val")}
    # "1011444 220305 Z2xooz6844k": 10 * 1011444 / 1231749 = 8.211446
    assert like_val["Z2xooz6844k"] == pytest.approx(8.211446 - 9.138221, abs=2e-6)
    views = {e.video_id: e.target for e in lvu.read_task_split(LVU_DIR, "view_count", "test")}
    # "1021209 TLZClsaDEw0": ln(1021209) = 13.836498, minus the mean 11.764254
    assert views["TLZClsaDEw0"] == pytest.approx(2.072243, abs=1e-6)
    assert lvu.TASKS["view_count"].raw_from_target(views["TLZClsaDEw0"]) == pytest.approx(1021209)
    views_val = {e.video_id: e.target for e in lvu.read_task_split(LVU_DIR, "view_count", "val")}
    # "101765 FlxXhrDycHw": ln(101765) = 11.530422
    assert views_val["FlxXhrDycHw"] == pytest.approx(11.530422 - 11.764254, abs=2e-6)


@needs_lvu
def test_durations_and_video_ids():
    durations = lvu.read_durations(LVU_DIR)
    assert len(durations) == 34587
    assert min(durations.values()) == 3.0 and max(durations.values()) == 781.0
    ids = lvu.all_video_ids(LVU_DIR)
    assert len(ids) == 9996
    assert ids == sorted(set(ids))
    assert set(ids) <= set(durations)


# --- malformed files -----------------------------------------------------------------


def _write(root: Path, task: str, split: str, text: str) -> Path:
    path = root / task / f"{split}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CLASS_HEADER = "class_id class_name youtube_id imdb_id\n"


def test_reads_a_small_file(tmp_path):
    _write(tmp_path, "writer", "train", CLASS_HEADER + "0 \\N vid_a tt1\n7 nm0000230 vid_b tt2\n")
    assert lvu.read_task_split(tmp_path, "writer", "train") == [
        lvu.Example("vid_a", 0, None),
        lvu.Example("vid_b", 7, "nm0000230"),
    ]


@pytest.mark.parametrize(
    ("task", "text", "message"),
    [
        ("scene", "class_id youtube_id imdb_id\n0 a tt1\n", r"header has columns \['class_id', 'youtube_id'"),
        ("scene", "", "empty file"),
        ("scene", CLASS_HEADER, "no data rows"),
        ("scene", CLASS_HEADER + "0 office a\n", r"train.csv:2: 3 fields, expected 4"),
        (
            "relationship",
            CLASS_HEADER + "0 friend a tt1\n4 x b tt2\n",
            r"train.csv:3: class_id 4 is out of range .*4 classes",
        ),
        ("relationship", CLASS_HEADER + "-1 x a tt1\n", "class_id -1 is out of range"),
        ("relationship", CLASS_HEADER + "one friend a tt1\n", "class_id 'one' is not an integer"),
        ("relationship", CLASS_HEADER + "0 friend a tt1\n0 friend a tt2\n", "train.csv:3: video a is listed twice"),
        ("relationship", CLASS_HEADER + "0 friend a tt1\n0 pal b tt2\n", "class_id 0 is named 'pal', but 'friend'"),
        ("like_ratio", "like_count dislike_count youtube_id imdb_id\n10 x a tt1\n", "dislike_count 'x' is not a whole"),
        ("like_ratio", "like_count dislike_count youtube_id imdb_id\n1.5 2 a tt1\n", "like_count '1.5' is not a whole"),
        ("like_ratio", "like_count dislike_count youtube_id imdb_id\n-1 2 a tt1\n", "like_count -1 is negative"),
        (
            "like_ratio",
            "like_count dislike_count youtube_id imdb_id\n1 2 a t\n0 0 vid_z t\n",
            r"train.csv:3: video vid_z has like_count \+ dislike_count == 0",
        ),
        ("view_count", "view_count youtube_id imdb_id\nmany a tt1\n", "view_count 'many' is not a whole"),
        ("view_count", "view_count youtube_id imdb_id\n0 vid_q tt1\n", "video vid_q has view_count 0"),
    ],
)
def test_malformed_split_files_name_file_and_problem(tmp_path, task, text, message):
    path = _write(tmp_path, task, "train", text)
    with pytest.raises(ValueError, match=message) as error:
        lvu.read_task_split(tmp_path, task, "train")
    assert str(path) in str(error.value)


def test_missing_file_unknown_task_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"genre/val.csv: file not found"):
        lvu.read_task_split(tmp_path, "genre", "val")
    with pytest.raises(ValueError, match="unknown LVU task 'speaking'.*way_speaking"):
        lvu.read_task_split(tmp_path, "speaking", "val")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        lvu.read_task_split(tmp_path, "genre", "valid")


def test_label_names_disagreeing_across_splits(tmp_path):
    _write(tmp_path, "genre", "train", CLASS_HEADER + "0 Comedy a t\n")
    _write(tmp_path, "genre", "val", CLASS_HEADER + "0 Drama b t\n")
    _write(tmp_path, "genre", "test", CLASS_HEADER + "1 Romance c t\n")
    with pytest.raises(ValueError, match="class_id 0 is named 'Comedy' in train.csv but 'Drama' in val.csv"):
        lvu.label_names(tmp_path, "genre")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("videoid duration\na 3\n", r"header has columns \['videoid duration'\]"),
        ("videoid,duration\na,long\n", "lvu_durations.csv:2: duration 'long' is not a number"),
        ("videoid,duration\na,-3\n", "duration -3.0 is not a finite non-negative"),
        ("videoid,duration\na,3\na,4\n", "video a has two durations"),
        ("videoid,duration\na\n", "lvu_durations.csv:2: 1 fields, expected 2"),
    ],
)
def test_malformed_durations(tmp_path, text, message):
    (tmp_path / "lvu_durations.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        lvu.read_durations(tmp_path)


def test_durations_without_trailing_newline(tmp_path):
    (tmp_path / "lvu_durations.csv").write_text("videoid,duration\na,3\nb,12.5")
    assert lvu.read_durations(tmp_path) == {"a": 3.0, "b": 12.5}
