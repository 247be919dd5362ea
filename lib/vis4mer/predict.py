"""Predictions on new videos from a training checkpoint, in batch or streaming mode.

Everything about the input side comes from the checkpoint (nothing is re-typed by the
user): frames are decoded as the pipeline decoded them (:func:`vis4mer.frames.decode_video`
at the recorded frame rate, size, decoder and resize), features are extracted by the same
backbone (timm name, img_size, the recorded pixel normalisation, and weights: the seeded random
network of ``random-seed<N>``, or the checkpoint file whose sha256 is the recorded weights id),
and the windows are scored
exactly as evaluation scores them (:func:`vis4mer.evaluation.predict_videos` over an
in-memory feature store: :func:`vis4mer.windows.window_starts`, end padding, summed
softmax or mean through :func:`vis4mer.evaluation.aggregate_windows`).

Batch mode holds one video's frames and features in memory. Streaming mode
(:class:`vis4mer.streaming.WindowedStream`, ViS4mer only) decodes CHUNK_FRAMES frames at a
time (:func:`vis4mer.frames.iter_video_chunks`) and advances the recurrent model frame by
frame, so memory is bounded by one chunk and one window whatever the video's length; its
final prediction equals batch mode's.

Classification: the probabilities are the summed per-window softmax divided by the number
of windows. Regression: the mean per-window output is the model's *target*; the value in
the task's own units (e.g. a like ratio, a view count) is the inverse of the label
transform the pipeline applied to the split files (:func:`raw_from_target`).

Errors: :class:`vis4mer.checkpoint.CheckpointError` and :class:`PredictError` (e.g.
:class:`BackboneError`) concern the model (nothing can be predicted: a usage error);
:class:`vis4mer.frames.VideoError` concerns one video (the others go on).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from vis4mer.checkpoint import CheckpointError, read_checkpoint, rebuild_model, required_field
from vis4mer.devices import resolve_device
from vis4mer.frames import VIDEO_EXTENSIONS, VideoError, check_video_file, decode_video, iter_video_chunks
from vis4mer.windows import TOKEN_MODES, select_tokens, window_starts
from vis4mer.evaluation import predict_videos
from vis4mer.labels import LabelTransform, raw_from_target, target_quantity
from vis4mer.sources.splits import SplitRow
from vis4mer.weights import ResolvedWeights

RANDOM_WEIGHTS = re.compile(r"random-seed(-?\d+)")
SHA256 = re.compile(r"[0-9a-f]{64}")
logger = logging.getLogger("vis4mer.predict")


class PredictError(Exception):
    """Nothing can be predicted with this model: a usage error (exit status 2 in the CLI)."""


class BackboneError(PredictError):
    """The backbone cannot be rebuilt as it was for training, or gives other features."""


# --------------------------------------------------------------------------- checkpoint


@dataclass(frozen=True)
class InferenceSpec:
    """What inference needs from a checkpoint, validated (see :meth:`from_checkpoint`)."""

    arch: str
    task_type: str
    label_names: tuple[str, ...]
    d_output: int
    backbone: str
    weights: str  # "random-seed<N>", hf-hub:<repo>@<revision>, url:<URL>, or the sha256 of a weights file
    backbone_checkpoint: str  # the path the features stage read the weights from ("" for random)
    img_size: int | None  # passed to timm (None: the backbone's default)
    fps: float
    frame_size: int
    decoder: str
    resize: str  # vis4mer.frames.RESIZE_MODES, as the features' frames were resized
    normalise: str  # vis4mer.features.NORMALISE_MODES, as the features' pixels reached the backbone
    window_frames: int
    tokens: str
    n_tokens: int
    dim: int
    eval_stride_frames: int | None
    label_column: str | None
    label_transform: dict[str, Any] | None  # None for classification
    weights_sha256: str = ""  # of the weights file ("" for random, and for features made before it was recorded)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], path="checkpoint") -> InferenceSpec:
        """Read and check the fields; a missing one raises CheckpointError naming it."""
        arch = required_field(checkpoint, "model.arch", path, "the model's architecture")
        kwargs = required_field(checkpoint, "model.kwargs", path, "the model's hyper-parameters")
        task_type = required_field(checkpoint, "task.type", path, "classification or regression")
        label_names = tuple(required_field(checkpoint, "task.label_names", path, "the class names"))
        backbone = required_field(checkpoint, "features.backbone", path, "the feature extractor")
        weights = str(required_field(checkpoint, "features.weights", path, "the backbone's weights id"))
        img_size = required_field(checkpoint, "features.img_size", path, "the backbone's input size")
        n_tokens = int(required_field(checkpoint, "features.n_tokens", path, "tokens per frame of the features"))
        dim = int(required_field(checkpoint, "features.dim", path, "the feature width"))
        window_frames = int(required_field(checkpoint, "window_frames", path, "frames per window"))
        tokens = required_field(checkpoint, "tokens", path, "tokens per frame fed to the model (all | cls)")
        fps = float(required_field(checkpoint, "frames.fps", path, "the frame rate the videos were sampled at"))
        frame_size = int(required_field(checkpoint, "frames.size", path, "the size frames were resized and cropped to"))
        decoder = required_field(checkpoint, "frames.decoder", path, "the video decoder")
        ignored = sorted(set(checkpoint["frames"]) - {"fps", "size", "decoder"})
        if ignored:
            logger.warning(
                "%s: frames settings %s are recorded but not applied to new videos (the whole video is sampled)",
                path, {key: checkpoint["frames"][key] for key in ignored},
            )
        label_column = label_transform = None
        if task_type == "regression":
            target = required_field(checkpoint, "target.label_transform", path, "the regression target's transform, to invert it")
            label_transform = dict(target)
            label_column = checkpoint["target"].get("label_column")
            try:
                LabelTransform.from_config(label_column, label_transform, "target.label_transform")
            except ValueError as error:
                raise CheckpointError(f"{path}: {error}") from None
        elif task_type != "classification":
            raise CheckpointError(f"{path}: task.type is {task_type!r}, expected classification or regression")
        if tokens not in TOKEN_MODES:
            raise CheckpointError(f"{path}: tokens is {tokens!r}, expected one of {TOKEN_MODES}")
        stride = checkpoint.get("eval_stride_frames")
        d_output = int(kwargs.get("d_output", 0))
        if task_type == "classification" and len(label_names) != d_output:
            raise CheckpointError(f"{path}: {len(label_names)} label names for a model with {d_output} outputs")
        if int(kwargs.get("d_input", dim)) != dim:
            raise CheckpointError(f"{path}: model.kwargs.d_input={kwargs['d_input']} but features.dim={dim}")
        return cls(
            arch=arch, task_type=task_type, label_names=label_names, d_output=d_output, backbone=backbone,
            weights=weights, backbone_checkpoint=str(checkpoint["features"].get("checkpoint") or ""),
            weights_sha256=str(checkpoint["features"].get("weights_sha256") or ""),
            img_size=int(img_size) or None, fps=fps, frame_size=frame_size, decoder=decoder,
            # features made before the recipe recorded these were cropped and normalised
            resize=str(checkpoint["features"].get("resize") or "crop"),
            normalise=str(checkpoint["features"].get("normalise") or "backbone"),
            window_frames=window_frames, tokens=tokens, n_tokens=n_tokens, dim=dim,
            eval_stride_frames=int(stride) if stride else None, label_column=label_column, label_transform=label_transform,
        )


# --------------------------------------------------------------------------- inputs


def expand_inputs(inputs: Sequence[str | Path]) -> list[tuple[str, Path | None, str | None]]:
    """``(shown name, path, error)`` per video: directories become their video files
    (by extension, sorted, not recursive); an empty directory is one entry with an error."""
    expanded: list[tuple[str, Path | None, str | None]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not files:
                expanded.append((str(item), None, f"no video files in directory {item} (looked for {', '.join(VIDEO_EXTENSIONS)})"))
            expanded.extend((str(p), p, None) for p in files)
        else:
            expanded.append((str(item), path, None))
    return expanded


# --------------------------------------------------------------------------- results


@dataclass
class VideoPrediction:
    """One video's result: the aggregated vector as evaluation computes it, and counts."""

    path: str
    vector: np.ndarray  # summed softmax [n_classes] | mean output [1]
    n_frames: int
    n_windows: int
    seconds: float
    running: list[dict[str, Any]]


class _InMemoryFeatures:
    """The part of :class:`vis4mer.feature_store.FeatureStore` that evaluation reads, for one video in memory."""

    def __init__(self, video_id: str, features: np.ndarray):
        self.video_id, self.features = video_id, features  # float16 [T, tokens, dim], as the shards store them
        self.n_tokens, self.dim = int(features.shape[1]), int(features.shape[2])

    def __contains__(self, video_id: str) -> bool:
        return video_id == self.video_id

    def n_frames(self, video_id: str) -> int:
        return len(self.features)

    def read(self, video_id: str, start: int = 0, stop: int | None = None, tokens: str = "all") -> np.ndarray:
        return np.asarray(select_tokens(self.features[start:stop], tokens), dtype=np.float32)


class Predictor:
    """A checkpoint's model with the backbone its features came from.

    `backbone_checkpoint` only locates the backbone's weights file when the recorded path
    is not at hand; its sha256 must equal the recorded weights id.
    """

    def __init__(
        self,
        checkpoint_path,
        *,
        device: str | None = None,
        backbone_checkpoint=None,
        stride_frames: int | None = None,
        feature_batch_size: int = 32,
        window_batch_size: int = 32,
        progress: bool | None = False,
    ):
        self.path = Path(checkpoint_path)
        checkpoint = read_checkpoint(self.path)  # the one read of the file
        self.device = resolve_device(device)
        self.spec = InferenceSpec.from_checkpoint(checkpoint, self.path)  # names a missing field
        self.model = rebuild_model(checkpoint, self.path, self.device)
        self.checkpoint_info = {key: checkpoint.get(key) for key in ("run", "epoch", "val_metric", "dataset", "task_name")}
        self.stride = int(stride_frames or self.spec.eval_stride_frames or 1)
        if self.stride < 1:
            raise PredictError(f"the stride must be >= 1 frame, got {self.stride}")
        self.window_batch_size = window_batch_size
        self.progress = progress
        self.encoder = self._build_encoder(backbone_checkpoint, feature_batch_size)

    def check_streamable(self) -> None:
        """Raise PredictError unless the model has a recurrent mode (ViS4mer)."""
        from vis4mer.model import ViS4mer

        if not isinstance(self.model, ViS4mer):
            raise PredictError(
                f"streaming needs a vis4mer model (its S4 layers have a recurrent mode); {self.path} holds a "
                f"{self.spec.arch!r} model, whose output depends on the whole window at once: predict without --stream"
            )

    # -- backbone
    def _weights(self, backbone_checkpoint) -> tuple[ResolvedWeights, int]:
        """(weights for build_backbone, seed), checked against the recorded weights id: the seeded
        random network, the hub/URL weights it names (from the cache), or the weights file."""
        from vis4mer.weights import WeightsUnavailable, file_sha256, from_identity, random_identity

        spec, weights = self.spec, self.spec.weights
        random = RANDOM_WEIGHTS.fullmatch(weights)
        if random:
            if backbone_checkpoint is not None:
                raise BackboneError(
                    f"the model was trained on features of a randomly initialised {spec.backbone} (weights {weights!r}); "
                    f"it is rebuilt from that seed, so --backbone-checkpoint {backbone_checkpoint} does not apply"
                )
            seed = int(random.group(1))
            return ResolvedWeights("random", random_identity(seed)), seed
        if weights.startswith(("hf-hub:", "url:")) and backbone_checkpoint is None:
            try:
                return from_identity(weights, spec.weights_sha256 or None, spec.backbone), 0
            except WeightsUnavailable as error:
                raise BackboneError(f"{error} (or pass the weights file with --backbone-checkpoint PATH)") from None
        expected = spec.weights_sha256 or weights
        if not SHA256.fullmatch(expected):
            raise BackboneError(
                f"{self.path}: features.weights is {weights!r}, neither random-seed<N> nor a sha256 nor pretrained "
                "weights (hf-hub:<repo>@<revision>, url:<URL>): "
                "the backbone cannot be rebuilt as it was (features extracted before random backbones were seeded?); "
                "re-extract the features and re-train"
            )
        candidates = [Path(backbone_checkpoint)] if backbone_checkpoint is not None else []
        if not candidates and spec.backbone_checkpoint:
            candidates = [Path(spec.backbone_checkpoint)]
        if not candidates:
            raise BackboneError(f"the backbone weights file (sha256 {expected}) is needed: pass --backbone-checkpoint PATH")
        path = candidates[0]
        if not path.is_file():
            where = "--backbone-checkpoint" if backbone_checkpoint is not None else "the path recorded at feature extraction"
            raise BackboneError(f"backbone weights file {path} ({where}) does not exist; pass --backbone-checkpoint PATH")
        digest = file_sha256(path)
        if digest != expected:
            raise BackboneError(
                f"backbone weights file {path} has sha256 {digest}, but the model was trained on features from "
                f"weights {expected}: refusing a different backbone"
            )
        setting = "pretrained" if weights.startswith(("hf-hub:", "url:")) else str(path)
        return ResolvedWeights(setting, weights, path, digest), 0

    def _build_encoder(self, backbone_checkpoint, batch_size: int):
        from vis4mer.features import FrameEncoder, build_backbone

        spec = self.spec
        try:
            from vis4mer.compat import import_timm

            known = import_timm().is_model(spec.backbone)
        except ImportError as error:
            raise BackboneError(f"timm is needed to rebuild the backbone {spec.backbone}: {error}") from error
        if not known:
            raise BackboneError(
                f"the model was trained on {spec.backbone!r} features, which is not a timm per-frame backbone; "
                "vis4mer predict supports per-frame timm backbones (Video Swin segment features are not supported yet)"
            )
        resolved, seed = self._weights(backbone_checkpoint)
        model, weights = build_backbone(spec.backbone, resolved, spec.img_size, seed=seed)
        if weights != spec.weights:  # build_backbone's own id must agree (same seed, same file)
            raise BackboneError(f"rebuilt backbone has weights {weights!r}, the model was trained on {spec.weights!r}")
        input_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
        if input_size is not None and tuple(input_size) != (spec.frame_size, spec.frame_size):
            raise BackboneError(
                f"{spec.backbone} at img_size {spec.img_size} expects {tuple(input_size)} frames, "
                f"but frames are {spec.frame_size}x{spec.frame_size} (frames.size)"
            )
        encoder = FrameEncoder(model, batch_size, self.device, normalise=spec.normalise)
        probe = encoder(np.zeros((1, spec.frame_size, spec.frame_size, 3), dtype=np.uint8))
        if tuple(probe.shape[1:]) != (spec.n_tokens, spec.dim):
            raise BackboneError(
                f"{spec.backbone} gives [tokens, dim] = [{probe.shape[1]}, {probe.shape[2]}] per frame, the model was "
                f"trained on features of [{spec.n_tokens}, {spec.dim}]"
            )
        return encoder

    # -- frames and features
    def _encode(self, frames: np.ndarray, bar) -> np.ndarray:
        """float16 [T, tokens, dim] of uint8 frames, as the features stage stores them."""
        chunks = []
        for start in range(0, len(frames), self.encoder.batch_size):
            chunks.append(self.encoder(frames[start : start + self.encoder.batch_size]))
            bar.update(len(chunks[-1]))
        return np.concatenate(chunks)

    def _frames_bar(self, name: str, total: int | None):
        return tqdm(total=total, desc=Path(name).name[:40], unit="frame", leave=False, disable=self._bar_disabled())

    def _bar_disabled(self):
        return None if self.progress is None else not self.progress

    def predict(self, path) -> VideoPrediction:
        """Batch mode: every window at the stride, as evaluation does. Raises VideoError."""
        started = time.perf_counter()
        path = Path(path)
        check_video_file(path)
        spec = self.spec
        try:
            frames, _native_fps, _n_native = decode_video(path, spec.fps, spec.frame_size, spec.decoder, resize=spec.resize)
        except Exception as error:
            raise VideoError(f"{spec.decoder} could not decode {path}: {type(error).__name__}: {error}") from error
        if len(frames) == 0:
            raise VideoError(f"no frames decoded from {path}")
        with self._frames_bar(str(path), len(frames)) as bar:
            features = self._encode(frames, bar)
        del frames
        row = SplitRow("video", 0, None)
        vectors, counts = predict_videos(
            self.model, _InMemoryFeatures("video", features), [row],
            window_frames=spec.window_frames, tokens=spec.tokens, stride_frames=self.stride,
            batch_size=self.window_batch_size, device=self.device, task_type=spec.task_type,
        )
        return VideoPrediction(str(path), vectors["video"], len(features), counts["n_windows"], time.perf_counter() - started, [])

    def stream(self, path, every_seconds: float | None = None, on_update: Callable[[dict[str, Any]], None] | None = None) -> VideoPrediction:
        """Streaming mode (ViS4mer only): frame by frame through the recurrent model.

        Every `every_seconds` of video, the running prediction (see
        :meth:`WindowedStream.prediction`) is appended to ``running`` and passed to
        `on_update`. The final vector equals :meth:`predict`'s.
        """
        from vis4mer.streaming import WindowedStream

        self.check_streamable()
        started = time.perf_counter()
        path = Path(path)
        check_video_file(path)
        spec = self.spec
        stream = WindowedStream(self.model, spec.window_frames, self.stride, spec.task_type)
        every = max(1, round(every_seconds * spec.fps)) if every_seconds else 0
        running: list[dict[str, Any]] = []
        chunks = iter_video_chunks(path, spec.fps, spec.frame_size, spec.decoder, resize=spec.resize)
        with self._frames_bar(str(path), None) as bar:
            for chunk in _decoding(chunks, path, spec.decoder):
                features = self._encode(chunk, bar)  # float16 [n, tokens, dim]
                for frame in select_tokens(features, spec.tokens):
                    stream.push_frame(torch.from_numpy(frame.astype(np.float32)))
                    if every and stream.frames_seen % every == 0:
                        # completed windows so far (summed), or the oldest open one read out now
                        update = {"t": stream.frames_seen / spec.fps, "n_frames": stream.frames_seen,
                                  "n_windows": stream.n_completed,
                                  **self.describe(stream.prediction(), max(1, stream.n_completed))}
                        running.append(update)
                        if on_update is not None:
                            on_update(update)
        if stream.frames_seen == 0:
            raise VideoError(f"no frames decoded from {path}")
        n_windows = len(window_starts(stream.frames_seen, spec.window_frames, self.stride))
        return VideoPrediction(str(path), stream.final(), stream.frames_seen, n_windows, time.perf_counter() - started, running)

    # -- reading out
    def describe(self, vector: np.ndarray, n_windows: int, top_k: int | None = None) -> dict[str, Any]:
        """JSON-ready prediction: probabilities and the top-k classes, or the regression value."""
        spec = self.spec
        vector = np.asarray(vector, dtype=np.float64)
        if spec.task_type == "classification":
            probabilities = vector / n_windows
            order = np.argsort(-probabilities, kind="stable")[: top_k or len(probabilities)]
            top = [{"class": int(i), "label": spec.label_names[i], "probability": float(probabilities[i])} for i in order]
            return {"label": top[0]["label"], "class": top[0]["class"], "probability": top[0]["probability"],
                    "top_k": top, "probabilities": [float(p) for p in probabilities]}
        target = float(vector[0])
        return {"value": raw_from_target(target, spec.label_transform),
                "quantity": target_quantity(spec.label_column, spec.label_transform), "target": target}


def _decoding(chunks: Iterator[np.ndarray], path: Path, decoder: str) -> Iterator[np.ndarray]:
    """`chunks`, with a decoder failure (at open or mid-way) turned into VideoError."""
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except Exception as error:
            raise VideoError(f"{decoder} could not decode {path}: {type(error).__name__}: {error}") from error
        yield chunk
