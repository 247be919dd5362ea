"""Clip windows over per-frame features stored in HDF5 feature shards.

ViS4mer sees a fixed number of consecutive frames at a time (the *window*, 60 frames
= 60 s at 1 fps in the paper). Every frame contributes its tokens (all ViT tokens,
or only the class token), and the window's tokens are flattened, frame after frame,
into one sequence ``[window_frames * tokens, dim]``: the S4 layers run along that
sequence.

Training draws one window per clip per step, its start uniform over every position
where a full window fits (:func:`random_window_start`). Evaluation slides the window
over the whole video at a stride (:func:`window_starts`) and the per-window outputs
are combined into one video-level prediction (see :mod:`vis4mer.evaluation`).

Short videos
------------
A video with fewer frames than the window is zero-padded *at the end* up to the
window length (:func:`pad_window`). The S4 layers are causal: the outputs at the real
frames' positions do not depend on what comes after them, so padding at the end
leaves those outputs exactly as they would be on the unpadded clip; only the final
pooling over positions sees the padding. Padding at the start would instead shift
every real frame and feed zeros into the state before any content. Windows that were
padded are counted (``n_padded`` in the training log, ``n_padded_windows`` in the
evaluation metrics) so a dataset made mostly of short clips is visible.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from vis4mer.shards import VIDEOS_GROUP, open_shard
from vis4mer.splits import SplitRow

TOKEN_MODES = ("all", "cls")
TASK_TYPES = ("classification", "regression")
# Per-video attrs that describe one video, not the feature extractor.
_PER_VIDEO_ATTRS = {"n_frames", "source_video", "status", "message"}
# Shard-file attrs that describe one shard, not the dataset's features.
_SHARD_ONLY_ATTRS = {"manifest", "complete", "kind", "frames_shard"}


# --------------------------------------------------------------------------- windows


def random_window_start(n_frames: int, window_frames: int, rng: np.random.Generator) -> int:
    """Uniform start among all positions where a full window fits; 0 for short videos."""
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {n_frames}")
    return int(rng.integers(0, max(0, n_frames - window_frames) + 1))


def window_starts(n_frames: int, window_frames: int, stride_frames: int) -> list[int]:
    """Starts of every evaluation window: 0, stride, 2*stride, ... while a full window fits.

    If the stride does not land on the last full-window position, that position is
    added so the final frames are always covered. A video no longer than the window
    has the single (padded) window starting at 0.
    """
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {n_frames}")
    if window_frames < 1 or stride_frames < 1:
        raise ValueError(f"window ({window_frames}) and stride ({stride_frames}) must be >= 1")
    last = max(0, n_frames - window_frames)
    starts = list(range(0, last + 1, stride_frames))
    if starts[-1] != last:
        starts.append(last)
    return starts


def pad_window(frames: np.ndarray, window_frames: int) -> tuple[np.ndarray, int]:
    """Zero-pad ``[t, tokens, dim]`` at the END to ``[window_frames, tokens, dim]``.

    Returns the padded array and the number of real frames ``t``. Refuses ``t`` larger
    than the window (the caller slices first).
    """
    n_valid = frames.shape[0]
    if n_valid > window_frames:
        raise ValueError(f"{n_valid} frames do not fit a window of {window_frames}")
    if n_valid == window_frames:
        return frames, n_valid
    padded = np.zeros((window_frames, *frames.shape[1:]), dtype=frames.dtype)
    padded[:n_valid] = frames
    return padded, n_valid


def flatten_window(frames: np.ndarray) -> np.ndarray:
    """``[window, tokens, dim]`` -> ``[window * tokens, dim]`` (frame-major order)."""
    return frames.reshape(frames.shape[0] * frames.shape[1], frames.shape[2])


def select_tokens(frames: np.ndarray, tokens: str) -> np.ndarray:
    """``all`` keeps every token; ``cls`` keeps token 0 (timm ViTs store the class token first)."""
    if tokens == "all":
        return frames
    if tokens == "cls":
        return frames[:, :1]
    raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")


def tokens_per_frame(n_tokens: int, tokens: str) -> int:
    if tokens not in TOKEN_MODES:
        raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")
    return n_tokens if tokens == "all" else 1


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class _Entry:
    shard: int  # index into FeatureStore.paths
    n_frames: int


class FeatureStore:
    """Read-only view of the per-video features of a dataset, spread over shards.

    Only complete shards are accepted (:func:`vis4mer.shards.open_shard` raises on a
    half-written one). Videos the features stage skipped are listed in
    :attr:`skipped` with the stage's message. All videos must share the token count
    and feature dimension; the extractor's attrs (backbone, weights, fps, ...) are
    exposed as :attr:`attrs`.

    HDF5 handles are opened lazily per process (DataLoader workers get their own).
    """

    def __init__(self, shard_paths: Iterable[os.PathLike | str]):
        self.paths = [Path(p) for p in shard_paths]
        if not self.paths:
            raise ValueError("FeatureStore needs at least one shard")
        self._entries: dict[str, _Entry] = {}
        self.skipped: dict[str, str] = {}
        self.attrs: dict[str, Any] = {}
        shape: tuple[int, int] | None = None
        for index, path in enumerate(self.paths):
            with open_shard(path) as handle:
                manifest = json.loads(handle.attrs["manifest"])
                file_attrs = {k: _plain(v) for k, v in handle.attrs.items() if k not in _SHARD_ONLY_ATTRS}
                for video_id, entry in sorted(manifest.items()):
                    if video_id in self._entries or video_id in self.skipped:
                        raise ValueError(f"video {video_id!r} appears in more than one shard ({path})")
                    if entry.get("status") != "ok":
                        self.skipped[video_id] = entry.get("message") or "skipped by the features stage"
                        continue
                    dataset = handle[VIDEOS_GROUP][video_id]
                    if dataset.ndim != 3:
                        raise ValueError(
                            f"{path}: videos/{video_id} has shape {dataset.shape}; "
                            "feature shards hold [frames, tokens, dim] arrays"
                        )
                    if shape is None:
                        shape = tuple(dataset.shape[1:])
                        video_attrs = {k: _plain(v) for k, v in dataset.attrs.items() if k not in _PER_VIDEO_ATTRS}
                        self.attrs = {**file_attrs, **video_attrs}
                    elif tuple(dataset.shape[1:]) != shape:
                        raise ValueError(
                            f"{path}: videos/{video_id} has [tokens, dim] {list(dataset.shape[1:])}, "
                            f"other videos have {list(shape)}: features of one dataset must come from one backbone"
                        )
                    self._entries[video_id] = _Entry(index, int(dataset.shape[0]))
        if shape is None:
            raise ValueError(f"no video has features in the {len(self.paths)} shard(s) starting with {self.paths[0]}")
        self.n_tokens, self.dim = int(shape[0]), int(shape[1])
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()

    # -- lookup
    def __contains__(self, video_id: str) -> bool:
        return video_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def video_ids(self) -> list[str]:
        return sorted(self._entries)

    def n_frames(self, video_id: str) -> int:
        return self._entries[video_id].n_frames

    def missing_reason(self, video_id: str) -> str | None:
        """None when the video has features, else why not."""
        if video_id in self._entries:
            return None
        if video_id in self.skipped:
            return f"skipped: {self.skipped[video_id]}"
        return "absent from the feature shards"

    def partition(self, rows: Sequence[SplitRow]) -> tuple[list[SplitRow], dict[str, str]]:
        """Split rows into those with features and {video_id: reason} for the rest."""
        present = [row for row in rows if row.video_id in self._entries]
        missing = {row.video_id: self.missing_reason(row.video_id) for row in rows if row.video_id not in self._entries}
        return present, missing

    # -- reading
    def _handle(self, shard: int) -> h5py.File:
        if self._pid != os.getpid():  # forked (DataLoader worker): never share HDF5 handles
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = open_shard(self.paths[shard])
        return handle

    def read(self, video_id: str, start: int = 0, stop: int | None = None, tokens: str = "all") -> np.ndarray:
        """float32 ``[frames, tokens, dim]`` for frames ``start:stop`` of the video."""
        entry = self._entries[video_id]
        dataset = self._handle(entry.shard)[VIDEOS_GROUP][video_id]
        if tokens not in TOKEN_MODES:
            raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")
        array = dataset[start:stop, :1] if tokens == "cls" else dataset[start:stop]
        return np.asarray(array, dtype=np.float32)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:  # picklable for spawn-based workers
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def __del__(self) -> None:
        try:
            if self._pid == os.getpid():
                self.close()
        except Exception:  # interpreter shutdown
            pass


def _plain(value: Any) -> Any:
    """HDF5 attr values as plain Python (JSON- and torch.load(weights_only)-safe)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- labels


def label_tensor(label: int | float, task_type: str) -> torch.Tensor:
    if task_type == "classification":
        return torch.tensor(int(label), dtype=torch.long)
    if task_type == "regression":
        return torch.tensor(float(label), dtype=torch.float32)
    raise ValueError(f"task type must be one of {TASK_TYPES}, got {task_type!r}")


def describe_labels(task_type: str, *row_lists: Sequence[SplitRow]) -> tuple[int, list[str]]:
    """``(d_output, label_names)`` for a task from its split rows.

    Classification: classes are 0..max(label); a class's name is its ``class_name``
    in the split files (``str(id)`` where absent). Two names for one id is an error.
    Regression: one output, no label names.
    """
    if task_type == "regression":
        return 1, []
    if task_type != "classification":
        raise ValueError(f"task type must be one of {TASK_TYPES}, got {task_type!r}")
    names: dict[int, str] = {}
    max_label = -1
    for rows in row_lists:
        for row in rows:
            if float(row.label) != int(row.label) or int(row.label) < 0:
                raise ValueError(
                    f"video {row.video_id}: classification label {row.label!r} is not a class id "
                    "(a non-negative integer); is the task a regression task?"
                )
            label = int(row.label)
            max_label = max(max_label, label)
            if row.label_name is not None:
                if names.setdefault(label, row.label_name) != row.label_name:
                    raise ValueError(f"class {label} has two names: {names[label]!r} and {row.label_name!r}")
    if max_label < 0:
        raise ValueError("no labelled rows: cannot tell the number of classes")
    return max_label + 1, [names.get(label, str(label)) for label in range(max_label + 1)]


def read_task_rows(path, id_column: str, label_column: str, label_transform: dict[str, Any] | None = None) -> list[SplitRow]:
    """Rows of a split file, with an optional transform of a regression label.

    ``label_transform`` (applied in this order, every key optional):

    * ``ratio_with: <column>`` - label / (label + other column), e.g. LVU like_ratio =
      like_count / (like_count + dislike_count);
    * ``log: true`` - natural log, e.g. LVU view_count;
    * ``scale: s``, ``offset: o`` - label * s + o (ViS4mer's LVU targets are
      10 x like ratio and log views, each made zero-mean with a fixed offset).
    """
    from vis4mer.splits import read_split_csv

    rows = read_split_csv(path, id_column, label_column)
    if not label_transform:
        return rows
    unknown = sorted(set(label_transform) - {"ratio_with", "log", "scale", "offset"})
    if unknown:
        raise ValueError(f"unknown label_transform keys {unknown}")
    values = np.array([float(row.label) for row in rows])
    if label_transform.get("ratio_with"):
        other = {r.video_id: float(r.label) for r in read_split_csv(path, id_column, label_transform["ratio_with"])}
        totals = values + np.array([other[row.video_id] for row in rows])
        if (totals == 0).any():
            bad = [row.video_id for row, total in zip(rows, totals) if total == 0]
            raise ValueError(f"{path}: {label_column} + {label_transform['ratio_with']} is 0 for {bad[:5]}")
        values = values / totals
    if label_transform.get("log"):
        if (values <= 0).any():
            bad = [row.video_id for row, value in zip(rows, values) if value <= 0]
            raise ValueError(f"{path}: cannot take the log of non-positive labels of {bad[:5]}")
        values = np.log(values)
    values = values * float(label_transform.get("scale", 1.0)) + float(label_transform.get("offset", 0.0))
    return [SplitRow(row.video_id, float(value), row.label_name) for row, value in zip(rows, values)]


# --------------------------------------------------------------------------- torch datasets


class RandomWindowDataset(Dataset):
    """One random window per clip per access: ``(x [window*tokens, dim], y, padded)``.

    Window starts are drawn from ``np.random.default_rng([seed, epoch, index])``, so a
    run is reproducible whatever the number of DataLoader workers; call
    :meth:`set_epoch` before each epoch to draw new windows.
    """

    def __init__(
        self,
        store: FeatureStore,
        rows: Sequence[SplitRow],
        window_frames: int,
        tokens: str,
        task_type: str,
        seed: int = 0,
    ):
        missing = [row.video_id for row in rows if row.video_id not in store]
        if missing:
            raise ValueError(f"{len(missing)} rows have no features (first: {missing[:5]}); filter them first")
        tokens_per_frame(store.n_tokens, tokens)  # validates the mode
        self.store, self.rows = store, list(rows)
        self.window_frames, self.tokens, self.task_type, self.seed = window_frames, tokens, task_type, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        row = self.rows[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = random_window_start(self.store.n_frames(row.video_id), self.window_frames, rng)
        frames = self.store.read(row.video_id, start, start + self.window_frames, self.tokens)
        frames, n_valid = pad_window(frames, self.window_frames)
        x = torch.from_numpy(np.ascontiguousarray(flatten_window(frames)))
        return x, label_tensor(row.label, self.task_type), n_valid < self.window_frames


class AllWindowsDataset(Dataset):
    """Every window at a stride of every clip: ``(x [window*tokens, dim], clip_index, padded)``.

    Items are ordered clip by clip, window by window, so consecutive items (one batch)
    mostly come from one video: the video's features are read once and cached.
    """

    def __init__(self, store: FeatureStore, rows: Sequence[SplitRow], window_frames: int, tokens: str, stride_frames: int):
        missing = [row.video_id for row in rows if row.video_id not in store]
        if missing:
            raise ValueError(f"{len(missing)} rows have no features (first: {missing[:5]}); filter them first")
        tokens_per_frame(store.n_tokens, tokens)
        self.store, self.rows = store, list(rows)
        self.window_frames, self.tokens = window_frames, tokens
        self.items = [
            (clip, start)
            for clip, row in enumerate(self.rows)
            for start in window_starts(store.n_frames(row.video_id), window_frames, stride_frames)
        ]
        self._cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _video(self, clip: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != clip:
            self._cache = (clip, self.store.read(self.rows[clip].video_id, tokens=self.tokens))
        return self._cache[1]

    def __getitem__(self, index: int):
        clip, start = self.items[index]
        frames, n_valid = pad_window(self._video(clip)[start : start + self.window_frames], self.window_frames)
        x = torch.from_numpy(np.ascontiguousarray(flatten_window(frames)))
        return x, clip, n_valid < self.window_frames


def resolve_videos(video_ids: Iterable[str], video_dir, extensions: Sequence[str]) -> dict[str, Path]:
    """``{video_id: <video_dir>/<video_id>.<ext>}``, the first extension that exists.

    An id with no file maps to the path with the first extension, which does not
    exist: the frames stage records it as skipped instead of failing the shard.
    """
    video_dir = Path(video_dir)
    available: dict[str, Path] = {}
    if video_dir.is_dir():
        for entry in os.scandir(video_dir):
            stem, dot, ext = entry.name.rpartition(".")
            if dot and ext in extensions:
                known = available.get(stem)
                if known is None or extensions.index(ext) < extensions.index(known.suffix[1:]):
                    available[stem] = Path(entry.path)
    return {vid: available.get(vid, video_dir / f"{vid}.{extensions[0]}") for vid in video_ids}
