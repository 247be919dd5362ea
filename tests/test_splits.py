"""LVU split files: round trip and the errors a malformed file gives."""

import pytest

from vis4mer.sources.splits import SplitRow, read_split_csv, write_split_csv


def test_round_trip(tmp_path):
    rows = [SplitRow("vid_a", 0, "a_first"), SplitRow("vid_b", 1, "b_first"), SplitRow("vid_c", 2, None)]
    path = tmp_path / "splits" / "train.csv"
    write_split_csv(path, rows)
    assert path.read_text().splitlines()[0] == "class_id class_name youtube_id imdb_id"
    assert read_split_csv(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["train.csv"]  # no temp file left


def test_reads_lvu_rows_and_regression_labels(tmp_path):
    path = tmp_path / "like.csv"
    path.write_text("like_ratio youtube_id imdb_id\n0.93 abc123 tt0001\n\n0.5 def456 tt0002\n")
    rows = read_split_csv(path, label_column="like_ratio")
    assert rows == [SplitRow("abc123", 0.93, None), SplitRow("def456", 0.5, None)]


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("class_id class_name video imdb_id\n0 x vid tt1\n")
    with pytest.raises(ValueError, match=r"train\.csv has no column 'youtube_id'"):
        read_split_csv(path)


def test_comma_separated_file_is_rejected(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("class_id,class_name,youtube_id,imdb_id\n0,x,vid,tt1\n")
    with pytest.raises(ValueError, match="not space-separated"):
        read_split_csv(path)


def test_file_without_header_is_rejected(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("0 a_first vid1 -\n1 b_first vid2 -\n")
    with pytest.raises(ValueError, match="needs a header line"):
        read_split_csv(path)


@pytest.mark.parametrize(
    "body, message",
    [
        ("", "is empty"),
        ("class_id class_name youtube_id imdb_id\n0 a vid\n", r"train\.csv:2: 3 fields"),
        ("class_id class_name youtube_id imdb_id\nzero a vid tt\n", "label 'zero' is not a number"),
        ("class_id class_name youtube_id imdb_id\n0 a vid tt\n1 b vid tt\n", "listed twice"),
    ],
)
def test_malformed_rows(tmp_path, body, message):
    path = tmp_path / "train.csv"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        read_split_csv(path)


def test_write_rejects_whitespace_in_fields(tmp_path):
    with pytest.raises(ValueError, match="no whitespace"):
        write_split_csv(tmp_path / "x.csv", [SplitRow("a b", 0, None)])
