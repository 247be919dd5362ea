"""Breakfast Actions (Kuehne, Arslan & Serre, CVPR 2014) as ViS4mer uses it.

Video-level classification of 10 breakfast activities, 1712 videos of 52 participants
(P03-P54) filmed by several cameras. Layout of the official archive::

    BreakfastII_15fps_qvga_sync/P03/cam01/P03_cereals.avi
    BreakfastII_15fps_qvga_sync/P03/webcam01/P03_cereals.avi
    BreakfastII_15fps_qvga_sync/P03/stereo/P03_cereals_ch0.avi    (and _ch1: the stereo pair)

The label is the activity in the file name. A video is identified as
``<participant>-<camera>-<file stem>`` (``P03-cam01-P03_cereals``,
``P03-stereo-P03_cereals_ch0``), the ``file_name`` column of ViS4mer's split lists
(``train.csv`` / ``test.csv``: ``file_name,duration,action,class_id``, duration in seconds).

Stereo recordings come as two files, ``_ch0`` and ``_ch1``, of the same scene; one
video per (participant, camera, activity) is kept: the lowest channel (a file
without a channel suffix would come first). That is ``_ch0``, the file the split
lists name.

Split as in ViS4mer's lists: participants P03-P46 train (1357 videos), P47-P54 test
(355); both ranges are parameters.
"""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vis4mer._logging import logger
from vis4mer.sources import Benchmark, SourceData, TaskData, VideoInfo, roles
from vis4mer.sources.splits import SplitRow
from vis4mer.sources.validation import with_validation

ARCHIVE_DIR = "BreakfastII_15fps_qvga_sync"
# Class id = index; the order of ViS4mer's split lists (checked against them in the tests).
CLASSES = ("cereals", "coffee", "tea", "pancake", "friedegg", "scrambledegg", "sandwich", "juice", "milk", "salat")
TRAIN_PARTICIPANTS = (3, 46)  # inclusive range of participant numbers
TEST_PARTICIPANTS = (47, 54)
LIST_COLUMNS = ("file_name", "duration", "action", "class_id")

_STEM = re.compile(r"(?P<participant>P\d+)_(?P<activity>[A-Za-z]+)(?:_ch(?P<channel>\d+))?")
_VIDEO_ID = re.compile(r"(?P<participant>P\d+)-(?P<camera>[A-Za-z0-9]+)-(?P<stem>.+)")


@dataclass(frozen=True)
class Example:
    """One Breakfast video: `target` is the class id, `label_name` the activity."""

    video_id: str  # "<participant>-<camera>-<file stem>", e.g. "P03-cam01-P03_cereals"
    target: int
    label_name: str
    participant: str  # "P03"
    camera: str  # "cam01", "webcam02", "stereo", ...
    path: Path | None = None  # set by scan_breakfast
    duration: float | None = None  # seconds; set by read_breakfast_list

    @property
    def participant_number(self) -> int:
        return int(self.participant[1:])


def class_id(activity: str) -> int:
    """Class id of an activity name; a ValueError lists the 10 names otherwise."""
    try:
        return CLASSES.index(activity)
    except ValueError:
        raise ValueError(f"unknown Breakfast activity {activity!r}; expected one of {', '.join(CLASSES)}") from None


def _archive_root(root: Path) -> Path:
    """`root` itself when it holds participant folders, else its ARCHIVE_DIR subfolder."""
    if not root.is_dir():
        raise FileNotFoundError(f"Breakfast video directory {root} does not exist")
    if not any(child.is_dir() and re.fullmatch(r"P\d+", child.name) for child in root.iterdir()):
        if (root / ARCHIVE_DIR).is_dir():
            return _archive_root(root / ARCHIVE_DIR)
        raise FileNotFoundError(
            f"{root} has no participant folders (P03, ...) nor {ARCHIVE_DIR}/; expected "
            f"{ARCHIVE_DIR}/<participant>/<camera>/<participant>_<activity>.avi"
        )
    return root


def scan_breakfast(root) -> list[Example]:
    """Examples of every video under `root`, sorted by id.

    `root` is the archive folder (holding P03, P04, ...) or the folder containing it.
    Files that are not ``<participant>/<camera>/<participant>_<activity>[_ch<n>].avi``
    with a known activity and the folder's participant are left out with a warning;
    of several channels of one recording the lowest is kept (module docstring).
    """
    root = _archive_root(Path(root))
    candidates: dict[tuple[str, str, str], list[tuple[int, Path]]] = defaultdict(list)
    rejected: list[str] = []
    for path in sorted(root.glob("P*/*/*.avi")):
        participant, camera = path.parent.parent.name, path.parent.name
        match = _STEM.fullmatch(path.stem)
        if not match or match["participant"] != participant or match["activity"] not in CLASSES:
            rejected.append(str(path.relative_to(root)))
            continue
        channel = -1 if match["channel"] is None else int(match["channel"])
        candidates[(participant, camera, match["activity"])].append((channel, path))
    if rejected:
        logger.warning(
            "Breakfast scan of %s: left out %d files not named <participant>_<activity>[_ch<n>].avi "
            "with a known activity inside their participant's folder: %s",
            root,
            len(rejected),
            rejected,
        )
    examples = []
    n_alternatives = 0
    for (participant, camera, activity), files in candidates.items():
        _, path = min(files)
        n_alternatives += len(files) - 1
        examples.append(
            Example(f"{participant}-{camera}-{path.stem}", class_id(activity), activity, participant, camera, path)
        )
    if n_alternatives:
        logger.info("Breakfast scan of %s: kept the lowest stereo channel, left out %d other channels", root, n_alternatives)
    if not examples:
        raise FileNotFoundError(f"no Breakfast videos (<participant>/<camera>/<participant>_<activity>.avi) under {root}")
    return sorted(examples, key=lambda example: example.video_id)


def parse_video_id(video_id: str) -> tuple[str, str, str]:
    """(participant, camera, activity) of an id such as ``P03-stereo-P03_cereals_ch0``."""
    match = _VIDEO_ID.fullmatch(video_id)
    stem = _STEM.fullmatch(match["stem"]) if match else None
    if not stem or stem["participant"] != match["participant"]:
        raise ValueError(
            f"{video_id!r} is not a Breakfast video id <participant>-<camera>-<participant>_<activity>[_ch<n>]"
        )
    return match["participant"], match["camera"], stem["activity"]


def read_breakfast_list(path) -> list[Example]:
    """Examples of a ViS4mer split list (``file_name,duration,action,class_id``), in file order.

    Raises FileNotFoundError for a missing file and ValueError naming file and line for a
    wrong header or field count, a malformed id, an action that is not the id's activity
    or not one of CLASSES, a class id other than that action's, a bad duration, or a
    video listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(field.strip() for field in rows[0]) != LIST_COLUMNS:
        raise ValueError(f"{path}: header is {rows[0] if rows else 'missing'}, expected {','.join(LIST_COLUMNS)}")
    examples, first_line = [], {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        where = f"{path}:{number}"
        if len(row) != len(LIST_COLUMNS):
            raise ValueError(f"{where}: {len(row)} fields, expected {len(LIST_COLUMNS)} ({','.join(LIST_COLUMNS)})")
        video_id, duration_text, action, class_text = (field.strip() for field in row)
        try:
            participant, camera, activity = parse_video_id(video_id)
            target = class_id(action)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        if activity != action:
            raise ValueError(f"{where}: video {video_id} shows {activity!r} but its action is {action!r}")
        if class_text != str(target):
            raise ValueError(f"{where}: class_id {class_text!r} for {action!r}; {action!r} is class {target}")
        try:
            duration = float(duration_text)
        except ValueError:
            raise ValueError(f"{where}: duration {duration_text!r} is not a number of seconds") from None
        if not duration >= 0:
            raise ValueError(f"{where}: duration {duration} is negative")
        if video_id in first_line:
            raise ValueError(f"{where}: video {video_id} is listed twice (first on line {first_line[video_id]})")
        first_line[video_id] = number
        examples.append(Example(video_id, target, action, participant, camera, duration=duration))
    if not examples:
        raise ValueError(f"{path}: no data rows after the header")
    return examples


def split_of(
    participant: str, train: tuple[int, int] = TRAIN_PARTICIPANTS, test: tuple[int, int] = TEST_PARTICIPANTS
) -> str | None:
    """"train", "test" or None (in neither range) for a participant such as ``P47``."""
    number = int(participant[1:])
    if train[0] <= number <= train[1]:
        return "train"
    if test[0] <= number <= test[1]:
        return "test"
    return None


def split_breakfast(
    examples, train: tuple[int, int] = TRAIN_PARTICIPANTS, test: tuple[int, int] = TEST_PARTICIPANTS
) -> dict[str, list[Example]]:
    """{"train": [...], "test": [...]} by participant number (inclusive ranges, disjoint)."""
    if not (train[1] < test[0] or test[1] < train[0]):
        raise ValueError(f"train participants {train} and test participants {test} overlap")
    splits: dict[str, list[Example]] = {"train": [], "test": []}
    for example in examples:
        split = split_of(example.participant, train, test)
        if split is not None:
            splits[split].append(example)
    return splits


# ----------------------------------------------------------------------------------- source


def source_data(
    video_dir,
    task: str,
    lists_dir=None,
    train_participants: tuple[int, int] = TRAIN_PARTICIPANTS,
    test_participants: tuple[int, int] = TEST_PARTICIPANTS,
    validation: Mapping[str, Any] | None = None,
) -> SourceData:
    """Breakfast activity classification (one task named `task`) in the common form.

    With `lists_dir`, ViS4mer's split lists ``<lists_dir>/{train,test}.csv`` define the
    videos and splits; a listed video missing from `video_dir` is kept (it is recorded as
    missing downstream). Without, every video found in `video_dir` is used and split by
    participant number (inclusive ranges). The validation split per `validation`
    (vis4mer.sources.validation: whole participants held out).
    """
    scanned = {example.video_id: example for example in scan_breakfast(video_dir)}
    if lists_dir is not None:
        listed = {split: read_breakfast_list(Path(lists_dir) / f"{split}.csv") for split in ("train", "test")}
        if both := sorted({e.video_id for e in listed["train"]} & {e.video_id for e in listed["test"]}):
            raise ValueError(f"{lists_dir}: videos in both train.csv and test.csv: {both[:5]}")
        absent = sorted({e.video_id for examples in listed.values() for e in examples} - set(scanned))
        if absent:
            logger.warning("Breakfast: %d listed videos are not in %s (recorded as missing): %s", len(absent), video_dir, absent[:10])
        unlisted = len(set(scanned) - {e.video_id for examples in listed.values() for e in examples})
        if unlisted:
            logger.info("Breakfast: %d videos of %s are in neither split list and are not used", unlisted, video_dir)
        split_examples = listed
        how = f"split lists {lists_dir}"
    else:
        split_examples = split_breakfast(scanned.values(), tuple(train_participants), tuple(test_participants))
        how = f"participants P{train_participants[0]:02d}-P{train_participants[1]:02d} train, P{test_participants[0]:02d}-P{test_participants[1]:02d} test"
    rows = {split: [SplitRow(e.video_id, e.target, e.label_name) for e in examples] for split, examples in split_examples.items()}
    for split in ("train", "test"):
        if not rows[split]:
            raise ValueError(f"Breakfast: the {split} split is empty ({how}, videos from {video_dir})")
    participants = {e.video_id: e.participant for examples in split_examples.values() for e in examples}
    splits, note = with_validation(rows["train"], rows["test"], validation or {}, groups=participants)
    data = {task: TaskData("classification", splits, list(CLASSES))}
    videos = {
        video_id: VideoInfo(role, str(scanned[video_id].path) if video_id in scanned else None)
        for video_id, role in roles(data).items()
    }
    return SourceData(data, videos, {"splits": how, "validation": note})


class BreakfastSource(Benchmark):
    """Breakfast Actions: videos found in ``video_dir`` (their files known when the DAG is
    built), split by ViS4mer's lists (``lists_dir``) or by participant ranges; one task."""

    kind = "breakfast"
    single_task = True
    paper_accuracy = 88.17  # ViS4mer's test accuracy (%), Islam & Bertasius, ECCV 2022
    files_key = "video_dir (or lists_dir)"

    @classmethod
    def read_source(cls, arguments):
        return source_data(
            arguments["video_dir"],
            arguments["task"],
            arguments["lists_dir"],
            tuple(arguments["train_participants"]),
            tuple(arguments["test_participants"]),
            arguments["validation"],
        )

    def arguments(self, tasks):
        (task,) = tasks
        settings = self.settings
        return {
            "source": self.kind,
            "video_dir": settings["video_dir"],
            "task": task,
            "lists_dir": settings["lists_dir"],
            "train_participants": list(settings["train_participants"]),
            "test_participants": list(settings["test_participants"]),
            "validation": dict(settings["validation"]),
        }

    def split_inputs(self, task):
        lists_dir = self.settings["lists_dir"]
        if lists_dir:
            return {"source": [os.path.join(lists_dir, f"{split}.csv") for split in ("train", "test")]}
        return {"source": self.settings["video_dir"]}


SOURCE = BreakfastSource
