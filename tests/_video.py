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
