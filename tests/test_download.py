"""download_shard against a local HTTP server: yt-dlp's generic extractor fetches plain URLs.

The server serves small generated H.264 files as /<id>.mp4 and counts requests per id, so
the tests can check which ids caused network traffic. Ids select the behaviour:
``gone_*`` -> 404 (no such file), ``boom_*`` -> 500 always, ``flaky_*`` -> 500 on the first
request, then the file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import yt_dlp

from _workflow_media import VideoServer
from vis4mer import download
from vis4mer.download import DEFAULT_FORMAT, Record, classify_failure, coverage, download_shard

# A stuck request must fail the test, not hang the suite (socket_timeout_s bounds each read).
pytestmark = pytest.mark.timeout(60)

FAST = dict(retries=2, backoff_s=0.001, socket_timeout_s=5.0)


def _write_video(path: Path, seconds: float = 1.0, fps: int = 8, size: int = 32) -> None:
    """A short size x size H.264 mp4 with a changing grey level."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 10 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Served directory: vid_a (1 s), vid_b (2 s), vid_c (1 s) and flaky_1 (1 s)."""
    root = tmp_path_factory.mktemp("served")
    for name, seconds in [("vid_a", 1.0), ("vid_b", 2.0), ("vid_c", 1.0), ("flaky_1", 1.0)]:
        _write_video(root / f"{name}.mp4", seconds)
    return root


def _failure(video_id: str, count: int) -> int | None:
    """boom_* always answer 500; flaky_* answer 500 to their first request only."""
    return 500 if video_id.startswith("boom_") or (video_id.startswith("flaky_") and count == 1) else None


@pytest.fixture
def server(videos):
    srv = VideoServer(videos, failure=_failure)
    yield srv
    srv.close()


def _shard(server, out_dir, manifest, ids, **kwargs):
    return download_shard(ids, out_dir, manifest, url_template=server.url_template, **{**FAST, **kwargs})


def test_downloads_classifies_errors_and_writes_manifest(server, tmp_path):
    out, manifest = tmp_path / "videos", tmp_path / "manifest.json"
    records = _shard(server, out, manifest, ["vid_a", "vid_b", "gone_1", "boom_1"])

    for video_id in ("vid_a", "vid_b"):
        record = records[video_id]
        assert (record.status, record.attempts) == ("downloaded", 1)
        assert Path(record.path) == out / f"{video_id}.mp4"
        assert _decoded_frames(record.path) >= 1
    assert _decoded_frames(out / "vid_b.mp4") == 16  # 2 s at 8 fps, the whole file

    gone = records["gone_1"]
    assert (gone.status, gone.attempts, gone.path) == ("unavailable", 1, None)
    assert "HTTP Error 404" in gone.message
    assert server.hits["gone_1"] == 1  # no retries for unavailable content

    boom = records["boom_1"]
    assert (boom.status, boom.attempts, boom.path) == ("failed", 3, None)
    assert "HTTP Error 500" in boom.message
    assert server.hits["boom_1"] == 3  # first attempt + retries=2

    on_disk = json.loads(manifest.read_text())
    assert on_disk["counts"] == {"downloaded": 2, "local": 0, "unavailable": 1, "failed": 1}
    assert on_disk["ids"]["gone_1"]["status"] == "unavailable"
    assert download.read_manifest(manifest) == records
    assert sorted(p.name for p in out.iterdir()) == ["vid_a.mp4", "vid_b.mp4"]  # no .part leftovers


def test_second_call_resumes_and_retries_only_failed(server, tmp_path):
    out, manifest = tmp_path / "videos", tmp_path / "manifest.json"
    ids = ["vid_a", "gone_1", "boom_1"]
    first = _shard(server, out, manifest, ids)
    hits_after_first = dict(server.hits)
    second = _shard(server, out, manifest, ids + ["vid_c"])

    assert server.hits["vid_a"] == hits_after_first["vid_a"]  # finished: not fetched again
    assert server.hits["gone_1"] == hits_after_first["gone_1"]  # unavailable: not asked again
    assert server.hits["boom_1"] == hits_after_first["boom_1"] + 3  # failed: retried
    assert second["vid_a"] == first["vid_a"] and second["gone_1"] == first["gone_1"]
    assert second["vid_c"].status == "downloaded"
    assert json.loads(manifest.read_text())["counts"] == {"downloaded": 2, "local": 0, "unavailable": 1, "failed": 1}


def test_transient_error_then_success(server, tmp_path):
    records = _shard(server, tmp_path / "v", tmp_path / "m.json", ["flaky_1"])
    assert (records["flaky_1"].status, records["flaky_1"].attempts) == ("downloaded", 2)
    assert _decoded_frames(records["flaky_1"].path) >= 1


def test_existing_file_and_local_mirror_need_no_request(server, videos, tmp_path):
    out, mirror = tmp_path / "videos", tmp_path / "mirror"
    out.mkdir()
    mirror.mkdir()
    shutil.copy(videos / "vid_a.mp4", out / "vid_a.mp4")
    shutil.copy(videos / "vid_b.mp4", mirror / "vid_b.mkv")  # any video extension

    records = _shard(server, out, tmp_path / "m.json", ["vid_a", "vid_b"], local_dirs=[tmp_path / "none", mirror])

    assert server.hits["vid_a"] == server.hits["vid_b"] == 0
    assert records["vid_a"] == Record("downloaded", "", str(out / "vid_a.mp4"), 0)
    assert records["vid_b"].status == "local"
    linked = Path(records["vid_b"].path)
    assert linked == out / "vid_b.mkv"
    assert linked.stat().st_ino == (mirror / "vid_b.mkv").stat().st_ino  # hard link on one file system


def test_local_mirror_is_copied_when_linking_fails(server, videos, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(videos / "vid_c.mp4", mirror / "vid_c.mp4")

    def no_link(source, target):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    records = _shard(server, tmp_path / "videos", tmp_path / "m.json", ["vid_c"], local_dirs=[mirror])
    copied = Path(records["vid_c"].path)
    assert records["vid_c"].status == "local" and server.hits["vid_c"] == 0
    assert copied.read_bytes() == (mirror / "vid_c.mp4").read_bytes()
    assert copied.stat().st_ino != (mirror / "vid_c.mp4").stat().st_ino


def test_part_and_empty_files_are_not_finished(server, tmp_path):
    out = tmp_path / "videos"
    out.mkdir()
    (out / "vid_a.mp4.part").write_bytes(b"\0" * 100)  # an interrupted transfer
    (out / "vid_b.mp4").write_bytes(b"")  # an empty leftover
    records = _shard(server, out, tmp_path / "m.json", ["vid_a", "vid_b"])
    for video_id in ("vid_a", "vid_b"):
        assert records[video_id].status == "downloaded"
        assert server.hits[video_id] >= 1
        assert _decoded_frames(records[video_id].path) >= 1
    assert not (out / "vid_a.mp4.part").exists()


def _youtube_format(format_id, height, vcodec, acodec="none", ext="mp4"):
    return dict(format_id=format_id, url=f"http://x/{format_id}", ext=ext, height=height, vcodec=vcodec, acodec=acodec)


YOUTUBE_FORMATS = [
    _youtube_format("18", 360, "avc1.42001E", "mp4a.40.2"),
    _youtube_format("134", 360, "avc1.4d401e"),
    _youtube_format("135", 480, "avc1.4d401f"),
    _youtube_format("244", 480, "vp9", ext="webm"),
    _youtube_format("397", 480, "av01.0.04M.08"),
    _youtube_format("136", 720, "avc1.4d401f"),
    _youtube_format("137", 1080, "avc1.640028"),
    _youtube_format("140", None, "none", "mp4a.40.2", "m4a"),
]


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (None, "135"),  # best H.264 <= 480p, video only
        ({"244", "397", "136", "137", "140"}, "244"),  # no H.264 <= 480p: VP9 rather than AV1
        ({"136", "137", "140"}, "136"),  # nothing <= 480p: the smallest video
    ],
)
def test_default_format_picks_small_h264(available, expected):
    formats = [f for f in YOUTUBE_FORMATS if available is None or f["format_id"] in available]
    info = {"id": "x", "title": "x", "formats": formats, "extractor": "t", "extractor_key": "T", "webpage_url": "x"}
    with yt_dlp.YoutubeDL({"format": DEFAULT_FORMAT, "quiet": True, "simulate": True}) as ydl:
        assert ydl.process_ie_result(info, download=False)["format_id"] == expected


YT = "[youtube] abc: "
GENERIC = "[generic] abc: Unable to download webpage: "


@pytest.mark.parametrize(
    ("message", "status", "expected"),
    [
        (YT + "Private video. Sign in if you've been granted access to this video", None, "unavailable"),
        (YT + "Video unavailable. This video has been removed by the uploader", None, "unavailable"),
        (YT + "The uploader has not made this video available in your country", None, "unavailable"),
        (YT + "Sign in to confirm your age. This video may be inappropriate for some users.", None, "unavailable"),
        (YT + "Join this channel to get access to members-only content like this video", None, "unavailable"),
        (YT + "Video unavailable. This video contains content from X, who has blocked it on copyright grounds", None,
         "unavailable"),
        (GENERIC + "HTTP Error 410: Gone", 410, "unavailable"),
        (GENERIC + "some error", 404, "unavailable"),
        # YouTube's answer to a rate-limited session reads "Video unavailable" but is transient
        (YT + "Video unavailable. This content isn't available, try again later. The current session has been "
         "rate-limited by YouTube for up to an hour.", None, "transient"),
        (YT + "Sign in to confirm you're not a bot. Use --cookies-from-browser", None, "transient"),
        (GENERIC + "HTTP Error 503: Service Unavailable", 503, "transient"),
        (GENERIC + "HTTP Error 429: Too Many Requests", 429, "transient"),
        ("Unable to download video data: The read operation timed out", None, "transient"),
    ],
)
def test_classify_failure(message, status, expected):
    assert classify_failure(message, status) == expected


def test_coverage_over_shards(tmp_path):
    def manifest(path, statuses):
        records = {f"{path.stem}_{i}": Record(s) for i, s in enumerate(statuses)}
        download._write_manifest(path, records)
        return path

    a = manifest(tmp_path / "a.json", ["downloaded", "downloaded", "unavailable"])
    b = manifest(tmp_path / "b.json", ["local", "failed", "downloaded", "unavailable"])
    summary = coverage([a, b])
    assert summary["shards"] == 2 and summary["total"] == 7
    assert summary["counts"] == {"downloaded": 3, "local": 1, "unavailable": 2, "failed": 1}
    assert summary["available"] == 4 and summary["available_fraction"] == pytest.approx(4 / 7)
    assert summary["fractions"]["unavailable"] == pytest.approx(2 / 7)
    assert summary["unavailable_ids"] == ["a_2", "b_3"] and summary["failed_ids"] == ["b_1"]
    with pytest.raises(ValueError, match="a_0 is in two manifests"):
        coverage([a, json.loads(a.read_text())])
    with pytest.raises(FileNotFoundError, match="c.json: manifest not found"):
        coverage([a, tmp_path / "c.json"])
    with pytest.raises(ValueError, match="unknown status 'lost'"):
        coverage([{"ids": {"x": {"status": "lost"}}}])


def test_rejects_bad_ids_and_unreadable_manifest(tmp_path):
    with pytest.raises(ValueError, match="must match"):
        download_shard(["../escape"], tmp_path, tmp_path / "m.json")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="m.json: not a download manifest"):
        download_shard(["abc"], tmp_path, tmp_path / "m.json")


# --------------------------------------------------------------------------- JavaScript runtime


def test_installed_deno_is_found_without_path(tmp_path):
    """make setup installs deno (a wheel) into the environment: yt-dlp finds it there even when
    the environment's bin/ is not on PATH, as in a Snakemake job started from elsewhere."""
    import subprocess
    import sys

    code = "from vis4mer.download import js_runtime_status as s; r = s(); print(r.ok, sorted(r.usable), r.solver)"
    env = {**os.environ, "PATH": str(tmp_path)}  # nothing on PATH
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    ok, usable, solver = out.split(" ", 2)
    assert ok == "True" and "deno" in usable and solver.strip() not in ("None", "")


def test_no_runtime_anywhere_is_reported_with_the_fix(tmp_path, monkeypatch):
    import sysconfig

    monkeypatch.setenv("PATH", str(tmp_path))
    scripts = tmp_path / "empty-bin"
    scripts.mkdir()
    real = sysconfig.get_path
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(scripts) if name == "scripts" else real(name, *a, **k))
    status = download.js_runtime_status(["deno"])
    assert not status.ok and status.usable == {} and "deno" in status.problems
    message = status.describe()
    assert "no usable JavaScript runtime" in message and "deno: not found" in message
    assert 'pip install "yt-dlp[default]" deno' in message


def test_js_runtime_names_are_checked():
    with pytest.raises(ValueError, match=r"download.js_runtimes: unknown JavaScript runtime 'nodejs'"):
        download.parse_js_runtimes(["nodejs"])
    assert download.parse_js_runtimes(["deno", "node:/opt/node/bin/node"]) == {"deno": {}, "node": {"path": "/opt/node/bin/node"}}


def test_youtube_download_without_runtime_stops_before_any_attempt(videos, tmp_path, monkeypatch):
    out = tmp_path / "videos"
    out.mkdir()
    shutil.copy(videos / "vid_a.mp4", out / "vid_a.mp4")
    monkeypatch.setattr(download, "_fetch", lambda *a, **k: pytest.fail("a video was attempted without a JS runtime"))
    manifest = tmp_path / "m.json"
    with pytest.raises(download.MissingJsRuntimeError, match="node: not found"):
        download_shard(["vid_a", "dQw4w9WgXcQ"], out, manifest, js_runtimes=["node:/nonexistent/node"], **FAST)
    assert download.read_manifest(manifest)["vid_a"].status == "downloaded"  # what was on disk is kept


def test_only_youtube_urls_need_a_runtime():
    assert download.needs_js_runtime(download.DEFAULT_URL_TEMPLATE)
    assert download.needs_js_runtime("https://youtu.be/{id}") and download.needs_js_runtime("http://m.youtube.com/watch?v={id}")
    assert not download.needs_js_runtime("http://127.0.0.1:8000/{id}.mp4")
    assert not download.needs_js_runtime("https://example.com/youtube.com/{id}")
