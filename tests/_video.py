"""The one H.264 writer the tests share: uint8 frames [T, H, W, 3] -> .mp4 through PyAV."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: np.ndarray, fps: float = 2.0, options: dict[str, str] | None = None) -> Path:
    """Encode `frames` (T may be 0: a video stream without frames); `options` e.g. {"qp": "0"} for lossless."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if options:
            stream.options = options
        container.start_encoding()  # writes the header even when no frame follows
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def grey_frames(levels, width: int, height: int) -> np.ndarray:
    """uint8 [T, height, width, 3], frame k a flat grey of levels[k]."""
    levels = np.asarray(levels, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (len(levels), height, width, 3)).copy()


def write_vfr_video(path: Path, parts, width: int = 32, height: int = 32) -> Path:
    """A variable-frame-rate H.264 .mp4, lossless: `parts` [(fps, seconds), ...] one after the
    other (e.g. 30 fps for 5 s, then 3 fps for 5 s), each frame's presentation time set; the
    frame shown at t is a flat grey of level 10 * floor(t) + 40 (which second it shows)."""
    times, offset = [], 0.0
    for fps, seconds in parts:
        times += [offset + k / fps for k in range(int(round(fps * seconds)))]
        offset += seconds
    time_base = Fraction(1, 90000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(fps for fps, _ in parts))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qp": "0"}
        stream.codec_context.time_base = time_base
        for t, array in zip(times, grey_frames([10 * int(t) + 40 for t in times], width, height)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = round(t / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
