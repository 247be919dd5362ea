"""Per-frame ViT token features of a frames shard, written as a features shard.

For every video of the frames shard (uint8 [T, S, S, 3]) the backbone's
``forward_features`` output is stored: all tokens including CLS, float16
[T, tokens, dim] (vit_large_patch16_224 at 224 px: [T, 197, 1024]). Videos the
frames stage skipped are carried forward as skipped, with their message. Pixels go in
scaled to [0, 1] and standardised with the backbone's mean/std (``normalise: backbone``,
ours) or as they are (``none``, the reference code's ViT features).

Weights come only from a local checkpoint file (no downloads). Without one the
backbone is randomly initialised from a seed (the same network in every job, so shards
of one dataset stay comparable): this is logged as a warning and recorded as
``weights="random-seed<N>"`` so such features cannot be mistaken for real ones;
otherwise ``weights`` is the sha256 of the checkpoint file.
"""

from __future__ import annotations

import hashlib
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vis4mer._logging import logger
from vis4mer.compat import import_timm
from vis4mer.devices import resolve_device
from vis4mer.shards import VIDEOS_GROUP, ShardWriter, open_shard, read_manifest

RANDOM_WEIGHTS = "random"
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
        yield f"{RANDOM_WEIGHTS}-seed{seed}"


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unwrap_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """A bare state dict, or the one under "state_dict"/"model"; DDP's "module." prefix dropped."""
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if checkpoint and all(key.startswith("module.") for key in checkpoint):
        checkpoint = {key[len("module.") :]: value for key, value in checkpoint.items()}
    return checkpoint


def load_backbone_weights(model: torch.nn.Module, checkpoint) -> str:
    """Load a local checkpoint file into `model`; return the file's sha256.

    timm's own ``checkpoint_filter_fn`` of the model family is applied when it
    has one (for ViTs: resamples position embeddings to the model's img_size,
    converts other ViT checkpoint layouts). Missing and unexpected keys are
    logged; a checkpoint sharing no key with the model is an error.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint {path} does not exist")
    state_dict = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
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
    backbone: str, checkpoint=None, img_size: int | None = None, seed: int = 0
) -> tuple[torch.nn.Module, str]:
    """(timm model in eval mode, weights id: sha256 of the checkpoint or "random-seed<seed>")."""
    timm = import_timm()
    overrides = {"img_size": img_size} if img_size is not None else {}
    with seeded_init(seed) as random_id:
        model = timm.create_model(backbone, pretrained=False, **overrides)
    if checkpoint is None:
        logger.warning(
            "NO CHECKPOINT for %s: features come from RANDOM weights (recorded as weights=%r); "
            "fine for the demo and tests, meaningless for real data",
            backbone, random_id,
        )
        weights = random_id
    else:
        weights = load_backbone_weights(model, checkpoint)
    return model.eval(), weights


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
    checkpoint,
    batch_size: int,
    device: str | None = None,
    img_size: int | None = None,
    num_threads: int | None = None,
    seed: int = 0,
    normalise: str = "backbone",
) -> dict[str, dict]:
    """Encode every video of `frames_shard` into the features shard `out_path`.

    Without a checkpoint the backbone is random, initialised from `seed`. `normalise`:
    :class:`FrameEncoder`'s. The shard's attrs record it and the frames' ``resize``.

    Dataset per video: float16 [T, tokens, dim] with attrs backbone, weights,
    fps, n_frames, source_video. Returns the features shard's manifest.

    `num_threads` sets torch's CPU thread count for this process (pass the
    job's thread allowance): on a busy 2-core machine, vit_tiny on the demo took
    60 s with 2 threads competing against other jobs and 14 s with 1.
    """
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    frames_manifest = read_manifest(frames_shard)
    model, weights = build_backbone(backbone, checkpoint, img_size, seed)
    encoder = FrameEncoder(model, batch_size, resolve_device(device), normalise)
    with open_shard(frames_shard) as frames_file:
        resize = str(frames_file.attrs.get("resize", "crop"))  # shards from before the attr were cropped
    attrs = {
        "backbone": backbone,
        "weights": weights,
        "checkpoint": str(checkpoint) if checkpoint is not None else "",
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
            shard.add(
                video_id,
                tokens,
                backbone=backbone,
                weights=weights,
                fps=frames.attrs["fps"],
                n_frames=len(tokens),
                source_video=frames.attrs["source_video"],
            )
    return shard.manifest
