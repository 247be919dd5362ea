"""Per-video features of a dataset, read from its HDF5 feature shards (vis4mer.shards)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np

from vis4mer.shards import VIDEOS_GROUP, nonfinite_problem, open_shard
from vis4mer.sources.splits import SplitRow

TOKEN_MODES = ("all", "cls")  # every token of a frame, or only the class token (token 0)
# Per-video attrs that describe one video, not the feature extractor.
_PER_VIDEO_ATTRS = {"n_frames", "source_video", "status", "message"}
# Shard-file attrs that describe one shard, not the dataset's features.
_SHARD_ONLY_ATTRS = {"manifest", "complete", "kind", "frames_shard"}



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
    exposed as :attr:`attrs`, the stored dtype (float16 from the features stages) as :attr:`dtype`.

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
                        shape, self.dtype = tuple(dataset.shape[1:]), dataset.dtype
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

    def read(self, video_id: str, start: int = 0, stop: int | None = None, tokens: str = "all", dtype=np.float32) -> np.ndarray:
        """``[frames, tokens, dim]`` for frames ``start:stop`` of the video, as `dtype` (None: as stored)."""
        entry = self._entries[video_id]
        dataset = self._handle(entry.shard)[VIDEOS_GROUP][video_id]
        if tokens not in TOKEN_MODES:
            raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")
        array = np.asarray(dataset[start:stop, :1] if tokens == "cls" else dataset[start:stop], dtype=dtype)
        self._check_finite(video_id, array, f"frames {start}:{stop}")
        return array

    def read_into(self, video_id: str, out: np.ndarray, tokens: str = "all") -> None:
        """Every frame of the video into `out` (``[frames, tokens, dim]``, e.g. :attr:`dtype`:
        no conversion), in one read (the shards' datasets are contiguous, vis4mer.shards)."""
        entry = self._entries[video_id]
        if tokens not in TOKEN_MODES:
            raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")
        dataset = self._handle(entry.shard)[VIDEOS_GROUP][video_id]
        dataset.read_direct(out, np.s_[:, :1] if tokens == "cls" else np.s_[:])
        self._check_finite(video_id, out, "all frames")

    def _check_finite(self, video_id: str, array: np.ndarray, frames: str) -> None:
        if problem := nonfinite_problem(array):  # a shard written before the features stage checked
            raise ValueError(
                f"{self.paths[self._entries[video_id].shard]}: videos/{video_id}, {frames}: {problem}; "
                f"re-extract the shard (delete it and re-run) or drop the video from the split files"
            )

    def read_frames(self, video_id: str, indices, tokens: str = "all", dtype=np.float32) -> np.ndarray:
        """``[len(indices), tokens, dim]`` as `dtype` (None: as stored): the frames at `indices` of
        the video, in that order (repeats allowed); each distinct frame is read once."""
        entry = self._entries[video_id]
        if tokens not in TOKEN_MODES:
            raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")
        unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
        if len(unique) and not 0 <= unique[0] <= unique[-1] < entry.n_frames:
            raise IndexError(f"frames {unique[0]}..{unique[-1]} of video {video_id!r}, which has {entry.n_frames}")
        dataset = self._handle(entry.shard)[VIDEOS_GROUP][video_id]
        array = dataset[unique.tolist(), :1] if tokens == "cls" else dataset[unique.tolist()]
        return np.asarray(array, dtype=dtype)[inverse]

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
