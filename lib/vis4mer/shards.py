"""HDF5 shards: the one storage format of the frames and the features stages, and the
plan of which video ids each shard holds (:class:`ShardPlan`).

Layout of a shard file:

    /videos/<video_id>        one dataset per decoded video, with its own attrs
                              (frames: uint8 [T, size, size, 3];
                               features: float16 [T, tokens, dim])
    attrs["kind"]             "frames" | "features" (whatever the writer was given)
    attrs[...]                stage-wide attrs passed to ShardWriter
    attrs["manifest"]         JSON {video_id: {"status": "ok"|"skipped", "message": str, ...}}
    attrs["complete"]         True; written last, after everything else

A shard is written to ``<name>.tmp-<pid>`` next to the target and renamed onto it
only after a clean exit, so a crash leaves either no target or the previous one; the
temporary files of the same shard left by processes that no longer run are removed
first, and each array is written only where the free space allows it (vis4mer.atomic:
``No space left on <dir>: need X, have Y``, the temporary file removed).
A file without ``complete`` (copied mid-write, or written by another tool) is
refused by :func:`open_shard`.

Compression: none. Measured on the 120-video demo (2-core CPU, h5py 3.16),
writing every video of a shard (features: vit_tiny at 64 px, random weights),
uncompressed vs lzf vs gzip level 1:

    frames   uint8 [T, 64, 64, 3]   65.8 MB: none 0.02 s | lzf 0.84 s, 59.1 MB | gzip 1.30 s, 43.2 MB
    features fp16 [T, 17, 192]      35.0 MB: none 0.04 s | lzf 0.31 s, 35.8 MB | gzip 0.59 s, 32.8 MB

lzf saves ~10% on frames and nothing on fp16 tokens (whose low mantissa bits
are noise) while making writes 10-40x slower and reads slower too; gzip costs
more still. Shards stay contiguous and uncompressed.

Reads: in a contiguous dataset the frames of a video lie back to back, so a training window
(consecutive frames, all tokens) and a whole video (evaluation, the feature cache) are one
read each of exactly their bytes (tests/test_shards.py counts them); chunking by frame would
make a 60-frame window 60 reads. ``tokens: cls`` reads one strided piece per frame.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vis4mer import atomic

VIDEOS_GROUP = "videos"


class IncompleteShardError(RuntimeError):
    """The shard file is half-written or not an HDF5 shard; it must be rebuilt."""


def shard_groups(video_ids, shard_size: int) -> list[list[str]]:
    """Sorted, de-duplicated ids cut into consecutive chunks of at most `shard_size`."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ids = sorted(set(video_ids))
    return [ids[start : start + shard_size] for start in range(0, len(ids), shard_size)]


@dataclass(frozen=True)
class ShardPlan:
    """Which video ids each frames/features shard holds, and each download shard.

    Both cut the same sorted ids (:func:`shard_groups`), into chunks of `shard_size` and of
    `download_shard_size`; shard i is chunk i. Built once per dataset from its source's ids
    and passed to the stages, which never re-derive it. `dataset` names it in errors.
    """

    dataset: str
    shard_size: int
    shards: tuple[tuple[str, ...], ...]
    download_shard_size: int | None = None  # None: no download stage
    download_shards: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(cls, dataset: str, video_ids, shard_size: int, download_shard_size: int | None = None) -> ShardPlan:
        shards = tuple(map(tuple, shard_groups(video_ids, shard_size)))
        downloads = tuple(map(tuple, shard_groups(video_ids, download_shard_size))) if download_shard_size else ()
        return cls(dataset, shard_size, shards, download_shard_size, downloads)

    def __len__(self) -> int:
        return len(self.shards)

    def names(self) -> list[str]:
        """The shards' {shard} wildcard values, 0000, 0001, ..."""
        return [f"{index:04d}" for index in range(len(self.shards))]

    def shard(self, index: int) -> tuple[str, ...]:
        """The ids of frames/features shard `index`."""
        return self._chunk(self.shards, index, "")

    def download_shard(self, index: int) -> tuple[str, ...]:
        """The ids of download shard `index`."""
        return self._chunk(self.download_shards, index, "download ")

    def downloads_of(self, index: int) -> range:
        """The download shards holding the ids of frames/features shard `index`."""
        if self.download_shard_size is None:
            raise ValueError(f"dataset {self.dataset!r} has no download stage")
        first = index * self.shard_size
        last = first + len(self.shard(index)) - 1
        return range(first // self.download_shard_size, last // self.download_shard_size + 1)

    def _chunk(self, chunks, index: int, kind: str) -> tuple[str, ...]:
        if not 0 <= index < len(chunks):
            raise IndexError(f"dataset {self.dataset!r} has {len(chunks)} {kind}shards, not shard {index:04d}")
        return chunks[index]


def nonfinite_problem(array: np.ndarray) -> str | None:
    """Why features `array` ([frames, ...]) must not be used, or None: it holds NaN or
    infinite values (one would stop every training and evaluation that reads it)."""
    if _all_finite(array):
        return None
    finite = np.isfinite(array)
    bad_frames = np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1))
    return (
        f"non-finite features: {finite.size - int(finite.sum())} NaN or infinite values "
        f"in {len(bad_frames)} of {len(array)} frames (first: frame {int(bad_frames[0])})"
    )


def _all_finite(array: np.ndarray) -> bool:
    """np.isfinite(array).all(), for float16 from the exponent bits (all ones: inf or NaN), which
    is ~5x faster than NumPy's float16 isfinite (24 MB: 8 ms instead of 41 ms on this 2-core CPU)."""
    if array.dtype == np.float16:
        return not (np.bitwise_and(array.view(np.uint16), 0x7C00) == 0x7C00).any()
    return bool(np.isfinite(array).all())


def _check_video_id(video_id: str) -> None:
    if not video_id or "/" in video_id or video_id in {".", ".."}:
        raise ValueError(f"video id {video_id!r} cannot name an HDF5 dataset")


class ShardWriter:
    """Write one shard atomically.

        with ShardWriter(path, "frames", attrs={"fps": 1.0}) as shard:
            shard.add("vid0", frames, n_frames=len(frames))
            shard.skip("vid1", "decord: cannot open file", source_video="...")

    On an exception inside the block the temporary file is removed and the
    target is left as it was.
    """

    def __init__(self, path, kind: str, attrs: dict[str, Any] | None = None):
        self.path = Path(path)
        self.kind = kind
        self.attrs = dict(attrs or {})
        self.tmp_path = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self.manifest: dict[str, dict[str, Any]] = {}
        self._file: h5py.File | None = None

    def __enter__(self) -> ShardWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.remove_stale_temporaries(self.path)
        self._file = h5py.File(self.tmp_path, "w")
        self._file.attrs["kind"] = self.kind
        for key, value in self.attrs.items():
            self._file.attrs[key] = value
        self._videos = self._file.create_group(VIDEOS_GROUP)
        return self

    def _record(self, video_id: str, entry: dict[str, Any]) -> None:
        _check_video_id(video_id)
        if video_id in self.manifest:
            raise ValueError(f"video {video_id!r} was already written to {self.path}")
        self.manifest[video_id] = entry

    def add(self, video_id: str, array: np.ndarray, **attrs: Any) -> None:
        """Store `array` as dataset videos/<video_id> with `attrs` on it (NoSpaceError first
        when its folder has not the space for it: HDF5 would crash on a full disk)."""
        atomic.check_free_space(self.tmp_path, array.nbytes)
        self._record(video_id, {"status": "ok", "message": "", **_jsonable(attrs)})
        dataset = self._videos.create_dataset(video_id, data=array)
        for key, value in attrs.items():
            dataset.attrs[key] = value

    def skip(self, video_id: str, message: str, **info: Any) -> None:
        """Record that `video_id` has no data, and why."""
        self._record(video_id, {"status": "skipped", "message": message, **_jsonable(info)})

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._file.close()
            self.tmp_path.unlink(missing_ok=True)
            return
        try:
            self._file.attrs["manifest"] = json.dumps(self.manifest, sort_keys=True)
            self._file.attrs["complete"] = True
            self._file.close()
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self._file.close()
            self.tmp_path.unlink(missing_ok=True)
            raise


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    """NumPy scalars (from shapes, attrs) become plain Python values for JSON."""
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in info.items()}


def open_shard(path) -> h5py.File:
    """Open a complete shard read-only; the caller closes it (or uses `with`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"shard {path} does not exist")
    rebuild = f"delete {path} and rebuild it (re-run the stage that writes it)"
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise IncompleteShardError(f"{path} is not a readable HDF5 shard ({error}); {rebuild}") from error
    if not handle.attrs.get("complete", False):
        handle.close()
        raise IncompleteShardError(f"{path} is incomplete (no 'complete' attribute: half-written); {rebuild}")
    return handle


def read_manifest(path) -> dict[str, dict[str, Any]]:
    """{video_id: {"status": "ok"|"skipped", "message": str, ...}} of a complete shard."""
    with open_shard(path) as handle:
        return json.loads(handle.attrs["manifest"])


def is_complete(path) -> bool:
    """True when `path` is a complete shard (exists, is HDF5, has complete=True)."""
    try:
        open_shard(path).close()
    except (OSError, IncompleteShardError):
        return False
    return True
