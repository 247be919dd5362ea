"""Preflight checks before a long run (``vis4mer doctor``): what is ready, what is missing, and
the fix for each, in one short table; ``blocking`` when the run would fail.

Each check is a function returning :class:`Check` rows, usable on its own; :func:`run_checks`
runs those a configuration needs (see ``vis4mer.cli``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vis4mer.atomic import human_bytes

Status = Literal["ok", "warn", "fail"]

# Codecs a user's videos come in (YouTube serves H.264, VP9 and AV1), with the system ffmpeg
# encoders that make a test clip of each (the first one ffmpeg has).
CODECS: dict[str, tuple[str, ...]] = {"h264": ("libx264",), "vp9": ("libvpx-vp9",), "av1": ("libsvtav1", "libaom-av1")}
DECODERS = ("decord", "torchcodec")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def blocking(self) -> bool:
        return self.status == "fail"


def format_table(checks: Sequence[Check]) -> str:
    """A fixed-width table: check | status | detail | fix."""
    rows = [("check", "status", "detail", "fix")] + [(c.name, c.status.upper(), c.detail, c.fix) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
    lines.insert(1, "-" * min(200, max(len(line) for line in lines)))
    return "\n".join(lines)


# ----------------------------------------------------------------------- GPUs


def check_gpus() -> list[Check]:
    """GPUs torch sees (count, name, memory) and whether the CUDA Cauchy kernel loads or builds."""
    import torch

    if not torch.cuda.is_available():
        return [
            Check(
                "gpus", "warn", f"no CUDA device visible to torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
                "features and training run on the CPU, which takes weeks at LVU size: run on a GPU machine, "
                "or check the driver and CUDA_VISIBLE_DEVICES",
            )
        ]
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append(f"{index}: {props.name} {human_bytes(props.total_memory)}")
    rows = [Check("gpus", "ok", f"{len(devices)} visible ({'; '.join(devices)})")]
    from vis4mer.kernels import cauchy_cuda

    module, reason = cauchy_cuda.load(build_if_missing=True)
    rows.append(
        Check("cuda cauchy kernel", "ok", reason)
        if module is not None
        else Check("cuda cauchy kernel", "warn", reason, "S4 falls back to the keops/torch Cauchy backends (slower); see README, CUDA Cauchy kernel")
    )
    return rows


# ----------------------------------------------------------------------- video decoding


def _encode_sample(ffmpeg: str, encoders: Iterable[str], path: Path) -> str | None:
    """A 1-s 64x64 test clip at `path` with the first of `encoders` ffmpeg has; the encoder, or None."""
    for encoder in encoders:
        command = [
            ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=8:duration=1",
            "-pix_fmt", "yuv420p", "-c:v", encoder, str(path),
        ]
        if subprocess.run(command, capture_output=True, timeout=120).returncode == 0 and path.is_file() and path.stat().st_size:
            return encoder
    return None


def _decodes(decoder: str, path: Path) -> str | None:
    """None when `decoder` reads frames of `path`, else its error (that decoder alone, without
    the other one the stages fall back on)."""
    from vis4mer.frames import VideoReader

    try:
        video = VideoReader(path, decoder)
        frames = video.read_at(video.sample(1.0), 32)
    except Exception as error:  # the decoders raise their own types
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return message.rpartition("ERROR ")[2][:120]  # decord prefixes a source location
    return None if len(frames) else "no frames"


def check_decoding(configured: Iterable[str] = ("decord",)) -> list[Check]:
    """ffmpeg, then which of H.264, VP9 and AV1 each decoder reads (on clips made here with ffmpeg).

    A codec the configured decoder cannot read fails when no decoder can, and warns when the
    other one can (say which, and how to switch).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return [Check("ffmpeg", "fail", "not on PATH", "install FFmpeg (make setup does, via apt; conda: the envs/ files list it)")]
    rows = [Check("ffmpeg", "ok", ffmpeg)]
    available = []
    for decoder in DECODERS:
        try:
            __import__({"decord": "decord", "torchcodec": "torchcodec.decoders"}[decoder])
            available.append(decoder)
        except Exception as error:
            status = "fail" if decoder in configured else "warn"
            rows.append(Check(f"decoder {decoder}", status, f"cannot be imported: {error}".splitlines()[0][:160], "make setup installs it"))
    with tempfile.TemporaryDirectory(prefix="vis4mer-doctor-") as scratch:
        for codec, encoders in CODECS.items():
            sample = Path(scratch) / f"{codec}.mkv"
            encoder = _encode_sample(ffmpeg, encoders, sample)
            if encoder is None:
                rows.append(Check(f"codec {codec}", "warn", f"ffmpeg here has none of {', '.join(encoders)}: not tested"))
                continue
            errors = {decoder: _decodes(decoder, sample) for decoder in available}
            readers = [d for d, error in errors.items() if error is None]
            unread = [d for d in configured if d in available and errors[d] is not None]
            detail = f"decoded by {', '.join(readers) or 'no decoder'}" + "".join(
                f"; {d}: {errors[d]}" for d in available if errors[d] is not None
            )
            if not unread:
                rows.append(Check(f"codec {codec}", "ok", detail))
            elif readers:
                rows.append(Check(f"codec {codec}", "warn", detail, f"videos in {codec} need frames.decoder: {readers[0]}"))
            else:
                rows.append(Check(f"codec {codec}", "fail", detail, f"no installed decoder reads {codec}: convert such videos with ffmpeg"))
    return rows


# ----------------------------------------------------------------------- downloads, weights


def check_js_runtime(js_runtimes: Sequence[str]) -> Check:
    """yt-dlp's JavaScript runtime and challenge-solver scripts, for YouTube downloads."""
    from vis4mer.download import js_runtime_status

    try:
        status = js_runtime_status(js_runtimes)
    except (ImportError, ValueError) as error:
        return Check("yt-dlp js runtime", "fail", str(error), "make setup installs yt-dlp[default] and deno")
    if status.ok:
        return Check("yt-dlp js runtime", "ok", status.describe())
    return Check("yt-dlp js runtime", "fail", status.describe().split(". Fix: ")[0], 'pip install "yt-dlp[default]" deno (make setup does)')


def check_weights(name: str, setting: str, backbone: str, *, url: str | None = None) -> Check:
    """Whether the weights of `backbone` (``features.weights`` = `setting`) are at hand or fetchable."""
    from vis4mer import weights

    label = f"weights {name}"
    if setting == weights.RANDOM:
        return Check(label, "warn", f"{backbone}: RANDOM weights (features.weights: random): results mean nothing",
                     "write features.weights: pretrained (or a file) for real features")
    if setting != weights.PRETRAINED:
        path = Path(setting).expanduser()
        if path.is_file():
            return Check(label, "ok", f"{backbone}: file {path} ({human_bytes(path.stat().st_size)})")
        return Check(label, "fail", f"{backbone}: file {path} does not exist (features.weights)", "give an existing file, or write pretrained")
    cached = weights.cached_pretrained(backbone, url=url)
    if cached is not None:
        return Check(label, "ok", f"{backbone}: cached at {cached}")
    where = weights.pretrained_source(backbone, url=url)
    if weights.offline():
        return Check(label, "fail", f"{backbone}: not cached ({where}) and downloads are off",
                     f"vis4mer fetch-weights --backbone {backbone} on a machine with internet sharing the cache")
    return Check(label, "ok", f"{backbone}: not cached yet, fetched once from {where} by the fetch_weights rule",
                 f"on nodes without internet: vis4mer fetch-weights --backbone {backbone} first, then HF_HUB_OFFLINE=1")


def check_files(files: Mapping[str, str | Path]) -> list[Check]:
    """{config key: path} of inputs that must exist (split files, annotations, video folders)."""
    rows = []
    for key, path in files.items():
        path = Path(path).expanduser()
        if path.exists():
            rows.append(Check(key, "ok", str(path)))
        else:
            rows.append(Check(key, "fail", f"{path} does not exist", f"set {key} to an existing path"))
    return rows


# ----------------------------------------------------------------------- disk space


@dataclass(frozen=True)
class SpaceNeed:
    """`bytes` to be written under `path` for `what` (e.g. "lvu features")."""

    what: str
    path: Path
    bytes: float


def _existing_parent(path: Path) -> Path:
    path = Path(path).expanduser().absolute()
    while not path.exists():
        path = path.parent
    return path


def check_disk(needs: Sequence[SpaceNeed], disk_usage: Callable[[Path], Any] | None = None) -> list[Check]:
    """The needs summed per file system, against its free space (`disk_usage`: shutil.disk_usage)."""
    import os

    disk_usage = disk_usage or shutil.disk_usage
    groups: dict[int, list[SpaceNeed]] = {}
    roots: dict[int, Path] = {}
    for need in needs:
        root = _existing_parent(need.path)
        device = os.stat(root).st_dev
        groups.setdefault(device, []).append(need)
        roots.setdefault(device, root)
    rows = []
    for device, members in groups.items():
        total = sum(n.bytes for n in members)
        free = disk_usage(roots[device]).free
        parts = ", ".join(f"{n.what} {human_bytes(n.bytes)} in {n.path}" for n in members)
        detail = f"need {human_bytes(total)} ({parts}), free {human_bytes(free)} on the file system of {roots[device]}"
        if total > free:
            rows.append(Check("disk space", "fail", detail, "free space, or point results/ and download.video_dir at a larger disk"))
        elif total > 0.8 * free:
            rows.append(Check("disk space", "warn", detail, "less than 20% would be left"))
        else:
            rows.append(Check("disk space", "ok", detail))
    return rows


def vit_feature_bytes(seconds: float, fps: float, tokens: int, dim: int) -> float:
    """fp16 ViT tokens of `seconds` of video at `fps` (LVU, ViT-L/16: 197 x 1024 per frame)."""
    return seconds * fps * tokens * dim * 2


def swin_feature_bytes(segments: float, tokens: int, dim: int) -> float:
    """fp16 Video Swin tokens of `segments` segments (Swin-B at 224 px: 49 x 1024 each)."""
    return segments * tokens * dim * 2


# H.264 at <=480p, as the download format asks: about 1 Mbit/s (an estimate, for the table).
DOWNLOAD_BITS_PER_SECOND = 1.0e6


def download_bytes(seconds: float) -> float:
    return seconds * DOWNLOAD_BITS_PER_SECOND / 8


# ----------------------------------------------------------------------- a configuration


def _vit_tokens(backbone: str, size: int) -> tuple[int, int]:
    """(tokens, dim) per frame of a timm ViT at `size`, from its structure (built on the meta device)."""
    import torch

    from vis4mer.compat import import_timm

    with torch.device("meta"):
        model = import_timm().create_model(backbone, pretrained=False, num_classes=0, img_size=size)
    prefix = getattr(model, "num_prefix_tokens", 1)
    return int(model.patch_embed.num_patches) + int(prefix), int(model.num_features)


def _dataset_needs(name: str, settings: Mapping, source, results: Path) -> tuple[list[SpaceNeed], list[Check]]:
    """What the dataset will write (features; frames when kept; downloaded videos), estimated
    from its split files: LVU from lvu_durations.csv at frames.fps, Video Swin from max_segments."""
    features, frames = settings["features"], settings["frames"]
    out = results / name
    rows: list[Check] = []
    needs: list[SpaceNeed] = []
    roles = source.roles()
    if features["family"] == "swin":
        from vis4mer.swin import swin_config

        tokens, dim = (frames["size"] // 32) ** 2, swin_config(features["backbone"]).out_dim
        segments = sum(features["max_segments"]["train" if role == "train" else "test"] for role in roles.values())
        needs.append(SpaceNeed(f"{name} features (at most)", out / "features", swin_feature_bytes(segments, tokens, dim)))
        return needs, rows
    durations = source.durations()
    if not durations:
        rows.append(Check(f"{name} size", "warn", "no video durations known before decoding: features and downloads not estimated"))
        return needs, rows
    seconds = sum(durations.get(video_id, 0.0) for video_id in roles)
    unknown = sum(video_id not in durations for video_id in roles)
    tokens, dim = _vit_tokens(features["backbone"], frames["size"])
    needs.append(SpaceNeed(f"{name} features", out / "features", vit_feature_bytes(seconds, frames["fps"], tokens, dim)))
    if settings.get("keep_frames"):
        needs.append(SpaceNeed(f"{name} frames", out / "frames", seconds * frames["fps"] * frames["size"] ** 2 * 3))
    if getattr(source, "downloads", False):
        video_dir = Path(settings["download"]["video_dir"] or f"data/{name}/videos")
        needs.append(SpaceNeed(f"{name} videos (~{DOWNLOAD_BITS_PER_SECOND / 1e6:g} Mbit/s)", video_dir, download_bytes(seconds)))
    detail = f"{len(roles)} videos, {seconds / 3600:.0f} h at {frames['fps']:g} fps, {tokens} x {dim} fp16 tokens per frame"
    rows.append(Check(f"{name} size", "ok", detail + (f" ({unknown} videos without a duration not counted)" if unknown else "")))
    return needs, rows


def check_dataset(name: str, config: Mapping, results: Path) -> tuple[list[Check], list[SpaceNeed]]:
    """The dataset's weights, its input files (read through its source) and what it will write."""
    from vis4mer.sources import source_class
    from vis4mer.config import ConfigError, pretrained_url

    settings = config["datasets"][name]
    features = settings["features"]
    try:
        url = pretrained_url(features) if features["weights"] == "pretrained" else None
        rows = [check_weights(name, features["weights"], features["backbone"], url=url)]
    except ConfigError as error:
        rows = [Check(f"weights {name}", "fail", str(error), "see datasets.<name>.features.weights")]
    kind = source_class(settings["source"])
    if kind.generated:
        return rows + [Check(f"{name} inputs", "ok", "generated by the workflow (rule demo_videos)")], []
    fetched = None
    if kind.needs_fetch(settings):
        folder = results / name / "lvu_1.0"
        if not folder.is_dir():
            return rows + [Check(f"{name} inputs", "ok", f"split files not fetched yet: rule {kind.fetch_checkpoint} fetches them (needs internet)")], []
        fetched = str(folder)
    source = kind(name, settings, results=results, fetched=fetched)
    try:
        n_videos = len(source.video_ids())
    except (OSError, ValueError) as error:
        return rows + [Check(f"{name} inputs", "fail", str(error).splitlines()[0][:300], f"fix datasets.{name}.{kind.files_key or 'split_dir'}")], []
    rows.append(Check(f"{name} inputs", "ok", f"{n_videos} videos in {len(source.tasks())} task(s)"))
    if not kind.downloads:
        found, missing = source.video_files(source.video_ids())
        if missing:
            example = next(iter(missing.values()))
            status = "fail" if not found else "warn"
            rows.append(Check(f"{name} videos", status, f"{len(found)} found, {len(missing)} missing (e.g. {example})",
                              "missing videos are skipped and counted; check the video folder"))
    needs, size_rows = _dataset_needs(name, {**settings, "keep_frames": config.get("keep_frames")}, source, results)
    return rows + size_rows, needs


def run_checks(config: Mapping, datasets: Sequence[str] | None = None, results: Path | str = "results") -> list[Check]:
    """Every check a validated `config` needs for `datasets` (default: its targets)."""
    from vis4mer.sources import source_class

    results = Path(results)
    names = list(datasets or config["targets"])
    if unknown := [n for n in names if n not in config["datasets"]]:
        raise ValueError(f"unknown dataset(s) {unknown}; the config has {sorted(config['datasets'])}")
    rows = check_gpus()
    rows += check_decoding(sorted({config["datasets"][n]["frames"]["decoder"] for n in names}))
    downloading = [n for n in names if source_class(config["datasets"][n]["source"]).downloads]
    youtube = [n for n in downloading if "youtube" in str(config["datasets"][n]["download"]["source"])]
    if youtube:
        runtimes = sorted({r for n in youtube for r in config["datasets"][n]["download"]["js_runtimes"]})
        rows.append(check_js_runtime(runtimes))
    needs: list[SpaceNeed] = []
    for name in names:
        dataset_rows, dataset_needs = check_dataset(name, config, results)
        rows += dataset_rows
        needs += dataset_needs
    if needs:
        rows += check_disk(needs)
    return rows
