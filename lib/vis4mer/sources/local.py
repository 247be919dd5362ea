"""Local datasets: videos in a folder, split files in the LVU layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence


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
