"""Split files in the LVU format.

LVU (Wu & Krähenbühl, CVPR 2021) ships one file per split, space-separated with a
header, for example

    class_id class_name youtube_id imdb_id
    0 a_first demo_0003 -

Regression tasks use another label column (e.g. ``like_ratio``), hence the
configurable `label_column`. Fields are separated by whitespace; "-" marks an
absent value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vis4mer import atomic

SPLITS = ("train", "val", "test")
HEADER = ("class_id", "class_name", "youtube_id", "imdb_id")
LABEL_COLUMN, ID_COLUMN = HEADER[0], HEADER[2]  # what write_split_csv writes the label and the id to
ABSENT = "-"


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
