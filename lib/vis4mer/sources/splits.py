"""Split files: the LVU format, and ordinary CSV.

LVU (Wu & Krähenbühl, CVPR 2021) ships one file per split, space-separated with a
header, for example

    class_id class_name youtube_id imdb_id
    0 a_first demo_0003 -

Regression tasks use another label column (e.g. ``like_ratio``), hence the
configurable `label_column`. Fields are separated by whitespace; "-" marks an
absent value.

A CSV split file (comma-separated, a header, fields may be quoted) has the columns
``video_id,label`` and optionally ``label_name`` (the class's name) and ``start``/``end``
(the part of the video to use, in seconds; empty: from the start / to the end), e.g.

    video_id,label,label_name,start,end
    clip_0001,2,"cooking pasta",12.5,80

:func:`split_format` tells the two apart by the header line; :func:`read_split_file` reads
either.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from vis4mer import atomic

SPLITS = ("train", "val", "test")
HEADER = ("class_id", "class_name", "youtube_id", "imdb_id")
LABEL_COLUMN, ID_COLUMN = HEADER[0], HEADER[2]  # what write_split_csv writes the label and the id to
ABSENT = "-"
CSV_ID_COLUMN, CSV_LABEL_COLUMN, CSV_NAME_COLUMN = "video_id", "label", "label_name"
RANGE_COLUMNS = ("start", "end")
FORMATS = ("lvu", "csv")


@dataclass(frozen=True)
class SplitRow:
    video_id: str
    label: int | float
    label_name: str | None = None


def as_field(name: str) -> str:
    """A class name as one whitespace-free field of a split file."""
    return re.sub(r"\s+", "_", name.strip()) or ABSENT


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_label(text: str, path: Path, line_number: int) -> int | float:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    raise ValueError(f"{path}:{line_number}: label {text!r} is not a number")


def split_format(path) -> str:
    """"csv" when the file's first non-empty line holds a comma, else "lvu"."""
    for line in Path(path).read_text().splitlines():
        if line.strip():
            return "csv" if "," in line else "lvu"
    return "lvu"


def default_columns(file_format: str) -> tuple[str, str]:
    """(id column, label column) of a split file format when the config names none."""
    return (CSV_ID_COLUMN, CSV_LABEL_COLUMN) if file_format == "csv" else (ID_COLUMN, LABEL_COLUMN)


def read_split_file(path, id_column: str, label_column: str) -> list[SplitRow]:
    """Rows of a split file in either format (:func:`split_format`)."""
    reader = read_csv_split if split_format(path) == "csv" else read_split_csv
    return reader(path, id_column, label_column)


def _csv_table(path: Path, id_column: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number, {column: field})]) of a CSV split file; checks the header,
    the field counts and that no video is listed twice."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        lines = [(reader.line_num, [f.strip() for f in fields]) for fields in reader if any(f.strip() for f in fields)]
    if not lines:
        raise ValueError(f"{path} is empty; expected a header such as {CSV_ID_COLUMN},{CSV_LABEL_COLUMN},{CSV_NAME_COLUMN}")
    header = lines[0][1]
    if id_column not in header:
        raise ValueError(f"{path} has no column {id_column!r} (header columns: {header})")
    rows, first = [], {}
    for line_number, fields in lines[1:]:
        if len(fields) != len(header):
            raise ValueError(f"{path}:{line_number}: {len(fields)} fields, header has {len(header)} (quote a field that holds a comma)")
        row = dict(zip(header, fields))
        if row[id_column] in first:
            raise ValueError(f"{path}:{line_number}: video {row[id_column]!r} is listed twice (first on line {first[row[id_column]]})")
        first[row[id_column]] = line_number
        rows.append((line_number, row))
    return header, rows


def read_csv_split(path, id_column: str = CSV_ID_COLUMN, label_column: str = CSV_LABEL_COLUMN) -> list[SplitRow]:
    """Rows of a CSV split file; `label_name` from its ``label_name`` column when present."""
    path = Path(path)
    header, table = _csv_table(path, id_column)
    if label_column not in header:
        raise ValueError(f"{path} has no column {label_column!r} (header columns: {header})")
    rows = []
    for line_number, row in table:
        name = row.get(CSV_NAME_COLUMN) or None
        rows.append(SplitRow(row[id_column], _parse_label(row[label_column], path, line_number), name))
    return rows


def read_csv_ranges(path, id_column: str = CSV_ID_COLUMN) -> dict[str, tuple[float | None, float | None]]:
    """{video id: (start, end)} in seconds of the rows of a CSV split file whose ``start`` or
    ``end`` is filled in (an empty one: from the start / to the end of the video)."""
    path = Path(path)
    header, table = _csv_table(path, id_column)
    ranges = {}
    for line_number, row in table:
        bounds = []
        for column in RANGE_COLUMNS:
            text = row.get(column, "")
            try:
                value = float(text) if text else None
            except ValueError:
                raise ValueError(f"{path}:{line_number}: {column} {text!r} is not a number of seconds") from None
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{path}:{line_number}: {column} {text!r} is not a non-negative number of seconds")
            bounds.append(value)
        start, end = bounds
        if start is not None and end is not None and end <= start:
            raise ValueError(f"{path}:{line_number}: end {end} is not after start {start}")
        if start is not None or end is not None:
            ranges[row[id_column]] = (start, end)
    return ranges


def read_split_csv(path, id_column: str = ID_COLUMN, label_column: str = LABEL_COLUMN) -> list[SplitRow]:
    """Rows of an LVU split file; `label_name` comes from `class_name` when present."""
    path = Path(path)
    lines = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty; expected a space-separated header such as {' '.join(HEADER)!r}")
    header = lines[0][1]
    if len(header) == 1 and any(sep in header[0] for sep in ",;|"):
        raise ValueError(f"{path} is not space-separated (header {header[0]!r}); LVU split files use spaces")
    for column in (id_column, label_column):
        if column not in header:
            hint = " - the first line looks like data: the file needs a header line" if _is_number(header[0]) else ""
            raise ValueError(f"{path} has no column {column!r} (header columns: {header}){hint}")
    id_index, label_index = header.index(id_column), header.index(label_column)
    name_index = header.index("class_name") if "class_name" in header else None
    rows, seen = [], set()
    for line_number, fields in lines[1:]:
        if len(fields) != len(header):
            raise ValueError(
                f"{path}:{line_number}: {len(fields)} fields, header has {len(header)} "
                "(fields are space-separated and may not contain spaces)"
            )
        video_id = fields[id_index]
        if video_id in seen:
            raise ValueError(f"{path}:{line_number}: video {video_id!r} is listed twice")
        seen.add(video_id)
        name = fields[name_index] if name_index is not None else None
        label = _parse_label(fields[label_index], path, line_number)
        rows.append(SplitRow(video_id, label, None if name == ABSENT else name))
    return rows


def write_split_csv(path, rows) -> None:
    """Write `rows` (SplitRow) as an LVU split file, atomically (temp file, then rename)."""
    path = Path(path)
    lines = [" ".join(HEADER)]
    for row in rows:
        fields = (str(row.label), row.label_name or ABSENT, row.video_id, ABSENT)
        if any(not field or len(field.split()) != 1 for field in fields):
            raise ValueError(f"{path}: fields must be non-empty and contain no whitespace: {fields}")
        lines.append(" ".join(fields))
    atomic.write_text(path, "\n".join(lines) + "\n")
