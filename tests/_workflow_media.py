"""Test media for the dataset workflows (LVU, Breakfast, COIN): generated videos, a local
HTTP server standing in for YouTube, and LVU/Breakfast/COIN files in their release layouts.

The server serves a folder as ``/<name>``; a video that is not there is a 404, which
yt-dlp reports as ``HTTP Error 404`` and vis4mer.download records as unavailable. It
counts requests per file stem, so tests can tell which ids caused network traffic.
"""

from __future__ import annotations

import collections
import http.server
import json
import tarfile
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, seconds: float, fps: int = 4, width: int = 32, height: int = 32, codec: str = "libx264", seed: int = 0) -> Path:
    """A small video (H.264 mp4, or `codec` e.g. mpeg4 in .avi) of random-ish colour blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(int(round(seconds * fps))):
            image = np.repeat(np.repeat(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8), 8, 0), 8, 1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


class VideoServer:
    """A threaded HTTP server on 127.0.0.1 serving `root`; `url_template` has {id}.mp4.

    `failure(video_id, n_request)` may return an HTTP status to answer instead of the file
    (e.g. 500 for a flaky first request); requests per id are counted in `hits`.
    """

    def __init__(self, root: Path, failure=None):
        self.hits: collections.Counter[str] = collections.Counter()
        hits, lock = self.hits, threading.Lock()

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                video_id = Path(self.path.split("?")[0]).name.split(".")[0]
                with lock:
                    hits[video_id] += 1
                    count = hits[video_id]
                status = failure(video_id, count) if failure else None
                if status:
                    self.send_error(status)
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url_template = f"{self.base}/{{id}}.mp4"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# ----------------------------------------------------------------------------- LVU

LVU_GENRE = {  # split -> [(youtube id, class id)]; genre names by class id below
    "train": [("v01", 0), ("v02", 1), ("v03", 2), ("v04", 3), ("v05", 0), ("gone_1", 1)],
    "val": [("v06", 1), ("v07", 2)],
    "test": [("v08", 0), ("v09", 3), ("gone_2", 2)],
}
GENRE_NAMES = ["Comedy", "Action-Crime-Adventure", "Romance", "Thriller-Horror"]
LVU_LIKES = {  # split -> [(youtube id, like_count, dislike_count)]
    "train": [("v01", 900, 100), ("v03", 50, 50), ("v05", 990, 10), ("v10", 700, 300)],
    "val": [("v06", 800, 200), ("v11", 600, 400)],
    "test": [("v08", 950, 50), ("v12", 400, 100), ("gone_2", 10, 10)],
}
LVU_GONE = {"gone_1", "gone_2"}
LVU_SECONDS = 8  # every clip's duration in lvu_durations.csv
LVU_PREVIEW = {"v01": 4}  # extra seconds at the start of the downloadable file (a "preview")


def lvu_ids() -> list[str]:
    ids = {vid for rows in LVU_GENRE.values() for vid, _ in rows} | {vid for rows in LVU_LIKES.values() for vid, *_ in rows}
    return sorted(ids)


def write_lvu_split_dir(root: Path) -> Path:
    """`root`/lvu_1.0 with genre and like_ratio split files and lvu_durations.csv."""
    split_dir = root / "lvu_1.0"
    for split, rows in LVU_GENRE.items():
        lines = ["class_id class_name youtube_id imdb_id"] + [f"{c} {GENRE_NAMES[c]} {vid} tt{i:07d}" for i, (vid, c) in enumerate(rows)]
        (split_dir / "genre").mkdir(parents=True, exist_ok=True)
        (split_dir / "genre" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    for split, rows in LVU_LIKES.items():
        lines = ["like_count dislike_count youtube_id imdb_id"] + [f"{like} {dislike} {vid} tt{i:07d}" for i, (vid, like, dislike) in enumerate(rows)]
        (split_dir / "like_ratio").mkdir(parents=True, exist_ok=True)
        (split_dir / "like_ratio" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    durations = ["videoid,duration"] + [f"{vid},{LVU_SECONDS}" for vid in lvu_ids()] + ["not_in_lvu,99"]
    (split_dir / "lvu_durations.csv").write_text("\n".join(durations) + "\n")
    return split_dir


def write_lvu_videos(served: Path) -> None:
    """<served>/<id>.mp4 for every LVU test id but the gone ones (8 s, v01 4 s longer)."""
    for index, vid in enumerate(lvu_ids()):
        if vid not in LVU_GONE:
            write_video(served / f"{vid}.mp4", LVU_SECONDS + LVU_PREVIEW.get(vid, 0), seed=index)


def tar_directory(directory: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    return archive


# ----------------------------------------------------------------------------- Breakfast

BREAKFAST_VIDEOS = {  # relative path in the archive -> seconds (15 fps)
    "P03/cam01/P03_cereals.avi": 3.0,
    "P03/cam01/P03_coffee.avi": 2.5,
    "P04/webcam01/P04_cereals.avi": 3.0,
    "P04/webcam01/P04_coffee.avi": 2.5,
    "P05/cam02/P05_cereals.avi": 2.5,
    "P05/stereo/P05_coffee_ch0.avi": 3.0,
    "P05/stereo/P05_coffee_ch1.avi": 3.0,  # the other stereo channel: left out by the scan
    "P06/cam01/P06_cereals.avi": 2.5,
    "P06/cam01/P06_coffee.avi": 3.0,
    "P47/cam01/P47_cereals.avi": 3.0,
    "P47/cam01/P47_coffee.avi": 2.5,
    "P48/webcam02/P48_cereals.avi": 2.5,
}


def write_breakfast(root: Path) -> Path:
    """`root`/BreakfastII_15fps_qvga_sync/<participant>/<camera>/*.avi (MPEG-4 AVIs, 64x48, 15 fps)."""
    archive = root / "BreakfastII_15fps_qvga_sync"
    for index, (relative, seconds) in enumerate(BREAKFAST_VIDEOS.items()):
        write_video(archive / relative, seconds, fps=15, width=64, height=48, codec="mpeg4", seed=index)
    return archive


# ----------------------------------------------------------------------------- COIN

COIN_VIDEOS = {  # youtube id -> (recipe_type, class, subset, start, end, seconds of the file)
    "c01": (0, "MakeSandwich", "training", 1.0, 5.0, 6.0),
    "c02": (0, "MakeSandwich", "training", 0.5, 4.5, 5.0),
    "c03": (0, "MakeSandwich", "training", 0.0, 4.0, 4.0),
    "c04": (2, "ChangeTire", "training", 1.0, 5.5, 6.0),
    "c05": (2, "ChangeTire", "training", 0.0, 4.0, 5.0),
    "c06": (2, "ChangeTire", "training", 2.0, 6.0, 6.0),
    "c07": (0, "MakeSandwich", "testing", 0.5, 4.5, 5.0),
    "c08": (2, "ChangeTire", "testing", 1.0, 5.0, 6.0),
    "gone_c": (2, "ChangeTire", "testing", 0.0, 4.0, 5.0),  # not served: 404
}


def write_coin(root: Path, served: Path) -> Path:
    """`root`/COIN.json for COIN_VIDEOS and <served>/<id>.mp4 (64x64, 8 fps) but gone_c."""
    database = {}
    for index, (vid, (recipe, name, subset, start, end, seconds)) in enumerate(COIN_VIDEOS.items()):
        database[vid] = {
            "class": name, "recipe_type": recipe, "subset": subset, "start": start, "end": end,
            "duration": seconds, "video_url": f"https://www.youtube.com/embed/{vid}",
            "annotation": [{"segment": [start, end], "id": "1", "label": "step"}],
        }
        if not vid.startswith("gone"):
            write_video(served / f"{vid}.mp4", seconds, fps=8, width=64, height=64, seed=index)
    path = root / "COIN.json"
    path.write_text(json.dumps({"database": database}))
    return path
