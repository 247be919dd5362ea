"""Per-frame ViT token features of a frames shard, written as a features shard.

For every video of the frames shard (uint8 [T, S, S, 3]) the backbone's
``forward_features`` output is stored: all tokens including CLS, float16
[T, tokens, dim] (vit_large_patch16_224 at 224 px: [T, 197, 1024]). Videos the
frames stage skipped are carried forward as skipped, with their message. Pixels go in
scaled to [0, 1] and standardised with the backbone's mean/std (``normalise: backbone``,
ours) or as they are (``none``, the reference code's ViT features).

Weights (``features.weights``, resolved by :mod:`vis4mer.weights`): timm's pretrained
weights from the Hugging Face hub cache, loaded the way timm loads them; a local file (any
classifier head: the backbone is built without one, so a head is never loaded); or a seeded
random network (the same in every job, so shards of one dataset stay comparable), logged as
a warning and recorded as ``weights="random-seed<N>"`` so such features cannot be mistaken
for real ones. Shards record the weights' identity (hub repo@revision, or the file's sha256),
their sha256 and the file read.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vis4mer._logging import logger
from vis4mer.compat import import_timm
from vis4mer.devices import resolve_device
from vis4mer.shards import VIDEOS_GROUP, ShardWriter, nonfinite_problem, open_shard, read_manifest
from vis4mer.weights import PRETRAINED, ResolvedWeights, as_weights, file_sha256, random_identity

# How pixels in [0, 1] are fed to a backbone: standardised with its mean/std, or as they are
NORMALISE_MODES = ("backbone", "none")


@contextmanager
def seeded_init(seed: int):
    """Build a model inside this block to get the same random network in every process.

    The global RNG is forked, so the caller's random state is left untouched. Yields the
    weights id recorded for such features: ``random-seed<seed>``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield random_identity(seed)


def load_backbone_weights(model: torch.nn.Module, checkpoint) -> str:
    """Load a local checkpoint file into `model`; return the file's sha256.

    The file is read with timm's loader (.safetensors or a torch file; a state dict under
    "state_dict" or "model" is unwrapped, DDP's "module." prefix dropped). timm's own
    ``checkpoint_filter_fn`` of the model family is applied when it has one (for ViTs:
    resamples position embeddings to the model's img_size, converts other ViT checkpoint
    layouts). Keys of a classifier head the model does not have (it is built without one)
    are dropped; other missing and unexpected keys are logged; a checkpoint sharing no key
    with the model is an error.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint {path} does not exist")
    state_dict = import_timm().models.load_state_dict(str(path), use_ema=False)
    own = model.state_dict()
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or "head"
    head = [key for key in state_dict if key.startswith(f"{classifier}.") and key not in own]
    if head:
        logger.info("checkpoint %s: classifier head %s dropped (not needed for features)", path, head)
        state_dict = {key: value for key, value in state_dict.items() if key not in head}
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    result = model.load_state_dict(state_dict, strict=False)
    if len(result.missing_keys) == len(model.state_dict()):
        raise ValueError(f"checkpoint {path} shares no parameter name with {type(model).__name__}")
    if result.missing_keys:
        logger.warning("checkpoint %s: %d missing keys: %s", path, len(result.missing_keys), result.missing_keys)
    if result.unexpected_keys:
        logger.warning(
            "checkpoint %s: %d unexpected keys: %s", path, len(result.unexpected_keys), result.unexpected_keys
        )
    return file_sha256(path)


def build_backbone(
    backbone: str, weights: ResolvedWeights | str | Path | None = None, img_size: int | None = None, seed: int = 0
) -> tuple[torch.nn.Module, str]:
    """(timm model in eval mode, the weights' identity as recorded in shards).

    `weights`: resolved weights, a weights file, or None for a random network drawn from `seed`. Pretrained and file weights go into the backbone
    without a classifier head (``num_classes=0``), so a checkpoint's head of any size is
    never needed; pretrained ones are loaded by timm itself from the cached file.
    """
    timm = import_timm()
    weights = as_weights(weights, seed)
    overrides = {"img_size": img_size} if img_size is not None else {}
    if weights.is_random:
        with seeded_init(seed) as random_id:
            model = timm.create_model(backbone, pretrained=False, **overrides)
        logger.warning(
            "features.weights: random for %s: features come from RANDOM weights (recorded as weights=%r); "
            "fine for the demo and tests, meaningless for real data",
            backbone, random_id,
        )
        return model.eval(), random_id
    if weights.setting == PRETRAINED:
        model = timm.create_model(
            backbone, pretrained=True, pretrained_cfg_overlay={"file": str(weights.file)}, num_classes=0, **overrides
        )
    else:
        with seeded_init(seed):  # keys the file lacks (logged) get the same values in every job
            model = timm.create_model(backbone, pretrained=False, num_classes=0, **overrides)
        load_backbone_weights(model, weights.file)
    return model.eval(), weights.identity


class FrameEncoder:
    """uint8 frames [T, S, S, 3] -> float16 tokens [T, tokens, dim] with a timm backbone.

    Pixels are scaled to [0, 1], then (`normalise`, NORMALISE_MODES) standardised with the
    backbone's mean and std (``backbone``, ours), or fed as they are (``none``, the reference code).
    """

    def __init__(self, model: torch.nn.Module, batch_size: int, device: torch.device, normalise: str = "backbone"):
        if normalise not in NORMALISE_MODES:
            raise ValueError(f"unknown normalise {normalise!r}; choose one of {', '.join(NORMALISE_MODES)}")
        self.model = model.to(device)
        self.batch_size = batch_size
        self.device = device
        if normalise == "backbone":
            config = import_timm().data.resolve_model_data_config(model)
            mean, std = config["mean"], config["std"]
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [self._encode_batch(frames[start : start + self.batch_size]) for start in range(0, len(frames), self.batch_size)]
        )

    def _encode_batch(self, frames: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 255  # [B, 3, S, S]
        images = (images - self.mean) / self.std
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            tokens = self.model.forward_features(images)  # [B, tokens, dim]
        if tokens.ndim != 3:
            raise ValueError(f"forward_features gave shape {tuple(tokens.shape)}; expected [batch, tokens, dim]")
        return tokens.float().cpu().numpy().astype(np.float16)


def _check_input_size(model: torch.nn.Module, frames_file, frames_shard) -> None:
    """Fail before encoding when the frames' size is not the ViT's input size."""
    model_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    frame_size = int(frames_file.attrs["size"])
    if model_size is not None and tuple(model_size) != (frame_size, frame_size):
        raise ValueError(
            f"{frames_shard} holds {frame_size}x{frame_size} frames but the backbone expects "
            f"{model_size[0]}x{model_size[1]}: pass img_size={frame_size} or decode frames at {model_size[0]}"
        )


def extract_features_to_shard(
    frames_shard,
    out_path,
    backbone: str,
    weights: ResolvedWeights | str | Path | None,
    batch_size: int,
    device: str | None = None,
    img_size: int | None = None,
    num_threads: int | None = None,
    seed: int = 0,
    normalise: str = "backbone",
) -> dict[str, dict]:
    """Encode every video of `frames_shard` into the features shard `out_path`.

    `weights`: vis4mer.weights.resolve_weights, a weights file, or None for a random network
    drawn from `seed`. `normalise`: :class:`FrameEncoder`'s. The shard's attrs record it and
    the frames' ``resize``.

    Dataset per video: float16 [T, tokens, dim] with attrs backbone, weights,
    fps, n_frames, source_video. Returns the features shard's manifest.

    `num_threads` sets torch's CPU thread count for this process (pass the
    job's thread allowance): on a busy 2-core machine, vit_tiny on the demo took
    60 s with 2 threads competing against other jobs and 14 s with 1.
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    frames_manifest = read_manifest(frames_shard)
    weights = as_weights(weights, seed)
    model, identity = build_backbone(backbone, weights, img_size, seed)
    encoder = FrameEncoder(model, batch_size, resolve_device(device), normalise)
    with open_shard(frames_shard) as frames_file:
        resize = str(frames_file.attrs.get("resize", "crop"))  # shards from before the attr were cropped
    attrs = {
        "backbone": backbone,
        "weights": identity,
        "weights_sha256": weights.sha256 or "",
        "checkpoint": str(weights.file or ""),
        "img_size": img_size if img_size is not None else 0,
        "frames_shard": str(frames_shard),
        "resize": resize,
        "normalise": normalise,
    }
    with open_shard(frames_shard) as frames_file, ShardWriter(out_path, "features", attrs=attrs) as shard:
        _check_input_size(model, frames_file, frames_shard)
        for video_id in tqdm(sorted(frames_manifest), desc=f"features {Path(out_path).name}", unit="video", disable=None):
            entry = frames_manifest[video_id]
            if entry["status"] != "ok":
                info = {key: value for key, value in entry.items() if key not in ("status", "message")}
                shard.skip(video_id, entry["message"], **info)
                continue
            frames = frames_file[VIDEOS_GROUP][video_id]
            tokens = encoder(frames[()])  # [T, tokens, dim] float16
            if problem := nonfinite_problem(tokens):
                logger.warning("skipping video %s: %s", video_id, problem)
                shard.skip(video_id, problem, source_video=frames.attrs["source_video"])
                continue
            shard.add(
                video_id,
                tokens,
                backbone=backbone,
                weights=identity,
                fps=frames.attrs["fps"],
                n_frames=len(tokens),
                source_video=frames.attrs["source_video"],
            )
    return shard.manifest
