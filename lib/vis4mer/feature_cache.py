"""Where a run's training windows come from (config ``runtime.feature_cache``), and the batches
assembled from them.

``none`` reads every training window from the HDF5 shards, in their dtype (:class:`WindowItems`;
DataLoader workers may do it). ``ram`` and ``gpu`` load the features of the run's training videos
once, at the start of the run, in the shards' dtype (float16) and only the tokens the run uses
(``tokens: cls`` keeps one of 197), into host memory (pinned when the run's device is CUDA, so
the batches are copied to the device by DMA) or into the device's memory. A window is then a
view of that memory, and a batch is one copy of each window into the batch (with the float16 ->
float32 conversion on the run's device): no file reads, no per-window allocations.

The windows are the same as ``none``'s (same draws, same values, zero padding at the end);
only where they come from differs, so the setting is speed only and never re-runs a job.

Before loading, the size is computed from the shards (frames x tokens x dim x bytes per value
of each training video) and compared with the free memory (host: MemAvailable in
/proc/meminfo, times the number of processes of the run on the machine, each holding a copy;
device: torch.cuda.mem_get_info), keeping a fifth of the total for the rest of the run; a
cache that does not fit is refused (:class:`FeatureCacheError`) before anything is loaded.

Either way a batch is float32 windows, the same as the dataset's items
(:class:`vis4mer.windows.RandomWindowDataset`) collated; it is built by :class:`WindowBatches`,
which converts each window to float32 while copying it into the batch. Host batches reuse
their memory (:class:`_ReusedMemory`): a fresh 200 MB tensor per batch costs more in page
faults than the copy into it (torch.stack of four 48 MB windows took 0.21 s on this 2-core
CPU, a float16 -> float32 copy of one window into memory already touched 6 ms), as did the
float32 copy of each window that the dataset's items make (57 ms a window). Together: the
uncached loader went from 484 to 1115 MB/s here (bench/bench_input.py's layout, best of three
epochs, side by side).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import weakref
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info
from tqdm.auto import tqdm

from vis4mer.feature_store import FeatureStore
from vis4mer.labels import label_tensor
from vis4mer.windows import RandomWindowDataset, tokens_per_frame

logger = logging.getLogger("vis4mer.feature_cache")

FEATURE_CACHES = ("none", "ram", "gpu")
KEY = "runtime.feature_cache"
RESERVED_FRACTION = 0.2  # of the total memory, left for everything else the run needs


class FeatureCacheError(RuntimeError):
    """The feature cache asked for cannot be used here (no CUDA device, or too little memory)."""


# --------------------------------------------------------------------------- sizes


def cache_bytes(store: FeatureStore, video_ids: Sequence[str], tokens: str) -> int:
    """Bytes the features of `video_ids` take in memory in the shards' dtype, from the shards' shapes."""
    per_frame = tokens_per_frame(store.n_tokens, tokens) * store.dim * store.dtype.itemsize
    return sum(store.n_frames(video_id) for video_id in set(video_ids)) * per_frame


def host_memory() -> tuple[int, int]:
    """(available, total) bytes of host memory: MemAvailable and MemTotal of /proc/meminfo."""
    values = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            values[name] = int(rest.split()[0]) * 1024
    return values["MemAvailable"], values["MemTotal"]


def device_memory(device: torch.device) -> tuple[int, int]:
    """(free, total) bytes of a CUDA device."""
    return torch.cuda.mem_get_info(device)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def check_fits(where: str, needed: int, available: int, total: int, what: str, memory: str, copies: int = 1) -> None:
    """Refuse (FeatureCacheError naming the key and the sizes) a cache of `needed` bytes, held
    `copies` times, when it does not fit in `available` less RESERVED_FRACTION of `total`."""
    usable = available - RESERVED_FRACTION * total
    if needed * copies <= usable:
        return
    held = f"{copies} copies (one per process of the run) of " if copies > 1 else ""
    raise FeatureCacheError(
        f"{KEY}: {where} does not fit: {held}{what} take {_gib(needed * copies)}, but {memory} has "
        f"{_gib(available)} free of {_gib(total)}, less {RESERVED_FRACTION:.0%} of the total kept for the rest "
        f"of the run = {_gib(max(usable, 0))} usable. Set {KEY}: none (read the windows from the shards)"
        + (", or gpu on a device with enough memory" if where == "ram" else ", or ram")
        + ", or train with training.tokens: cls (one token per frame)"
    )


# --------------------------------------------------------------------------- the cache


class FeatureCache:
    """The features of some videos of a :class:`FeatureStore`, ``[frames, tokens, dim]`` each, all
    in one block of memory on `device` (views of it per video)."""

    def __init__(self, videos: dict[str, torch.Tensor], tokens: str, dim: int):
        self.videos, self.tokens, self.dim = videos, tokens, dim

    @classmethod
    def load(
        cls,
        store: FeatureStore,
        video_ids: Sequence[str],
        tokens: str,
        where: str,
        device: torch.device,
        progress: bool = True,
        copies: int = 1,
        description: str = "feature cache",
    ) -> FeatureCache:
        """Load the features of `video_ids` (`tokens` of each frame) into ``where`` (``ram``:
        host memory, pinned when `device` is CUDA; ``gpu``: `device`), after checking that they fit
        (module doc; `copies`: processes on this machine that each load one)."""
        device = torch.device(device)
        ids = sorted(set(video_ids))
        needed = cache_bytes(store, ids, tokens)
        what = f"the features of {len(ids)} training videos (tokens {tokens}, {store.dtype})"
        if where == "gpu":
            if device.type != "cuda":
                raise FeatureCacheError(
                    f"{KEY}: gpu needs the run on a CUDA device, but it runs on {device} "
                    f"(runtime.device; torch.cuda.is_available() is {torch.cuda.is_available()}); use ram or none"
                )
            check_fits(where, needed, *device_memory(device), what, f"device {device}")
            target = device
        elif where == "ram":
            check_fits(where, needed, *host_memory(), what, "this machine's RAM (MemAvailable)", copies)
            target = torch.device("cpu")
        else:
            raise ValueError(f"{KEY} must be one of {FEATURE_CACHES}, got {where!r}")

        n_tokens, dim = tokens_per_frame(store.n_tokens, tokens), store.dim
        dtype = torch.from_numpy(np.empty(0, store.dtype)).dtype
        block = torch.empty(needed // store.dtype.itemsize, dtype=dtype, device=target)
        if where == "ram" and device.type == "cuda" and block.numel():
            _pin(block)
        staging = None  # gpu: one host buffer the size of the longest video
        if where == "gpu":
            staging = np.empty(max(store.n_frames(v) for v in ids) * n_tokens * dim, dtype=store.dtype) if ids else None
        videos, offset = {}, 0
        bar = tqdm(total=needed, unit="B", unit_scale=True, desc=f"{description} ({where})", disable=not progress, mininterval=2.0)
        for video_id in ids:
            shape = (store.n_frames(video_id), n_tokens, dim)
            size = math.prod(shape)
            videos[video_id] = view = block[offset : offset + size].view(shape)
            if staging is None:
                store.read_into(video_id, view.numpy(), tokens)
            else:
                host = staging[:size].reshape(shape)
                store.read_into(video_id, host, tokens)
                view.copy_(torch.from_numpy(host))
            offset += size
            bar.update(size * store.dtype.itemsize)
        bar.close()
        logger.info("%s: %s of features of %d videos in %s%s", KEY, _gib(needed), len(ids),
                    "device memory" if where == "gpu" else "RAM", " (pinned)" if where == "ram" and device.type == "cuda" else "")
        return cls(videos, tokens, dim)

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.videos.values())).dtype if self.videos else torch.float16

    def frames(self, video_id: str, frames: slice | np.ndarray) -> torch.Tensor:
        """``[t, tokens, dim]`` of the video: a view for a slice (clipped at the video's end), a
        gathered copy for frame indices."""
        video = self.videos[video_id]
        if isinstance(frames, slice):
            return video[frames]
        return video[torch.as_tensor(frames, device=video.device)]


def _pin(block: torch.Tensor) -> None:
    """Page-lock `block` in place (cudaHostRegister): unlike torch's pinned allocator, which
    rounds each allocation up to a power of two, it pins exactly the cache's bytes."""
    cudart = torch.cuda.cudart()
    error = cudart.cudaHostRegister(block.data_ptr(), block.numel() * block.element_size(), 0)
    if int(error) != 0:
        logger.warning("%s: ram: could not pin the cache (cudaHostRegister error %s); copies to the device are slower", KEY, error)
        return
    weakref.finalize(block, cudart.cudaHostUnregister, block.data_ptr())  # before the memory is freed


# --------------------------------------------------------------------------- windows and batches


class WindowItems(Dataset):
    """The items of `windows` (a :class:`RandomWindowDataset`: same clips, same order) in the
    stored dtype, from `cache` when given, else read from the shards: ``(x [t * tokens, dim], y,
    padded)``, ``t`` short of the window for short videos (:class:`WindowBatches` converts to
    float32 and pads)."""

    def __init__(self, windows: RandomWindowDataset, cache: FeatureCache | None = None):
        if cache is not None and cache.tokens != windows.tokens:
            raise ValueError(f"the cache holds tokens {cache.tokens!r}, the windows need {windows.tokens!r}")
        self.windows, self.cache = windows, cache

    def __len__(self) -> int:
        return len(self.windows)

    def _frames(self, video_id: str, clip: slice | np.ndarray) -> torch.Tensor:
        if self.cache is not None:
            return self.cache.frames(video_id, clip)
        store, tokens = self.windows.store, self.windows.tokens
        if isinstance(clip, slice):
            return torch.from_numpy(store.read(video_id, clip.start, clip.stop, tokens, dtype=None))
        return torch.from_numpy(store.read_frames(video_id, clip, tokens, dtype=None))

    def __getitem__(self, index: int):
        row, clip = self.windows.clip(index)
        frames = self._frames(row.video_id, clip)
        x = frames.reshape(-1, frames.shape[-1])
        return x, label_tensor(row.label, self.windows.task_type), frames.shape[0] < self.windows.window_frames


class WindowBatches:
    """collate_fn of :class:`WindowItems` (and of vis4mer.distributed.WeightedItems wrapping
    them): ``(x [batch, length, dim] float32 on device, *the rest collated)``, each
    window copied once into ``x`` (zero-padded at the end), a host ``x`` in reused memory."""

    def __init__(self, length: int, dim: int, device: torch.device):
        self.length, self.dim, self.device = length, dim, torch.device(device)
        self._memory = _ReusedMemory()

    def __call__(self, items):
        windows = [item[0] for item in items]
        shape = (len(windows), self.length, self.dim)
        source = windows[0]
        # copy in the cache's dtype to the device, convert there; on one device convert while copying
        staged = source.device.type != self.device.type and source.dtype != torch.float32
        if self.device.type == "cpu" and get_worker_info() is not None:  # a DataLoader worker sends it back
            x = torch.empty(shape, dtype=torch.float32).share_memory_()  # through shared memory: allocate it there
        elif self.device.type == "cpu":
            x = self._memory.empty(shape, torch.float32)
        else:
            x = torch.empty(shape, dtype=source.dtype if staged else torch.float32, device=self.device)
        for row, window in enumerate(windows):
            n = window.shape[0]
            x[row, :n].copy_(window, non_blocking=True)
            if n < self.length:
                x[row, n:].zero_()
        if staged:
            x = x.float()
        return (x, *default_collate([item[1:] for item in items]))


class _ReusedMemory:
    """Host memory for batches, each block reused once no tensor refers to it any more.

    A block is a NumPy array; a tensor made from it (torch.from_numpy), and every view of that
    tensor, holds a reference to the array until the last of them is gone, so the array's
    reference count says whether a batch handed out earlier is still alive (e.g. kept by the
    caller): a live block is never reused, a new one is made instead (at most `keep` are kept).
    """

    def __init__(self, keep: int = 3):
        self.keep = keep
        self._blocks: list[np.ndarray] = []
        self._free_refs: list[int] = []  # each block's reference count when nothing else holds it

    def _refs(self, index: int) -> int:
        return sys.getrefcount(self._blocks[index])

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        size = math.prod(shape)
        for index in range(len(self._blocks)):  # no name bound to a block here: it would count
            if self._refs(index) == self._free_refs[index] and (self._blocks[index].size, self._blocks[index].dtype) == (size, np_dtype):
                return torch.from_numpy(self._blocks[index]).view(shape)
        if len(self._blocks) >= self.keep:
            return torch.from_numpy(np.empty(size, dtype=np_dtype)).view(shape)
        self._blocks.append(np.empty(size, dtype=np_dtype))
        self._free_refs.append(self._refs(-1))
        return torch.from_numpy(self._blocks[-1]).view(shape)


def processes_on_this_machine() -> int:
    """Training processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
