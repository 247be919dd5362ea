"""Video decoding, in one place: video files checked, decoded whole or streamed chunk by
chunk at a fixed frame rate, and written as one frames shard (see vis4mer.shards).

Sampling rule: a video of `n` native frames at the average rate `native_fps` lasts
``duration_s = n / native_fps``; it gives ``T = max(1, floor(duration_s * fps))``
frames, taken at t_i = i / fps (i = 0..T-1) (:func:`sample_times`), each being the native
frame shown at t_i: the last one whose presentation time (PTS, from the first frame's) is
<= t_i (:func:`frames_shown_at`). Both decoders go by the PTS - decord by its frame
timestamps, torchcodec by the frame it plays at t_i - so a variable-frame-rate video (a
30 fps part, then a 3 fps part) is sampled over its whole duration; at a constant rate this
is index ``floor(t_i * native_fps)`` (:func:`sample_indices`).

Each frame becomes `size` x `size` in one of two ways (``resize``, RESIZE_MODES):

- ``crop`` (ours): the shorter side resized to `size` (bilinear, antialiased, aspect kept),
  then the centre `size` x `size` square (:func:`resize_and_crop`);
- ``squash`` (the reference code, for ViT and Video Swin alike): the whole frame resized to
  `size` x `size` with OpenCV's ``INTER_AREA``, aspect not kept (:func:`squash`).

The resize is done here, not by the decoder: measured on 640x360 30 fps videos, decord's own
resize (VideoReader width/height) was no faster than decoding full frames and resizing them
here, and torchcodec's Resize/CenterCrop decoder transforms were ~2x slower; one resize also
makes both decoders give the same pixels.

LVU as the reference code sampled it (``spread_seconds``, :func:`spread_indices`): a video
whose clip lasts `d` whole seconds (lvu_durations.csv) gives d + 1 frames, at native indices
int(n / d * i) for i < d and the last frame, spread over the whole file whatever its length.

A video the configured decoder cannot read (decord cannot decode AV1, which YouTube serves;
it also fails on some small rotated videos) is read with the other decoder when that one is
installed (:func:`read_video`): the shard records it (the video's attrs ``decoder`` and
``decoder_fallback``) and the job log says so; when the other is not installed, the message
says which decoder can. A missing, empty or undecodable file is recorded in the shard
manifest with the reason (``ShardWriter.skip``) and the loop goes on with the next video.

Users: the frames stage (:func:`decode_videos_to_shard`), ``vis4mer predict``
(:func:`check_video_file`, :func:`decode_video`, :func:`iter_video_chunks`), the Video Swin
features (:func:`open_video`, :func:`video_file_problem`) and the downloads
(:data:`VIDEO_EXTENSIONS`).

Part of a video: a time range [start_s, end_s) (e.g. COIN's annotated span) and/or
``keep_last_s`` (keep only the last seconds, e.g. LVU clips whose download starts with a
preview) restrict the sampling to that part; sample times are then start_s + i / fps.
The range actually decoded is stored as the attrs ``start_s`` / ``end_s`` of each video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vis4mer._logging import logger
from vis4mer.shards import ShardWriter

DECODERS = ("decord", "torchcodec")
RESIZE_MODES = ("crop", "squash")  # how a frame becomes size x size (module doc)
CHUNK_FRAMES = 32  # frames decoded and resized at a time
# Video containers, in order of preference where one id may have several files (downloads,
# mirrors); a directory given to `vis4mer predict` is searched for them.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp")


class VideoError(Exception):
    """One video cannot be used (missing, empty, not a video, no frames); the others go on."""


def time_range(
    duration_s: float, start_s: float | None = None, end_s: float | None = None, keep_last_s: float | None = None
) -> tuple[float, float]:
    """(start, end) in seconds of the part of a `duration_s`-long video to sample.

    [start_s, end_s) clipped to the video (None: its start / end); `keep_last_s` then moves
    the start to end - keep_last_s when that is later (a video no longer than keep_last_s
    is kept whole). Raises ValueError when nothing of the video is left.
    """
    start = max(0.0, start_s or 0.0)
    end = duration_s if end_s is None else min(float(end_s), duration_s)
    if keep_last_s is not None:
        start = max(start, end - keep_last_s)
    if end <= start:
        raise ValueError(f"range {start_s}-{end_s} s has no frames in a video of {duration_s:.2f} s")
    return start, end


def sample_times(duration_s: float, fps: float, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """float64 [T] times in seconds at `fps` from `start_s` to `end_s` (None: `duration_s`),
    T = max(1, floor((end - start) * fps)) (the rule in the module docstring)."""
    end = duration_s if end_s is None else min(end_s, duration_s)
    n_samples = max(1, math.floor((end - start_s) * fps + 1e-9))
    return start_s + np.arange(n_samples) / fps


PTS_TOLERANCE_S = 1e-4  # a frame whose PTS is this close after t counts as shown at t (float32 timestamps)


def frames_shown_at(timestamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """int64 native frame indices of the frames shown at `times`: the last frame whose
    presentation time (`timestamps`, ascending, seconds from the first frame) is <= t."""
    indices = np.searchsorted(np.asarray(timestamps, dtype=np.float64), np.asarray(times) + PTS_TOLERANCE_S, side="right") - 1
    return np.clip(indices, 0, len(timestamps) - 1).astype(np.int64)


def sample_indices(
    n_native: int, native_fps: float, fps: float, start_s: float = 0.0, end_s: float | None = None
) -> np.ndarray:
    """int64 [T] native frame indices sampled at `fps` from `start_s` to `end_s` (None: the end)
    of a constant-frame-rate video, frame k shown at k / native_fps (rule in the module docstring)."""
    times = sample_times(n_native / native_fps, fps, start_s, end_s)
    return frames_shown_at(np.arange(n_native) / native_fps, times)


def spread_indices(n_native: int, seconds: float) -> np.ndarray:
    """int64 [int(seconds) + 1] native frame indices: int(n_native / d * i) for i < d = int(seconds),
    then the last frame (the reference code's LVU frame times, module doc)."""
    whole = int(seconds)
    if n_native < 1 or whole < 0:
        raise ValueError(f"need n_native >= 1 and seconds >= 0, got {n_native} and {seconds}")
    if whole == 0:
        return np.array([n_native - 1], dtype=np.int64)
    times = (n_native / whole * np.arange(whole)).astype(np.int64)  # float64, as the reference's n / d * i
    return np.append(times, n_native - 1)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the shorter side scaled to `size`, aspect kept."""
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


def resize_and_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 [N, size, size, 3]: shorter side to `size`
    (bilinear, antialiased), then the centre `size` x `size` square."""
    height, width = frames.shape[1:3]
    new_height, new_width = resized_shape(height, width, size)
    if (new_height, new_width) != (height, width):
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # [N, 3, H, W]
        images = F.interpolate(images, size=(new_height, new_width), mode="bilinear", antialias=True)
        frames = images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return np.ascontiguousarray(frames[:, top : top + size, left : left + size])


def squash(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 [N, size, size, 3]: each whole frame resized to `size` x `size`
    with OpenCV's INTER_AREA, aspect not kept (the reference code's preprocessing)."""
    import cv2  # opencv-python (requirements/base.txt); only this resize needs it

    return np.stack([cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA) for frame in frames])


def resize_frames(frames: np.ndarray, size: int, resize: str = "crop") -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 [N, size, size, 3] by `resize` (RESIZE_MODES, module doc)."""
    if resize == "crop":
        return resize_and_crop(frames, size)
    if resize == "squash":
        return squash(frames, size)
    raise ValueError(f"unknown resize {resize!r}; choose one of {', '.join(RESIZE_MODES)}")


def import_decoder(decoder: str) -> None:
    """Import the decoder's module up front: a broken install must fail the stage,
    not be recorded as every video being unreadable."""
    if decoder == "decord":
        import decord  # noqa: F401
    else:
        import torchcodec.decoders  # noqa: F401


def other_decoder(decoder: str) -> str:
    """The decoder that is not `decoder` (DECODERS has two)."""
    return DECODERS[1 - DECODERS.index(decoder)]


def decoder_problem(decoder: str) -> str | None:
    """Why `decoder` cannot be imported here, or None."""
    try:
        import_decoder(decoder)
    except Exception as error:  # ImportError, or torchcodec's RuntimeError without FFmpeg's libraries
        return f"{type(error).__name__}: {error}"
    return None


def _codec(path: Path) -> str | None:
    """The codec of the first video stream (FFmpeg's name, e.g. av1), or None when it cannot be told."""
    try:
        import av

        with av.open(str(path)) as container:
            return container.streams.video[0].codec_context.codec.canonical_name if container.streams.video else None
    except Exception:
        return None


_Result = TypeVar("_Result")


def _with_fallback(path: Path, decoder: str, attempt: Callable[[str], _Result], action: str = "decode") -> tuple[_Result, str, str | None]:
    """(attempt(decoder), decoder, None), or when that raises (attempt(the other), the other,
    why `decoder` failed); a VideoError says why neither read the file, or which decoder can.
    `action` (decode, open) is what the messages say the decoder could not do."""
    try:
        return attempt(decoder), decoder, None
    except Exception as error:  # decord's DECORDError, torchcodec's RuntimeError, ...
        failed = f"{decoder} could not {action} {path}: {type(error).__name__}: {error}"
    other = other_decoder(decoder)
    codec = _codec(path)
    if (problem := decoder_problem(other)) is not None:
        can = f"{codec} video: torchcodec reads it, decord does not" if (codec, other) == ("av1", "torchcodec") else f"{other} may read it"
        raise VideoError(f"{failed}; {can}, but {other} is not installed ({problem}): install it (requirements/base.txt)")
    try:
        result = attempt(other)
    except Exception as error:
        raise VideoError(f"{failed}; {other} could not either: {type(error).__name__}: {error}") from error
    logger.warning("%s%s; read with %s instead", failed, f" ({codec} video)" if codec else "", other)
    return result, other, failed


def _open_decord(path: Path):
    """(read(indices), read_at(times), native_fps, n_native_frames); frames uint8 [N, H, W, 3],
    `times` in seconds from the first frame (mapped to indices by decord's frame timestamps)."""
    import decord

    reader = decord.VideoReader(str(path), num_threads=1)
    n_native = len(reader)
    starts = reader.get_frame_timestamp(np.arange(n_native))[:, 0].astype(np.float64) if n_native else np.zeros(0)
    timestamps = starts - starts[0] if n_native else starts
    read = lambda indices: reader.get_batch(list(indices)).asnumpy()  # noqa: E731
    read_at = lambda times: read(frames_shown_at(timestamps, times).tolist())  # noqa: E731
    return read, read_at, reader.get_avg_fps(), n_native


def _open_torchcodec(path: Path):
    """(read(indices), read_at(times), native_fps, n_native_frames); frames uint8 [N, H, W, 3],
    `times` in seconds from the first frame (the frames torchcodec plays then)."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), dimension_order="NHWC")
    metadata = decoder.metadata
    begin = metadata.begin_stream_seconds or 0.0
    last = (metadata.end_stream_seconds or begin) - PTS_TOLERANCE_S  # torchcodec refuses a time at or after the end

    def read_at(times):
        return decoder.get_frames_played_at(np.minimum(begin + np.asarray(times), last).tolist()).data.numpy()

    read = lambda indices: decoder.get_frames_at(list(indices)).data.numpy()  # noqa: E731
    return read, read_at, metadata.average_fps, metadata.num_frames


_OPEN = {"decord": _open_decord, "torchcodec": _open_torchcodec}


class VideoReader:
    """An opened video file: its native (average) frame rate and frame count, and frames by
    index or by presentation time, resized with :func:`resize_frames`. Decoder errors are
    raised as the decoder's own."""

    def __init__(self, path, decoder: str = "decord"):
        if decoder not in _OPEN:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
        self.path, self.decoder = Path(path), decoder
        self.fallback: str | None = None  # open_video: why the decoder asked for could not open it
        self._read, self._read_at, self.native_fps, self.n_native = _OPEN[decoder](self.path)
        if not self.n_native or not self.native_fps:
            raise ValueError(f"{decoder} reports {self.n_native} frames at {self.native_fps} fps")

    @property
    def duration_s(self) -> float:
        return self.n_native / self.native_fps

    def sample(self, fps: float, start_s=None, end_s=None, keep_last_s=None) -> np.ndarray:
        """Times (s) at `fps` over the part of the video :func:`time_range` selects (:func:`sample_times`)."""
        start, end = time_range(self.duration_s, start_s, end_s, keep_last_s)
        return sample_times(self.duration_s, fps, start, end)

    def read(self, indices, size: int, resize: str = "crop") -> np.ndarray:
        """uint8 [len(indices), size, size, 3]: the frames at native `indices`, resized (:func:`resize_frames`)."""
        return resize_frames(self._read(np.asarray(indices, dtype=np.int64).tolist()), size, resize)

    def read_at(self, times, size: int, resize: str = "crop") -> np.ndarray:
        """uint8 [len(times), size, size, 3]: the frames shown at `times` (s, by PTS), resized."""
        return resize_frames(self._read_at(np.asarray(times, dtype=np.float64)), size, resize)

    def chunks(self, positions, size: int, resize: str = "crop", *, by_index: bool = False) -> Iterator[np.ndarray]:
        """:meth:`read_at` of the times `positions` (or :meth:`read` of indices, `by_index`), CHUNK_FRAMES at a time."""
        read = self.read if by_index else self.read_at
        for start in range(0, len(positions), CHUNK_FRAMES):
            yield read(positions[start : start + CHUNK_FRAMES], size, resize)


@dataclass(frozen=True)
class DecodedVideo:
    """The frames of one video (uint8 [T, size, size, 3]), its native (average) frame rate and
    frame count, the decoder that read it and, when that is not the configured one, why the
    configured one did not (`fallback`)."""

    frames: np.ndarray
    native_fps: float
    n_native: int
    decoder: str
    fallback: str | None = None


def read_video(
    path,
    fps: float,
    size: int,
    decoder: str = "decord",
    start_s: float | None = None,
    end_s: float | None = None,
    keep_last_s: float | None = None,
    *,
    resize: str = "crop",
    spread_seconds: float | None = None,
) -> DecodedVideo:
    """One video, or the part of it selected by `start_s`, `end_s` and `keep_last_s` (see
    :func:`time_range`), decoded with `decoder` or, when it cannot read the file, with the
    other one (module doc; a VideoError when neither does).

    With `spread_seconds` the frames are instead those of :func:`spread_indices` over the
    whole file (the reference code's LVU frame times; no range then). Frames are read and
    resized (`resize`, RESIZE_MODES) CHUNK_FRAMES at a time, so a long high-resolution video
    never sits in memory at full resolution.
    """
    if spread_seconds is not None and (start_s is not None or end_s is not None or keep_last_s is not None):
        raise ValueError("spread_seconds samples the whole file: it takes no start_s, end_s or keep_last_s")

    def decode(name: str) -> tuple[np.ndarray, float, int]:
        video = VideoReader(path, name)
        if spread_seconds is not None:
            chunks = video.chunks(spread_indices(video.n_native, spread_seconds), size, resize, by_index=True)
        else:
            chunks = video.chunks(video.sample(fps, start_s, end_s, keep_last_s), size, resize)
        return np.concatenate(list(chunks)), video.native_fps, video.n_native

    (frames, native_fps, n_native), used, fallback = _with_fallback(Path(path), decoder, decode)
    return DecodedVideo(frames, native_fps, n_native, used, fallback)


def decode_video(path, fps: float, size: int, decoder: str = "decord", *args, **kwargs) -> tuple[np.ndarray, float, int]:
    """(frames, native_fps, n_native_frames) of :func:`read_video` (same arguments)."""
    video = read_video(path, fps, size, decoder, *args, **kwargs)
    return video.frames, video.native_fps, video.n_native


def open_video(path, decoder: str = "decord") -> VideoReader:
    """The :class:`VideoReader` of `path` with `decoder`, or with the other decoder when
    `decoder` cannot open it (its `decoder` and `fallback` say so; module doc)."""
    video, _, fallback = _with_fallback(Path(path), decoder, lambda name: VideoReader(path, name), action="open")
    video.fallback = fallback
    return video


def iter_video_chunks(path, fps: float, size: int, decoder: str = "decord", resize: str = "crop") -> Iterator[np.ndarray]:
    """uint8 ``[<= CHUNK_FRAMES, size, size, 3]`` chunks of a whole video, decoded on demand.

    The frames of :func:`decode_video` (same indices, chunks and resize), never holding
    more than one chunk; the file is opened (:func:`open_video`) at the first ``next()``.
    """
    video = open_video(path, decoder)
    yield from video.chunks(video.sample(fps), size, resize)


def video_file_problem(path, *, by_extension: bool = False) -> str | None:
    """Why `path` cannot be a video, found without decoding it, or None.

    Missing, not a regular file, empty (0 bytes); with `by_extension`, also a name whose
    extension is none of VIDEO_EXTENSIONS (files named by a user; the pipeline's own
    video files may have any name).
    """
    path = Path(path)
    if not path.exists():
        return f"file not found: {path}"
    if not path.is_file():
        return f"not a regular file: {path}"
    if by_extension and path.suffix.lower() not in VIDEO_EXTENSIONS:
        return f"unsupported container {path.suffix or '(no extension)'!r}: {path} (supported: {', '.join(VIDEO_EXTENSIONS)})"
    if path.stat().st_size == 0:
        return f"empty file (0 bytes): {path}"
    return None


def check_video_file(path) -> None:
    """Raise VideoError for a file that cannot be a video, before a decoder sees it: the
    problems of :func:`video_file_problem` (by extension), then an FFmpeg probe (PyAV) that
    decodes the first frame, so that a file that is no video, has no video stream or no
    frames gets its own message."""
    problem = video_file_problem(path, by_extension=True)
    if problem is not None:
        raise VideoError(problem)
    try:
        import av
    except ImportError:  # the decoder's own error will have to do
        return
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
                raise VideoError(f"no video stream in {path} (streams: {kinds}): the file has no frames")
            if next(container.decode(video=0), None) is None:
                raise VideoError(f"no frames in {path}: its video stream is empty")
    except VideoError:
        raise
    except Exception as error:  # av.error.InvalidDataError and friends
        raise VideoError(f"not a readable video container: {path} (FFmpeg: {type(error).__name__}: {error})") from error


def decode_videos_to_shard(
    videos: dict[str, Path],
    out_path,
    fps: float,
    size: int,
    decoder: str = "decord",
    *,
    ranges: dict[str, tuple[float | None, float | None]] | None = None,
    keep_last_s: dict[str, float] | None = None,
    skipped: dict[str, str] | None = None,
    resize: str = "crop",
    spread_seconds: dict[str, float] | None = None,
) -> dict[str, dict]:
    """Decode `videos` ({video_id: path}) into the frames shard `out_path`.

    Dataset per video: uint8 [T, size, size, 3] with attrs fps, n_frames,
    source_video, duration_s (of the whole file), native_fps, start_s, end_s
    (the part decoded) for a video given a range or keep_last_s, spread_seconds for a
    video sampled by spread_seconds, and decoder, decoder_fallback (why `decoder` could not)
    for a video the other decoder read. Returns the shard manifest.

    `ranges` ({video_id: (start_s, end_s)}) and `keep_last_s` ({video_id: seconds})
    restrict listed videos to part of the file (:func:`time_range`); `spread_seconds`
    ({video_id: seconds}) samples listed videos as the reference code sampled LVU
    (:func:`spread_indices`, whole file) instead of at `fps`. `skipped` ({video_id: reason})
    lists ids that have no video file (e.g. unavailable for download): they are recorded as
    skipped with that reason. `resize` (RESIZE_MODES) is recorded as a shard attr.
    """
    if decoder not in _OPEN:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    if overlap := sorted(set(videos) & set(skipped or {})):
        raise ValueError(f"videos {overlap[:5]} are both given and skipped")
    ranges, keep_last_s, spread_seconds = ranges or {}, keep_last_s or {}, spread_seconds or {}
    if both := sorted(set(spread_seconds) & (set(ranges) | set(keep_last_s))):
        raise ValueError(f"videos {both[:5]} are given spread_seconds and a range or keep_last_s: spread_seconds samples the whole file")
    import_decoder(decoder)
    attrs = {"fps": fps, "size": size, "decoder": decoder, "resize": resize}
    with ShardWriter(out_path, "frames", attrs=attrs) as shard:
        for video_id, reason in sorted((skipped or {}).items()):
            logger.warning("skipping video %s: %s", video_id, reason)
            shard.skip(video_id, reason)
        for video_id in tqdm(sorted(videos), desc=f"decode {Path(out_path).name}", unit="video", disable=None):
            path = Path(videos[video_id])
            start_s, end_s = ranges.get(video_id, (None, None))
            partial = video_id in ranges or video_id in keep_last_s
            reason = video_file_problem(path)
            if reason is None:
                try:
                    video = read_video(
                        path, fps, size, decoder, start_s, end_s, keep_last_s.get(video_id),
                        resize=resize, spread_seconds=spread_seconds.get(video_id),
                    )
                    start, end = time_range(video.n_native / video.native_fps, start_s, end_s, keep_last_s.get(video_id))
                except VideoError as error:
                    reason = str(error)
                except Exception as error:  # any other failure skips this one video too
                    reason = f"{decoder} could not decode {path}: {type(error).__name__}: {error}"
            if reason is not None:
                logger.warning("skipping video %s: %s", video_id, reason)
                shard.skip(video_id, reason, source_video=str(path))
                continue
            shard.add(
                video_id,
                video.frames,
                fps=fps,
                n_frames=len(video.frames),
                source_video=str(path),
                duration_s=video.n_native / video.native_fps,
                native_fps=video.native_fps,
                **({"start_s": start, "end_s": end} if partial else {}),
                **({"spread_seconds": float(spread_seconds[video_id])} if video_id in spread_seconds else {}),
                **({"decoder": video.decoder, "decoder_fallback": video.fallback} if video.fallback else {}),
            )
    return shard.manifest
