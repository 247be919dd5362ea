"""Download one shard of videos with yt-dlp (its Python API), resumably, with a JSON manifest.

For each video id, in order of preference:

1. ``out_dir/<id>.<ext>`` already exists and is non-empty (any video extension) -> kept,
   status ``downloaded``. yt-dlp writes ``<id>.<ext>.part`` (and ``<id>.f<format>.<ext>``
   before a merge) and renames onto ``<id>.<ext>`` only when complete, so only finished
   files count; unfinished ``.part`` files are resumed by yt-dlp on the next attempt.
2. ``<local_dir>/<id>.<ext>`` exists in a local mirror (e.g. a Condensed Movies copy) ->
   hard-linked into ``out_dir`` (copied when linking fails, e.g. across file systems),
   status ``local``; no network request.
3. The previous manifest says ``unavailable`` -> kept; no request.
4. Otherwise yt-dlp downloads ``url_template.format(id=...)``. Errors that say the video
   itself is gone (private, removed, geo-blocked, age/member-gated, HTTP 401/403/404/410/451)
   give ``unavailable`` at once; anything else (network, HTTP 5xx/429, YouTube's rate limit)
   is retried with exponential backoff and gives ``failed`` once `retries` are used up.

Unavailable or failed videos never raise: the function always returns and writes the
manifest (atomically, after every video, so a killed job keeps its progress)::

    {"ids": {"<id>": {"status": "downloaded" | "local" | "unavailable" | "failed",
                      "message": "<yt-dlp's error, or ''>", "path": "<file>" | null,
                      "attempts": <download attempts made for this record>}},
     "counts": {"downloaded": n, "local": n, "unavailable": n, "failed": n}}
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from vis4mer._logging import logger
from vis4mer.atomic import link_or_copy, write_json
from vis4mer.frames import VIDEO_EXTENSIONS

Status = Literal["downloaded", "local", "unavailable", "failed"]
STATUSES: tuple[Status, ...] = ("downloaded", "local", "unavailable", "failed")

# Features are computed on 224x224 frames sampled at ~1 fps, so <=480p is plenty. H.264
# decodes everywhere (decord, torchcodec, PyAV); failing that, anything but AV1 (which many
# FFmpeg builds behind decord cannot decode); if nothing is <=480p, the smallest video.
# Video-only formats are fine (the model uses no audio) and need no ffmpeg merge. "?" lets
# formats with unknown height/codec (plain URLs) pass.
DEFAULT_FORMAT = "bv*[height<=?480][vcodec^=?avc1]/bv*[height<=?480][vcodec!^=?av01]/bv*[height<=?480]/wv*"

DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={id}"

# JavaScript runtimes yt-dlp may use for YouTube's challenges, in its --js-runtimes syntax
# (NAME or NAME:PATH). yt-dlp enables only deno unless told otherwise; deno comes with the
# project (requirements, envs/download.yaml) as a binary wheel, found in the environment.
DEFAULT_JS_RUNTIMES = ("deno",)
YOUTUBE_HOSTS = re.compile(r"^https?://(?:[\w-]+\.)*(?:youtube\.com|youtu\.be|youtube-nocookie\.com)/", re.I)

# HTTP statuses that mean the content is gone or refused for good, not a transient failure.
UNAVAILABLE_HTTP_STATUSES = frozenset({401, 403, 404, 410, 451})

# Lower-case fragments of yt-dlp / YouTube messages. Transient ones are checked first:
# YouTube answers a rate-limited session with "Video unavailable. This content isn't
# available, try again later", which must not mark the video as gone.
TRANSIENT_MESSAGES = (
    "try again later",
    "rate-limit",
    "rate limit",
    "too many requests",
    "not a bot",
    "captcha",
    "http error 429",
)
UNAVAILABLE_MESSAGES = (
    "video unavailable",
    "private video",
    "video is private",
    "this video is unavailable",
    "this video is not available",
    "this video is no longer available",
    "has been removed",
    "has been terminated",
    "available in your country",
    "blocked it in your country",
    "geo restriction",
    "copyright",
    "sign in to confirm your age",
    "age-restricted",
    "inappropriate for some users",
    "members-only",
    "members only",
    "join this channel",
    "drm protected",
    "unsupported url",
    "http error 401",
    "http error 403",
    "http error 404",
    "http error 410",
    "http error 451",
)

_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]+")  # YouTube ids; also names the output file


@dataclass(frozen=True)
class Record:
    """Outcome for one video. `path` is the video file (None unless downloaded/local)."""

    status: Status
    message: str = ""
    path: str | None = None
    attempts: int = 0


def classify_failure(message: str, http_status: int | None = None) -> Literal["unavailable", "transient"]:
    """Whether a download error means the video is gone (no retry) or may succeed later.

    `http_status` is the status of the HTTP error behind the message, when there is one.
    """
    text = message.lower()
    if http_status == 429 or any(fragment in text for fragment in TRANSIENT_MESSAGES):
        return "transient"
    if http_status in UNAVAILABLE_HTTP_STATUSES or any(fragment in text for fragment in UNAVAILABLE_MESSAGES):
        return "unavailable"
    return "transient"


def _http_status(error: BaseException) -> int | None:
    """Status of the HTTP error behind a yt-dlp error, following exc_info / cause chains."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        exc = stack.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            return status
        exc_info = getattr(exc, "exc_info", None)
        stack += [exc_info[1] if exc_info else None, getattr(exc, "cause", None), exc.__cause__, exc.__context__]
    return None


def _error_message(error: BaseException) -> str:
    return re.sub(r"^ERROR:\s*", "", str(error).strip())


def find_video(directory: Path, video_id: str) -> Path | None:
    """``directory/<video_id><ext>`` for the first video extension that exists non-empty."""
    for ext in VIDEO_EXTENSIONS:
        path = directory / f"{video_id}{ext}"
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def _find_in_mirrors(mirrors: Sequence[Path], video_id: str) -> Path | None:
    for directory in mirrors:
        if found := find_video(directory, video_id):
            return found
    return None


class MissingJsRuntimeError(RuntimeError):
    """yt-dlp has no usable JavaScript runtime or no challenge-solver scripts for YouTube."""


@dataclass(frozen=True)
class JsRuntimeStatus:
    """What yt-dlp can use for YouTube's JavaScript challenges.

    `usable`: {runtime: "version at path"} of the configured runtimes that run and are
    recent enough; `problems`: why each other configured runtime cannot be used;
    `solver`: the version of the yt-dlp-ejs challenge-solver scripts, None when absent.
    """

    usable: dict[str, str]
    problems: dict[str, str]
    solver: str | None

    @property
    def ok(self) -> bool:
        return bool(self.usable) and self.solver is not None

    def describe(self) -> str:
        """One line: what is there, or what is missing and how to get it."""
        if self.ok:
            runtimes = ", ".join(f"{name} {where}" for name, where in self.usable.items())
            return f"JavaScript runtime {runtimes}; yt-dlp-ejs {self.solver}"
        missing = []
        if not self.usable:
            tried = "; ".join(f"{name}: {why}" for name, why in self.problems.items()) or "none configured"
            missing.append(f"no usable JavaScript runtime ({tried})")
        if self.solver is None:
            missing.append("the yt-dlp-ejs challenge-solver scripts are not installed")
        return (
            "yt-dlp cannot solve YouTube's JavaScript challenges: " + " and ".join(missing) + ". Without them "
            "most YouTube formats are missing and downloads fail. Fix: `pip install \"yt-dlp[default]\" deno` "
            "(make setup and envs/download.yaml install both), or point download.js_runtimes at an installed "
            "runtime, e.g. [\"node:/usr/bin/node\"] (supported: deno, node, bun, quickjs)."
        )


def parse_js_runtimes(specs: Sequence[str]) -> dict[str, dict[str, str]]:
    """yt-dlp's ``js_runtimes`` option from ``NAME`` / ``NAME:PATH`` strings (its CLI syntax)."""
    from yt_dlp.globals import supported_js_runtimes

    runtimes: dict[str, dict[str, str]] = {}
    for spec in specs:
        name, _, path = str(spec).partition(":")
        name = name.strip().lower()
        if name not in supported_js_runtimes.value:
            raise ValueError(
                f"download.js_runtimes: unknown JavaScript runtime {name!r} in {spec!r} "
                f"(yt-dlp supports {', '.join(supported_js_runtimes.value)})"
            )
        runtimes[name] = {"path": path} if path else {}
    return runtimes


def js_runtime_status(js_runtimes: Sequence[str] = DEFAULT_JS_RUNTIMES) -> JsRuntimeStatus:
    """Ask yt-dlp which of `js_runtimes` it can run, and whether its solver scripts are there."""
    from yt_dlp.dependencies import yt_dlp_ejs
    from yt_dlp.globals import supported_js_runtimes

    usable, problems = {}, {}
    for name, config in parse_js_runtimes(js_runtimes).items():
        info = supported_js_runtimes.value[name](path=config.get("path")).info
        if info is None:
            problems[name] = f"not found ({config.get('path') or 'PATH and the Python environment'})"
        elif not info.supported:
            problems[name] = f"version {info.version} at {info.path} is too old for yt-dlp"
        else:
            usable[name] = f"{info.version} at {info.path}"
    solver = None if yt_dlp_ejs is None else str(getattr(yt_dlp_ejs, "version", "installed"))
    return JsRuntimeStatus(usable, problems, solver)


def needs_js_runtime(url_template: str) -> bool:
    """True for YouTube URLs (other hosts, e.g. a local mirror server, need no JavaScript)."""
    return bool(YOUTUBE_HOSTS.match(url_template))


class _YtDlpLogger:
    """Routes yt-dlp's messages to the vis4mer logger. Errors go to debug: every error is
    re-raised as a DownloadError, and download_shard logs and records it once."""

    def debug(self, message: str) -> None:
        logger.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        logger.warning("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        logger.debug("yt-dlp: %s", message)


def _fetch(url: str, out_dir: Path, video_id: str, options: dict) -> Path:
    """One yt-dlp attempt; returns the finished file or raises."""
    import yt_dlp  # here, so coverage() and read_manifest() work without yt-dlp installed

    options = {**options, "outtmpl": {"default": str(out_dir / f"{video_id}.%(ext)s")}}
    with yt_dlp.YoutubeDL(options) as ydl:
        info = ydl.extract_info(url, download=True)
    paths = [d.get("filepath") for d in (info or {}).get("requested_downloads") or []]
    path = next((Path(p) for p in paths if p), None) or find_video(out_dir, video_id)
    if path is None or not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"yt-dlp reported success but wrote no file for {video_id} in {out_dir}")
    return path


def _download(video_id: str, url: str, out_dir: Path, options: dict, retries: int, backoff_s: float) -> Record:
    """Up to 1 + `retries` attempts, sleeping backoff_s * 2**k before retry k + 1."""
    for attempt in range(1, retries + 2):
        try:
            path = _fetch(url, out_dir, video_id, options)
            return Record("downloaded", "", str(path), attempt)
        except Exception as error:  # yt-dlp wraps network/extractor errors in DownloadError
            message = _error_message(error) or type(error).__name__
            if classify_failure(message, _http_status(error)) == "unavailable":
                logger.info("%s unavailable: %s", video_id, message)
                return Record("unavailable", message, None, attempt)
            if attempt <= retries:
                delay = backoff_s * 2 ** (attempt - 1)
                logger.warning(
                    "%s attempt %d/%d failed (%s); retrying in %.3g s", video_id, attempt, retries + 1, message, delay
                )
                time.sleep(delay)
    logger.warning("%s failed after %d attempts: %s", video_id, retries + 1, message)
    return Record("failed", message, None, retries + 1)


def _records(data: Mapping, source: str) -> dict[str, Record]:
    """Records from a parsed manifest; ValueError naming `source` if it is not one."""
    try:
        records = {video_id: Record(**fields) for video_id, fields in data["ids"].items()}
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{source}: not a download manifest ({error!r})") from None
    for video_id, record in records.items():
        if record.status not in STATUSES:
            raise ValueError(f"{source}: video {video_id} has unknown status {record.status!r}")
    return records


def read_manifest(path) -> dict[str, Record]:
    """Records of a manifest written by download_shard ({} if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path}: not a download manifest ({error})") from None
    return _records(data, str(path))


def _counts(records: Mapping[str, Record]) -> dict[str, int]:
    return {status: sum(r.status == status for r in records.values()) for status in STATUSES}


def _write_manifest(path: Path, records: Mapping[str, Record]) -> None:
    write_json(path, {"ids": {i: asdict(r) for i, r in records.items()}, "counts": _counts(records)})


def download_shard(
    video_ids: Sequence[str],
    out_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    *,
    url_template: str = DEFAULT_URL_TEMPLATE,
    local_dirs: Sequence[str | os.PathLike] = (),
    format: str = DEFAULT_FORMAT,
    retries: int = 3,
    backoff_s: float = 5.0,
    rate_limit: float | None = None,
    cookies: str | os.PathLike | None = None,
    sleep_between_s: float = 0.0,
    socket_timeout_s: float = 30.0,
    network: bool = True,
    js_runtimes: Sequence[str] = DEFAULT_JS_RUNTIMES,
) -> dict[str, Record]:
    """Fetch `video_ids` into `out_dir` and record each outcome in `manifest_path`.

    url_template: URL of a video, with ``{id}`` for its id.
    local_dirs: mirror directories searched for ``<id>.<ext>`` before downloading.
    format: yt-dlp format selector (see DEFAULT_FORMAT).
    retries: extra attempts after a transient failure (also yt-dlp's own retries for
        interrupted HTTP transfers and fragments within one attempt).
    backoff_s: sleep before the first retry; doubles with each further retry.
    rate_limit: download bandwidth cap in bytes/s (yt-dlp ``ratelimit``); None = unlimited.
    cookies: Netscape cookies file for yt-dlp (``cookiefile``), e.g. for age-gated videos.
    sleep_between_s: pause before each network download (yt-dlp ``sleep_interval``).
    socket_timeout_s: seconds to wait on an unresponsive host (yt-dlp ``socket_timeout``).
    network: False = local mirrors only: an id found neither in `out_dir` nor in a mirror
        is recorded as ``failed`` (not ``unavailable``: it may exist online, and a later call
        with the network on retries it), with a message naming the mirrors; nothing is fetched.
    js_runtimes: JavaScript runtimes yt-dlp may use (``NAME`` or ``NAME:PATH``). Before the
        first video that needs a YouTube download, yt-dlp is asked whether one of them runs and
        its challenge-solver scripts (yt-dlp-ejs) are installed; if not, MissingJsRuntimeError
        says what is missing and how to install it, and no video is attempted (those found on
        disk or in a mirror are recorded first).

    Returns {id: Record} for exactly `video_ids`. A previous manifest at `manifest_path` is
    merged: finished files are kept, ``unavailable`` ids are not asked again, ``failed`` ids
    are retried. The manifest lists exactly this call's ids.
    """
    bad = [v for v in video_ids if not _VIDEO_ID.fullmatch(v)]
    if bad:
        raise ValueError(f"video ids must match [A-Za-z0-9_-]+ (they name files); got {bad[:5]}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    out_dir, manifest_path = Path(out_dir), Path(manifest_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    mirrors = [Path(d) for d in local_dirs]
    previous = read_manifest(manifest_path)

    options = {
        "format": format,
        "merge_output_format": "mp4",  # only used when `format` merges streams (needs ffmpeg)
        "noplaylist": True,
        "quiet": True,
        "noprogress": True,
        "color": "no_color",
        "logger": _YtDlpLogger(),
        "retries": retries,
        "fragment_retries": retries,
        "retry_sleep_functions": {
            "http": lambda n: backoff_s * 2**n,
            "fragment": lambda n: backoff_s * 2**n,
        },
        "socket_timeout": socket_timeout_s,
        "ratelimit": rate_limit,
        "cookiefile": str(cookies) if cookies else None,
    }
    if sleep_between_s > 0:
        options["sleep_interval"] = sleep_between_s
    js_checked = not needs_js_runtime(url_template)
    if not js_checked:
        options["js_runtimes"] = parse_js_runtimes(js_runtimes)

    records: dict[str, Record] = {}
    for video_id in video_ids:
        old = previous.get(video_id)
        existing = find_video(out_dir, video_id)
        mirrored = None if existing else _find_in_mirrors(mirrors, video_id)
        if existing is not None:
            kept = old is not None and old.status in ("downloaded", "local") and old.path == str(existing)
            records[video_id] = old if kept else Record("downloaded", "", str(existing), 0)
        elif mirrored is not None:
            target = out_dir / mirrored.name
            link_or_copy(mirrored, target)
            records[video_id] = Record("local", f"from {mirrored}", str(target), 0)
        elif old is not None and old.status == "unavailable":
            records[video_id] = old
        elif not network:
            where = ", ".join(map(str, mirrors)) or "no mirror given"
            records[video_id] = Record("failed", f"not in {out_dir} nor in the local mirror(s) ({where}); downloading is off", None, 0)
        else:
            if not js_checked:
                status = js_runtime_status(js_runtimes)
                if not status.ok:
                    _write_manifest(manifest_path, records)  # what was found locally is kept
                    raise MissingJsRuntimeError(status.describe())
                logger.info("yt-dlp: %s", status.describe())
                js_checked = True
            for ext in VIDEO_EXTENSIONS:  # an empty leftover would make yt-dlp skip the download
                empty = out_dir / f"{video_id}{ext}"
                if empty.is_file() and empty.stat().st_size == 0:
                    empty.unlink()
            url = url_template.format(id=video_id)
            records[video_id] = _download(video_id, url, out_dir, options, retries, backoff_s)
        _write_manifest(manifest_path, records)
    _write_manifest(manifest_path, records)  # also for an empty shard
    counts = _counts(records)
    logger.info("download shard %s: %s", manifest_path, ", ".join(f"{n} {s}" for s, n in counts.items()))
    return records


def coverage(manifests: Iterable[str | os.PathLike | Mapping]) -> dict:
    """Summary over shard manifests (paths, or dicts as written by download_shard).

    Returns {"shards", "total", "counts": {status: n}, "fractions": {status: n / total},
    "available": downloaded + local, "available_fraction", "unavailable_ids", "failed_ids"}.
    Raises ValueError if an id appears in two manifests (shards must not overlap).
    """
    owner: dict[str, str] = {}  # video id -> manifest that lists it
    records: dict[str, Record] = {}
    shards = 0
    for index, manifest in enumerate(manifests):
        if isinstance(manifest, Mapping):
            name, shard = f"manifest #{index}", _records(manifest, f"manifest #{index}")
        else:
            if not Path(manifest).exists():
                raise FileNotFoundError(f"{manifest}: manifest not found")
            name, shard = str(manifest), read_manifest(manifest)
        shards += 1
        for video_id, record in shard.items():
            if video_id in owner:
                raise ValueError(f"video {video_id} is in two manifests: {owner[video_id]} and {name}")
            owner[video_id] = name
            records[video_id] = record
    counts, total = _counts(records), len(records)
    available = counts["downloaded"] + counts["local"]
    return {
        "shards": shards,
        "total": total,
        "counts": counts,
        "fractions": {s: (n / total if total else 0.0) for s, n in counts.items()},
        "available": available,
        "available_fraction": available / total if total else 0.0,
        "unavailable_ids": sorted(i for i, r in records.items() if r.status == "unavailable"),
        "failed_ids": sorted(i for i, r in records.items() if r.status == "failed"),
    }
