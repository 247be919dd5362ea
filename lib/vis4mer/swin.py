"""Video Swin clip features (mmaction2's ``SwinTransformer3D``), written as a features shard.

ViS4mer's Breakfast and COIN experiments use Video Swin-B (Kinetics-600, ImageNet-22k
pre-training) as a frozen clip encoder. Per video:

- frames are read at the video's native frame rate, in segments of SEGMENT_FRAMES = 32
  consecutive frames (the range may be restricted, e.g. to COIN's annotated start-end;
  seconds become frame indices through the average frame rate, as in vis4mer.frames);
- the segments start where ``segment_starts`` puts them, by rule (SEGMENT_RULES): at most
  `max_segments` of them covering the range (``cover``, ours), or as the reference code's
  extraction did, exactly `max_segments` uniformly spaced (``uniform``, its test videos) or
  one starting at every frame of a video shorter than `max_segments` + 32 frames (``dense``,
  its training videos);
- each frame becomes `size` x `size` (``vis4mer.frames.VideoReader``, which decodes: shorter
  side and centre crop, or squashed, ``resize``), then pixels in [0, 1] standardised with Video
  Swin's RGB mean/std (``normalise: backbone``) or as they are (``none``, the reference code:
  its ``extract_feat`` calls the backbone directly, without the pipelines' normalisation);
- the backbone maps a segment [3, 32, size, size] to [C, 16, size/32, size/32]; the time
  axis is averaged, leaving (size/32)^2 spatial tokens of width C. Swin-B at 224 px:
  7 x 7 = 49 tokens x 1024, so 64 test segments give L = 64 x 49 = 3136 tokens.

One dataset per video, float16 [S, tokens, C], with attrs backbone, weights, fps
(native), n_segments, segment_frames, n_native_frames, source_video (and start/end,
the requested range in seconds, when a range was given); the shard's attrs record the
segment rules used, the resize and the normalisation. Missing, empty or
undecodable videos are recorded with ``ShardWriter.skip`` and the loop goes on.

Weights (``features.weights``, resolved by :mod:`vis4mer.weights`): the released checkpoint
(``BACKBONES[...].url``, downloaded once into torch.hub's cache; recorded as ``url:<URL>``), a
local file (sha256 recorded), either in one of two key layouts (see ``to_mmaction2_keys``), or
a random network from a seed: logged as a WARNING and recorded as ``weights="random-seed<N>"``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
import re
import sys
import types
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vis4mer._logging import logger
from vis4mer.devices import resolve_device
from vis4mer.features import NORMALISE_MODES, seeded_init
from vis4mer.frames import RESIZE_MODES, VideoError, VideoReader, import_decoder, open_video, video_file_problem
from vis4mer.shards import ShardWriter, nonfinite_problem
from vis4mer.weights import ResolvedWeights, as_weights, file_sha256

SEGMENT_FRAMES = 32
# Where the segments of a video start (segment_starts): ours, the reference code's test videos,
# the reference code's training videos.
SEGMENT_RULES = ("cover", "uniform", "dense")
# Video Swin's img_norm_cfg (ImageNet statistics, RGB, 0-255 scale), also used for Kinetics.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SwinConfig:
    """Architecture of a ``SwinTransformer3D``; output width is embed_dims * 2^(stages-1)."""

    embed_dims: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    patch_size: tuple[int, int, int] = (2, 4, 4)
    window_size: tuple[int, int, int] = (8, 7, 7)
    url: str | None = None  # the released checkpoint (features.weights: pretrained)

    @property
    def out_dim(self) -> int:
        return self.embed_dims * 2 ** (len(self.depths) - 1)

    @property
    def spatial_stride(self) -> int:
        """Pixels per output token side: the patch, then one 2x merge per later stage (32)."""
        return self.patch_size[1] * 2 ** (len(self.depths) - 1)


BACKBONES: dict[str, SwinConfig] = {
    # Video Swin-B as released with Video-Swin-Transformer and used by ViS4mer.
    "swin_base_patch244_window877_kinetics600_22k": SwinConfig(
        128, (2, 2, 18, 2), (4, 8, 16, 32),
        url="https://github.com/SwinTransformer/storage/releases/download/v1.0.4/swin_base_patch244_window877_kinetics600_22k.pth",
    ),
    # Same structure at toy width and depth, for tests: output width 128.
    "swin_test_patch244_window877": SwinConfig(16, (1, 1, 1, 1), (1, 2, 2, 4)),
}


def swin_config(backbone: str) -> SwinConfig:
    """The SwinConfig of `backbone`; a ValueError lists the known names otherwise."""
    try:
        return BACKBONES[backbone]
    except KeyError:
        raise ValueError(f"unknown Swin backbone {backbone!r}; known: {', '.join(BACKBONES)}") from None


class _MissingDRN(torch.nn.Module):
    """Stand-in for mmaction2's DRN localizer, which its 1.2.0 release does not ship."""

    def __init__(self, *args, **kwargs):
        raise ImportError("mmaction.models.localizers.drn is missing from the mmaction2 1.2.0 release")


def import_swin3d() -> type[torch.nn.Module]:
    """Return mmaction2's ``SwinTransformer3D`` class, working around its packaging.

    - The mmaction2 1.2.0 wheel and sdist lack the package
      ``mmaction.models.localizers.drn``, yet ``mmaction/models/localizers/__init__.py``
      runs ``from .drn.drn import DRN``, and importing any backbone imports
      ``mmaction.models`` first. Unless the package exists on disk, empty stand-in
      modules (with a DRN that refuses to be built) are registered in ``sys.modules``
      before the import.
    - mmaction2 imports ``importlib_metadata`` without declaring it; it is pinned in
      requirements/base.txt, and its absence is reported here with that hint.
    - Import-time warnings that say nothing about the backbone are silenced: mmcv-lite has
      no compiled ops, so mmcv warns that ``MultiScaleDeformableAttention`` cannot be
      imported (unused by Swin), and mmengine's optimizers import ``torch.distributed.optim``,
      whose ``torch.jit.script`` calls are deprecated in torch 2.13.

    Idempotent. Note that ``SwinTransformer3D.eval()`` returns None (its ``train``
    override returns nothing): do not chain it.
    """
    module = sys.modules.get("mmaction.models.backbones.swin")
    if module is not None:
        return module.SwinTransformer3D
    if importlib.util.find_spec("importlib_metadata") is None:
        raise ImportError("mmaction2 needs importlib-metadata (undeclared by it): run scripts/setup.sh")
    spec = importlib.util.find_spec("mmaction")
    if spec is None:
        raise ImportError("mmaction2 is not installed: run scripts/setup.sh (requirements/base.txt pins it)")
    drn_dir = Path(spec.origin).parent / "models" / "localizers" / "drn"
    if not drn_dir.is_dir() and "mmaction.models.localizers.drn" not in sys.modules:
        package = types.ModuleType("mmaction.models.localizers.drn")
        package.__path__ = []  # a package, so that `.drn.drn` resolves
        stand_in = types.ModuleType("mmaction.models.localizers.drn.drn")
        stand_in.DRN = _MissingDRN
        sys.modules[package.__name__] = package
        sys.modules[stand_in.__name__] = stand_in
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
        warnings.filterwarnings("ignore", message=".*torch\\.jit\\.(script|interface).*", category=DeprecationWarning)
        from mmaction.models.backbones.swin import SwinTransformer3D
    return SwinTransformer3D


@dataclass(frozen=True)
class CheckpointReport:
    """What loading weights did: recorded in the features shard's file attrs."""

    weights: str  # the identity of vis4mer.weights: "random-seed<N>", the file's sha256, or url:<URL>
    layout: str = "none"  # "none" | "mmaction2" | "video-swin"
    missing_keys: tuple[str, ...] = ()
    unexpected_keys: tuple[str, ...] = ()
    ignored_keys: tuple[str, ...] = ()  # outside `backbone.` (the classifier head)

    def as_attrs(self) -> dict[str, str]:
        return {
            "weights": self.weights,
            "checkpoint_layout": self.layout,
            "missing_keys": json.dumps(list(self.missing_keys)),
            "unexpected_keys": json.dumps(list(self.unexpected_keys)),
            "ignored_keys": json.dumps(list(self.ignored_keys)),
        }


def to_mmaction2_keys(state_dict: dict, final_norm: str) -> tuple[dict, str, list[str]]:
    """(state dict in mmaction2 1.x ``SwinTransformer3D`` names, layout, ignored keys).

    Both released layouts store a whole recognizer under ``state_dict``: backbone keys
    prefixed ``backbone.`` and the classifier under ``cls_head.`` (ignored here). The
    backbone names of the original Video-Swin-Transformer code and of mmaction2 1.x are
    identical (patch_embed.{proj,norm}, layers.i.blocks.j.{norm1, attn.qkv, attn.proj,
    attn.relative_position_bias_table, attn.relative_position_index, norm2, mlp.fc1,
    mlp.fc2}, layers.i.downsample.{norm, reduction}) except for the final LayerNorm:
    ``norm.*`` in the original, ``norm3.*`` (``final_norm``) in mmaction2. A bare backbone
    state dict (no prefix) and DDP's ``module.`` prefix are accepted too.
    """
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    ignored: list[str] = []
    if any(key.startswith("backbone.") for key in state_dict):
        ignored = sorted(key for key in state_dict if not key.startswith("backbone."))
        prefix = len("backbone.")
        state_dict = {key[prefix:]: value for key, value in state_dict.items() if key.startswith("backbone.")}
    if any(key.startswith("norm.") for key in state_dict):
        state_dict = {
            f"{final_norm}.{key[len('norm.'):]}" if key.startswith("norm.") else key: value
            for key, value in state_dict.items()
        }
        return state_dict, "video-swin", ignored
    return state_dict, "mmaction2", ignored


def _torch_load(path: Path) -> dict:
    """Tensors-only unpickling first; full unpickling (with a warning) for checkpoints whose
    training metadata holds other objects (numpy values, mmengine message hubs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        logger.warning(
            "checkpoint %s holds non-tensor objects (%s); loading it with full unpickling - "
            "only use checkpoint files you trust",
            path,
            match.group(1) if match else "not loadable with weights_only=True",
        )
        return torch.load(path, map_location="cpu", weights_only=False)


def load_swin_checkpoint(model: torch.nn.Module, checkpoint) -> CheckpointReport:
    """Load a local checkpoint file (either key layout) into `model`.

    Missing and unexpected keys are logged as warnings and returned; missing
    ``relative_position_index`` buffers are not reported (they are constants the model
    builds itself). A checkpoint sharing no key with the model, or with a tensor of the
    wrong shape, is an error naming the file.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Swin checkpoint {path} does not exist")
    loaded = _torch_load(path)
    if not isinstance(loaded, dict):
        raise ValueError(f"checkpoint {path} holds a {type(loaded).__name__}, not a state dict")
    for key in ("state_dict", "model"):
        if isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    final_norm = f"norm{len(model.layers) - 1}"
    state_dict, layout, ignored = to_mmaction2_keys(loaded, final_norm)
    model_keys = set(model.state_dict())
    if not model_keys & set(state_dict):
        first_keys = sorted(loaded)[:5]
        raise ValueError(f"checkpoint {path} shares no parameter name with SwinTransformer3D (first keys: {first_keys})")
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {path} does not fit this Swin configuration: {error}") from None
    missing = tuple(key for key in result.missing_keys if not key.endswith("relative_position_index"))
    unexpected = tuple(result.unexpected_keys)
    if ignored:
        logger.info("checkpoint %s: ignored %d keys outside the backbone (e.g. %s)", path, len(ignored), ignored[0])
    if missing:
        logger.warning("checkpoint %s: %d missing keys: %s", path, len(missing), list(missing))
    if unexpected:
        logger.warning("checkpoint %s: %d unexpected keys: %s", path, len(unexpected), list(unexpected))
    return CheckpointReport(file_sha256(path), layout, missing, unexpected, tuple(ignored))


def _init_random(module: torch.nn.Module) -> None:
    """Video Swin's own initialisation: truncated normal (std 0.02) Linear weights, zero biases."""
    if isinstance(module, torch.nn.Linear):
        torch.nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.LayerNorm):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)


def build_swin(backbone: str, weights: ResolvedWeights | str | Path | None = None, seed: int = 0) -> tuple[torch.nn.Module, CheckpointReport]:
    """(SwinTransformer3D of `backbone` in eval mode, report of the weights loaded).

    `weights` come from vis4mer.weights.resolve_weights (the release URL of
    BACKBONES[backbone] for pretrained ones), or are a weights file, or None: a random network
    initialised from `seed`, which is logged as a WARNING.
    """
    weights = as_weights(weights, seed)
    config = swin_config(backbone)
    swin3d = import_swin3d()
    with warnings.catch_warnings(), seeded_init(seed) as random_id:
        warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")  # mmaction2's window index code
        model = swin3d(
            arch={"embed_dims": config.embed_dims, "depths": list(config.depths), "num_heads": list(config.num_heads)},
            pretrained=None,
            pretrained2d=False,  # True would try to inflate 2D ImageNet weights from `pretrained`
            patch_size=config.patch_size,
            window_size=config.window_size,
        )
        if weights.is_random:
            model.apply(_init_random)
    if weights.is_random:
        logger.warning(
            "features.weights: random for %s: features come from RANDOM weights (recorded as weights=%r); "
            "fine for the demo and tests, meaningless for real data",
            backbone, random_id,
        )
        report = CheckpointReport(random_id)
    else:
        report = replace(load_swin_checkpoint(model, weights.file), weights=weights.identity)
    model.eval()  # returns None for SwinTransformer3D
    return model, report


def segment_starts(n_frames: int, max_segments: int, segment_frames: int = SEGMENT_FRAMES, rule: str = "cover") -> np.ndarray:
    """int64 [S] first frame of each segment, relative to the start of a range of `n_frames`.

    `rule` (SEGMENT_RULES):

    - ``cover`` (ours): S = min(max_segments, ceil(n_frames / segment_frames)) (at least 1).
      Segment i is centred in the i-th of S equal parts of the range and shifted to lie inside
      it, so with S = ceil(n / 32) the segments cover every frame (overlapping slightly when n
      is not a multiple of 32) and with fewer they are spread uniformly.
    - ``uniform`` (the reference code's test videos): exactly S = max_segments segments,
      starting at floor(i (n - 32) / S), uniformly over the whole range, repeated when the range
      is short (what the reference's 64 test segments, or its repetition of fewer, amount to).
    - ``dense`` (the reference code's training videos): a segment starting at every frame,
      0 .. n - 33, when n < max_segments + 32; else ``uniform``.

    A range shorter than one segment gives segments starting at 0 (frame indices are clamped
    later, :func:`segment_indices`).
    """
    if n_frames < 1 or max_segments < 1:
        raise ValueError(f"need n_frames >= 1 and max_segments >= 1, got {n_frames} and {max_segments}")
    if rule not in SEGMENT_RULES:
        raise ValueError(f"unknown segment rule {rule!r}; choose one of {', '.join(SEGMENT_RULES)}")
    span = max(0, n_frames - segment_frames)  # the last start that keeps a segment inside the range
    if rule == "dense" and n_frames < max_segments + segment_frames:
        return np.arange(max(1, span), dtype=np.int64)
    if rule in ("dense", "uniform"):
        return np.arange(max_segments, dtype=np.int64) * span // max_segments
    n_segments = min(max_segments, math.ceil(n_frames / segment_frames))
    centres = (np.arange(n_segments) + 0.5) * n_frames / n_segments
    starts = np.floor(centres - segment_frames / 2 + 1e-9).astype(np.int64)
    return np.clip(starts, 0, span)


def frame_range(n_native: int, native_fps: float, start: float | None, end: float | None) -> tuple[int, int]:
    """[first, stop) native frame indices of the time range [start, end) seconds, clipped to the video.

    None means the video's start or end. Raises ValueError when nothing of the range is in the video.
    """
    first = 0 if start is None else max(0, math.floor(start * native_fps + 1e-6))
    stop = n_native if end is None else min(n_native, math.ceil(end * native_fps - 1e-6))
    if stop <= first:
        raise ValueError(
            f"range {start}-{end} s has no frames in a video of {n_native} frames at {native_fps:g} fps "
            f"({n_native / native_fps:.2f} s)"
        )
    return first, stop


def segment_indices(
    first: int, stop: int, max_segments: int, segment_frames: int = SEGMENT_FRAMES, rule: str = "cover"
) -> np.ndarray:
    """int64 [S, segment_frames] native frame indices of the segments of frames [first, stop)
    (:func:`segment_starts` by `rule`), clamped to the last frame of the range."""
    starts = first + segment_starts(stop - first, max_segments, segment_frames, rule)  # [S]
    return np.minimum(starts[:, None] + np.arange(segment_frames), stop - 1)


def _read_segment(video: VideoReader, indices: np.ndarray, size: int, resize: str) -> np.ndarray:
    """uint8 [len(indices), size, size, 3]; decoded and resized one segment at a time,
    so only one segment's full-resolution frames are in memory."""
    try:
        return video.read(indices, size, resize)
    except Exception as error:
        raise VideoError(f"{video.decoder} could not decode {video.path}: {type(error).__name__}: {error}") from error


class SegmentEncoder:
    """uint8 segments [B, 32, S, S, 3] -> float16 tokens [B, (S/32)^2, C] with a Swin3D backbone.

    `normalise` (vis4mer.features.NORMALISE_MODES): ``backbone`` standardises with MEAN/STD;
    ``none`` feeds pixels / 255, as the reference code did.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, normalise: str = "backbone"):
        if normalise not in NORMALISE_MODES:
            raise ValueError(f"unknown normalise {normalise!r}; choose one of {', '.join(NORMALISE_MODES)}")
        self.model = model.to(device)
        self.device = device
        mean, std = (MEAN, STD) if normalise == "backbone" else ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1, 1)

    @torch.inference_mode()
    def __call__(self, segments: np.ndarray) -> np.ndarray:
        clips = torch.from_numpy(segments).to(self.device).permute(0, 4, 1, 2, 3).float()  # [B, 3, T, S, S]
        clips = (clips - self.mean) / self.std
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            features = self.model(clips)  # [B, C, T/2, S/32, S/32]
        tokens = features.float().mean(dim=2).flatten(2).transpose(1, 2)  # [B, (S/32)^2, C]
        return tokens.cpu().numpy().astype(np.float16)


def _encode_video(
    encoder: SegmentEncoder,
    video: VideoReader,
    size: int,
    max_segments: int,
    batch_size: int,
    time_range: tuple[float, float] | None = None,
    rule: str = "cover",
    resize: str = "crop",
) -> np.ndarray:
    """float16 [S, tokens, C] of one opened video (whole, or the `time_range` in seconds)."""
    start, end = time_range if time_range is not None else (None, None)
    try:
        first, stop = frame_range(video.n_native, video.native_fps, start, end)
    except ValueError as error:
        raise VideoError(str(error)) from error
    indices = segment_indices(first, stop, max_segments, rule=rule)  # [S, 32]
    batches = []
    for batch_start in range(0, len(indices), batch_size):
        segments = np.stack([_read_segment(video, row, size, resize) for row in indices[batch_start : batch_start + batch_size]])
        batches.append(encoder(segments))  # [B, 32, size, size, 3] -> [B, tokens, C]
    return np.concatenate(batches)


def extract_swin_features_to_shard(
    videos: dict[str, Path],
    out_path,
    backbone: str,
    weights: ResolvedWeights | str | Path | None,
    max_segments: int | dict[str, int],
    batch_size: int,
    device: str | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
    size: int = 224,
    num_threads: int | None = None,
    seed: int = 0,
    skipped: dict[str, str] | None = None,
    segment_rule: str | dict[str, str] = "cover",
    resize: str = "crop",
    normalise: str = "backbone",
) -> dict[str, dict]:
    """Encode `videos` ({video_id: path}) into the features shard `out_path`.

    `max_segments` is one number for every video, or {video_id: number} covering every
    video (ViS4mer takes more segments of a training video than of a test video), and
    `segment_rule` (SEGMENT_RULES) one rule or {video_id: rule} covering every video (the
    reference code's extraction: ``dense`` for training videos, ``uniform`` for the others).
    `resize` (vis4mer.frames.RESIZE_MODES) and `normalise` (:class:`SegmentEncoder`) are
    recorded as shard attrs.
    `ranges` ({video_id: (start_s, end_s)}, e.g. COIN's annotated span) restricts each
    listed video to that time range; it must cover every video when given. `skipped`
    ({video_id: reason}) lists ids without a video file (e.g. unavailable for download):
    they are recorded as skipped with that reason. `size` must
    be a multiple of 32 (the backbone's token stride). Dataset per video: float16
    [S, (size/32)^2, C] with S <= max_segments and attrs backbone, weights, fps,
    n_segments, segment_frames, n_native_frames, source_video (+ start, end with
    `ranges`). Returns the shard manifest.

    `weights`: vis4mer.weights.resolve_weights, a weights file, or None for a random network
    initialised from `seed`.
    `num_threads` sets torch's CPU thread count for this process (pass the job's thread
    allowance), as in ``vis4mer.features``: OpenMP threads competing for busy cores slow
    CPU inference several-fold.
    """
    config = swin_config(backbone)
    if size % config.spatial_stride:
        raise ValueError(f"size {size} is not a multiple of {config.spatial_stride}, {backbone}'s token stride")
    per_video = max_segments if isinstance(max_segments, dict) else {video_id: max_segments for video_id in videos}
    if missing := sorted(set(videos) - set(per_video)):
        raise ValueError(f"`max_segments` has no number for {len(missing)} videos, e.g. {missing[:3]}")
    rules = segment_rule if isinstance(segment_rule, dict) else {video_id: segment_rule for video_id in videos}
    if missing := sorted(set(videos) - set(rules)):
        raise ValueError(f"`segment_rule` has no rule for {len(missing)} videos, e.g. {missing[:3]}")
    if unknown := sorted({rule for rule in rules.values()} - set(SEGMENT_RULES)):
        raise ValueError(f"unknown segment rule(s) {unknown}; choose from {', '.join(SEGMENT_RULES)}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    if min(per_video.values(), default=1) < 1 or batch_size < 1:
        raise ValueError(f"max_segments and batch_size must be >= 1, got {max_segments} and {batch_size}")
    if ranges is not None and (unranged := sorted(set(videos) - set(ranges))):
        raise ValueError(f"`ranges` has no (start, end) for {len(unranged)} videos, e.g. {unranged[:3]}")
    if overlap := sorted(set(videos) & set(skipped or {})):
        raise ValueError(f"videos {overlap[:5]} are both given and skipped")
    import_decoder("decord")

    if num_threads is not None:
        torch.set_num_threads(num_threads)

    weights = as_weights(weights, seed)
    model, report = build_swin(backbone, weights, seed)
    encoder = SegmentEncoder(model, resolve_device(device), normalise)
    attrs = {
        "segment_rules": json.dumps(sorted(set(rules[video_id] for video_id in videos))),
        "resize": resize,
        "normalise": normalise,
        "backbone": backbone,
        "checkpoint": str(weights.file or ""),
        "weights_sha256": weights.sha256 or "",
        "size": size,
        "max_segments": max(per_video.values(), default=0) if isinstance(max_segments, dict) else max_segments,
        "segment_frames": SEGMENT_FRAMES,
        **report.as_attrs(),
    }
    with ShardWriter(out_path, "features", attrs=attrs) as shard:
        for video_id, reason in sorted((skipped or {}).items()):
            logger.warning("skipping video %s: %s", video_id, reason)
            known_range = (ranges or {}).get(video_id)
            shard.skip(video_id, reason, **({"start": float(known_range[0]), "end": float(known_range[1])} if known_range else {}))
        for video_id in tqdm(sorted(videos), desc=f"swin {Path(out_path).name}", unit="video", disable=None):
            path = Path(videos[video_id])
            time_range = ranges[video_id] if ranges is not None else None
            range_attrs = {"start": float(time_range[0]), "end": float(time_range[1])} if time_range else {}
            reason = video_file_problem(path)
            if reason is None:
                try:
                    video = open_video(path, "decord")  # torchcodec when decord cannot open it (AV1)
                    tokens = _encode_video(
                        encoder, video, size, per_video[video_id], batch_size, time_range, rules[video_id], resize
                    )  # [S, tokens, C]
                except VideoError as error:
                    reason = str(error)
                else:
                    reason = nonfinite_problem(tokens)
            if reason is not None:
                logger.warning("skipping video %s: %s", video_id, reason)
                shard.skip(video_id, reason, source_video=str(path), **range_attrs)
                continue
            shard.add(
                video_id,
                tokens,
                backbone=backbone,
                weights=report.weights,
                fps=video.native_fps,
                n_segments=len(tokens),
                segment_frames=SEGMENT_FRAMES,
                n_native_frames=video.n_native,
                source_video=str(path),
                **range_attrs,
                **({"decoder": video.decoder, "decoder_fallback": video.fallback} if video.fallback else {}),
            )
    return shard.manifest
