"""Clip windows over per-frame features stored in HDF5 feature shards.

ViS4mer sees a fixed number of consecutive frames at a time (the *window*, 60 frames
= 60 s at 1 fps in the paper). Every frame contributes its tokens (all ViT tokens,
or only the class token), and the window's tokens are flattened, frame after frame,
into one sequence ``[window_frames * tokens, dim]``: the S4 layers run along that
sequence.

Training draws one clip per item, in one of two ways (``clip_frames``):

* ``window``: a window of consecutive frames, its start uniform over every position where a
  full window fits (:func:`random_window_start`);
* ``spread``: the reference code's Breakfast/COIN clip, ``window_frames`` frames (Video Swin
  segments) drawn at random over the whole video and sorted in time, each repeated when the
  video has fewer (:func:`spread_indices`); never padded.

An epoch is (``epoch_draws``) every training video once (``videos``), or as many draws with
replacement as there are videos, each video with a probability proportional to the number of
windows it has (``windows``, :func:`draw_epoch`): the reference code's LVU epoch, a uniform
draw over all (video, window) pairs. Evaluation slides the window over the whole video at a
stride (:func:`window_starts`) and the per-window outputs are combined into one video-level
prediction (see :mod:`vis4mer.evaluation`).

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

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vis4mer.feature_store import TOKEN_MODES, FeatureStore
from vis4mer.labels import label_tensor
from vis4mer.sources.splits import SplitRow

EPOCH_DRAWS = ("videos", "windows")  # what an epoch is (module doc)
CLIP_FRAMES = ("window", "spread")  # which frames a training clip has (module doc)

# --------------------------------------------------------------------------- windows


def random_window_start(n_frames: int, window_frames: int, rng: np.random.Generator) -> int:
    """Uniform start among all positions where a full window fits; 0 for short videos."""
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {n_frames}")
    return int(rng.integers(0, max(0, n_frames - window_frames) + 1))


def n_windows(n_frames: int, window_frames: int) -> int:
    """The windows of a video at stride 1: max(1, n_frames - window_frames + 1).

    For LVU features of ``duration + 1`` frames and 60-frame windows that is duration - 58;
    the reference code counts duration - 59 spans (starts 0 .. duration - 60).
    """
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {n_frames}")
    return max(1, n_frames - window_frames + 1)


def draw_epoch(windows_per_video: Sequence[int], epoch_draws: str, rng: np.random.Generator) -> np.ndarray:
    """The training rows of one epoch, as indices (module doc).

    ``videos``: every row once, in order (the loader shuffles them). ``windows``: as many
    draws with replacement, row i with probability windows_per_video[i] / their sum.
    """
    if epoch_draws == "videos":
        return np.arange(len(windows_per_video))
    if epoch_draws == "windows":
        weights = np.asarray(windows_per_video, dtype=np.float64)
        return rng.choice(len(weights), size=len(weights), replace=True, p=weights / weights.sum())
    raise ValueError(f"epoch_draws must be one of {EPOCH_DRAWS}, got {epoch_draws!r}")


def spread_indices(n_frames: int, window_frames: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [window_frames] frame indices of a ``spread`` clip (the reference code's
    Breakfast/COIN training clip): distinct frames drawn uniformly and sorted when the video has
    more than `window_frames`; every frame when it has as many; floor(i * n / window_frames)
    (each frame repeated, in order) when it has fewer."""
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {n_frames}")
    if n_frames > window_frames:
        return np.sort(rng.choice(n_frames, size=window_frames, replace=False)).astype(np.int64)
    return np.arange(window_frames, dtype=np.int64) * n_frames // window_frames


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


# --------------------------------------------------------------------------- torch datasets


class RandomWindowDataset(Dataset):
    """One random clip per item: ``(x [window*tokens, dim], y, padded)``.

    An epoch has one item per training row; item i is the i-th draw of the epoch
    (:func:`draw_epoch` with `epoch_draws`) and its clip (`clip_frames`, module doc) comes from
    ``np.random.default_rng([seed, epoch, i])``, the draws themselves from
    ``np.random.default_rng([seed, epoch])``: a run is reproducible whatever the number of
    DataLoader workers or processes. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        store: FeatureStore,
        rows: Sequence[SplitRow],
        window_frames: int,
        tokens: str,
        task_type: str,
        seed: int = 0,
        epoch_draws: str = "videos",
        clip_frames: str = "window",
    ):
        missing = [row.video_id for row in rows if row.video_id not in store]
        if missing:
            raise ValueError(f"{len(missing)} rows have no features (first: {missing[:5]}); filter them first")
        tokens_per_frame(store.n_tokens, tokens)  # validates the mode
        if epoch_draws not in EPOCH_DRAWS or clip_frames not in CLIP_FRAMES:
            raise ValueError(f"epoch_draws must be one of {EPOCH_DRAWS} and clip_frames one of {CLIP_FRAMES}, "
                             f"got {epoch_draws!r} and {clip_frames!r}")
        self.store, self.rows = store, list(rows)
        self.window_frames, self.tokens, self.task_type, self.seed = window_frames, tokens, task_type, seed
        self.epoch_draws, self.clip_frames = epoch_draws, clip_frames
        self.windows_per_video = [n_windows(store.n_frames(row.video_id), window_frames) for row in self.rows]
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.draws = draw_epoch(self.windows_per_video, self.epoch_draws, np.random.default_rng([self.seed, epoch]))

    def __len__(self) -> int:
        return len(self.rows)

    def clip(self, index: int) -> tuple[SplitRow, slice | np.ndarray]:
        """The row of item `index` and its clip's frames: a slice (``window``, its stop may pass
        the video's end) or frame indices (``spread``)."""
        row = self.rows[self.draws[index]]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n_frames = self.store.n_frames(row.video_id)
        if self.clip_frames == "spread":
            return row, spread_indices(n_frames, self.window_frames, rng)
        start = random_window_start(n_frames, self.window_frames, rng)
        return row, slice(start, start + self.window_frames)

    def __getitem__(self, index: int):
        row, clip = self.clip(index)
        if isinstance(clip, slice):
            frames = self.store.read(row.video_id, clip.start, clip.stop, self.tokens)
        else:
            frames = self.store.read_frames(row.video_id, clip, self.tokens)
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
