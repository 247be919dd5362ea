"""A synthetic long-range video dataset whose label only an order-aware model can learn.

Every video shows the same two events once each, far apart in time:

    event A   a large red square     (>= 3 s)
    event B   a large blue circle    (>= 3 s)

separated by >= 10 s of distractors only (grey squares and green circles moving
continuously, plus mild pixel noise, present throughout). The label is the ORDER
of the events: 0 = "a_first", 1 = "b_first". Both events occur in every video, so
the bag of frames is the same for both classes and any permutation-invariant model
(mean pooling over frames) is at chance; a model must relate frames >= 10 s apart.

Videos are real H.264 .mp4 files (PyAV), so the decoding stage is exercised as on
real data. Everything is drawn from `seed`: the same arguments give the same
labels, event times and pixels.

Output layout (LVU-style splits, see vis4mer.sources.splits):

    out_dir/videos/demo_0000.mp4 ...
    out_dir/splits/order/{train,val,test}.csv
    out_dir/videos.json          per-video metadata (duration, event times, label)
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vis4mer import atomic
from vis4mer.sources.splits import SplitRow, write_split_csv

LABEL_NAMES = ("a_first", "b_first")
TASK = "order"
RED = (220, 30, 30)
BLUE = (30, 60, 220)
DISTRACTOR_COLOURS = ((128, 128, 128), (40, 170, 60))  # grey squares, green circles
N_DISTRACTORS = 4
NOISE_STD = 6.0
BACKGROUND = 40
MARGIN_SECONDS = 1.0


def generate_demo_dataset(
    out_dir,
    n_videos: int = 120,
    seed: int = 0,
    size: int = 64,
    fps: float = 4.0,
    min_seconds: float = 30.0,
    max_seconds: float = 60.0,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    event_seconds: tuple[float, float] = (3.0, 5.0),
    min_gap_seconds: float = 10.0,
) -> dict[str, Any]:
    """Write the dataset under `out_dir`; return the metadata also saved to videos.json."""
    _check_timing(min_seconds, max_seconds, event_seconds, min_gap_seconds)
    labels, splits = _draw_labels_and_splits(n_videos, seed, split_fractions)
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    videos = {}
    for index, label in enumerate(labels):
        video_id = _video_id(index)
        video_rng = np.random.default_rng([seed, index])
        plan = _plan_video(video_rng, int(label), fps, min_seconds, max_seconds, event_seconds, min_gap_seconds, size)
        _encode_video(out_dir / "videos" / f"{video_id}.mp4", _render_frames(video_rng, plan, size), fps)
        videos[video_id] = plan
    for split, rows in splits.items():
        write_split_csv(out_dir / "splits" / TASK / f"{split}.csv", rows)
    metadata = {"seed": seed, "size": size, "fps": fps, "label_names": list(LABEL_NAMES), "videos": videos}
    atomic.write_text(out_dir / "videos.json", json.dumps(metadata, indent=1, sort_keys=True))
    return metadata


def demo_splits(n_videos: int, seed: int, split_fractions: tuple[float, float, float]) -> dict[str, list[SplitRow]]:
    """{split: rows sorted by id} as generate_demo_dataset writes them, drawn from the
    arguments alone (no video is rendered)."""
    return _draw_labels_and_splits(n_videos, seed, split_fractions)[1]


def _video_id(index: int) -> str:
    return f"demo_{index:04d}"


def _draw_labels_and_splits(n_videos, seed, fractions) -> tuple[np.ndarray, dict[str, list[SplitRow]]]:
    """The label of each video (balanced: ceil/floor of n/2 each) and the stratified split:
    each label's videos shuffled and cut by `fractions` (train, val, test)."""
    _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_videos) % 2)
    splits: dict[str, list[SplitRow]] = {"train": [], "val": [], "test": []}
    for label in range(len(LABEL_NAMES)):
        ids = rng.permutation(sorted(_video_id(i) for i, value in enumerate(labels) if value == label))
        n_train = int(round(fractions[0] * len(ids)))
        n_val = int(round(fractions[1] * len(ids)))
        cuts = {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}
        for split, split_ids in cuts.items():
            splits[split] += [SplitRow(str(v), label, LABEL_NAMES[label]) for v in split_ids]
    return labels, {split: sorted(rows, key=lambda row: row.video_id) for split, rows in splits.items()}


def _check_timing(min_seconds, max_seconds, event_seconds, min_gap_seconds) -> None:
    needed = 2 * MARGIN_SECONDS + 2 * event_seconds[1] + min_gap_seconds
    if not (0 < min_seconds <= max_seconds) or min_seconds < needed:
        raise ValueError(
            f"videos of {min_seconds}-{max_seconds} s cannot hold two events of up to "
            f"{event_seconds[1]} s separated by {min_gap_seconds} s (need >= {needed} s)"
        )


def _check_fractions(fractions) -> None:
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1, got {fractions}")


def _plan_video(rng, label, fps, min_seconds, max_seconds, event_seconds, min_gap_seconds, size) -> dict[str, Any]:
    """Duration and event placement of one video, in whole frames at `fps`."""
    n_frames = int(round(rng.uniform(min_seconds, max_seconds) * fps))
    lengths = [int(round(rng.uniform(*event_seconds) * fps)) for _ in range(2)]
    margin, min_gap = int(np.ceil(MARGIN_SECONDS * fps)), int(np.ceil(min_gap_seconds * fps))
    slack = n_frames - 2 * margin - sum(lengths) - min_gap
    first_offset, second_offset = sorted(rng.integers(0, slack + 1, size=2))
    first_start = margin + first_offset
    second_start = first_start + lengths[0] + min_gap + (second_offset - first_offset)
    order = ("A", "B") if label == 0 else ("B", "A")
    starts = dict(zip(order, (first_start, second_start)))
    n_event = dict(zip(order, lengths))
    events = {name: _event(rng, name, starts[name], n_event[name], fps, size) for name in ("A", "B")}
    return {
        "label": label,
        "label_name": LABEL_NAMES[label],
        "n_frames": n_frames,
        "duration_s": n_frames / fps,
        "events": events,
    }


def _event(rng, name, start_frame, n_frames, fps, size) -> dict[str, Any]:
    extent = int(round(0.45 * size))  # square side / circle diameter
    x, y = (int(v) for v in rng.integers(0, size - extent + 1, size=2))
    return {
        "shape": "square" if name == "A" else "circle",
        "colour": "red" if name == "A" else "blue",
        "start_frame": int(start_frame),
        "n_frames": int(n_frames),
        "start_s": start_frame / fps,
        "end_s": (start_frame + n_frames) / fps,
        "box": [x, y, extent],  # top-left x, y and extent in pixels
    }


def _shape_mask(shape: str, x: float, y: float, extent: float, size: int) -> np.ndarray:
    """Boolean [size, size] mask of a square or circle with top-left (x, y)."""
    rows, cols = np.ogrid[:size, :size]
    if shape == "square":
        return (cols >= x) & (cols < x + extent) & (rows >= y) & (rows < y + extent)
    radius = extent / 2
    return (cols - x - radius + 0.5) ** 2 + (rows - y - radius + 0.5) ** 2 <= radius**2


def _render_frames(rng, plan, size) -> np.ndarray:
    """uint8 [n_frames, size, size, 3]: distractors and noise throughout, events on top."""
    n_frames = plan["n_frames"]
    frames = np.full((n_frames, size, size, 3), BACKGROUND, dtype=np.float32)
    for index in range(N_DISTRACTORS):
        _draw_distractor(rng, frames, index, size)
    for event in plan["events"].values():
        colour = RED if event["shape"] == "square" else BLUE
        mask = _shape_mask(event["shape"], *event["box"], size)
        frames[event["start_frame"] : event["start_frame"] + event["n_frames"], mask] = colour
    frames += rng.normal(0.0, NOISE_STD, size=frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _draw_distractor(rng, frames, index, size) -> None:
    """A shape bouncing around the frame for the whole video."""
    shape = "square" if index % 2 == 0 else "circle"
    colour = DISTRACTOR_COLOURS[index % 2]
    extent = rng.uniform(0.12, 0.22) * size
    span = size - extent
    position = rng.uniform(0, span, size=2)
    velocity = rng.uniform(-0.06, 0.06, size=2) * size  # pixels per frame
    for frame in frames:
        frame[_shape_mask(shape, position[0], position[1], extent, size)] = colour
        position += velocity
        for axis in range(2):  # bounce off the borders
            if not 0 <= position[axis] <= span:
                position[axis] = np.clip(2 * np.clip(position[axis], 0, span) - position[axis], 0, span)
                velocity[axis] *= -1


def _encode_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """frames: uint8 [T, H, W, 3] RGB -> H.264 .mp4 (yuv420p) at `fps`."""
    with atomic.atomic_path(path) as tmp_path, av.open(str(tmp_path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # constant QP: with crf rate control PyAV's bundled x264 gave different
        # bytes for identical input run to run (even single-threaded); QP is exact
        stream.options = {"qp": "23", "preset": "veryfast"}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
