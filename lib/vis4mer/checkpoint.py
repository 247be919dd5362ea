"""The training checkpoint format, ``vis4mer-checkpoint-1``: what a checkpoint holds, how it is
built, read back and turned into a model again.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts; :func:`check_plain`),
so it loads with ``torch.load(weights_only=True)``:

* the run's metadata (:func:`build_metadata`): ``format``, ``run``, ``model`` (arch, kwargs),
  ``task`` (type, label_names, metric, mode), ``features`` (the shards' attrs, n_tokens, dim),
  ``window_frames``, ``tokens``, ``training`` (the hyper-parameters), ``run_options`` (device,
  workers, ...: how it ran, not what it computed), ``versions``, and what the caller adds: the
  workflow adds the dataset and task names and :func:`inference_metadata`, which
  ``vis4mer predict`` reads (see :class:`vis4mer.predict.InferenceSpec`);
* one epoch's model (:func:`epoch_checkpoint`, the content of ``best.pt``): ``epoch``,
  ``val_metric``, ``val_loss``, ``best_epoch``, ``best_val_metric`` (None for NaN) and the
  model's ``state_dict`` on the CPU;
* ``last.pt`` adds the resume state (:mod:`vis4mer.resume`): ``optimizer_state``,
  ``scheduler_state``, ``train_log`` and ``resume``.

Reading: :func:`read_checkpoint` (the file and its format), :func:`required_field` (one
field, naming it when it is missing), :func:`rebuild_model`, and :func:`load_model` for
both at once. Each raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch

from vis4mer import version
from vis4mer.model import build_model

FORMAT = "vis4mer-checkpoint-1"
STALE_HINT = "re-train it with this version of vis4mer (the pipeline's train rule records it)"

ModelFactory = Callable[..., torch.nn.Module]  # (arch, **kwargs) -> model, as vis4mer.build_model


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, of another format, or lacks what is asked of it."""


# --------------------------------------------------------------------------- writing


def inference_metadata(*, frames: dict[str, Any], eval_stride_frames: int, target: dict[str, Any]) -> dict[str, Any]:
    """What ``vis4mer predict`` needs besides the model and the features' attrs.

    `frames`: how the videos were decoded (fps, size, decoder, and any other sampling
    setting, which predict warns it does not apply); `eval_stride_frames`: the stride of
    the pipeline's evaluation, predict's default; `target`: ``label_column`` and
    ``label_transform`` of the labels the model learnt, so that a regression output can be
    given back in the task's own units.
    """
    return {
        "frames": dict(frames),
        "eval_stride_frames": eval_stride_frames,
        "target": {**target, "label_transform": dict(target.get("label_transform") or {})},
    }


def build_metadata(
    *,
    run_name: str,
    arch: str,
    model_kwargs: dict[str, Any],
    task_type: str,
    label_names: list[str],
    metric: str,
    mode: str,
    features: dict[str, Any],
    window_frames: int,
    tokens: str,
    training: dict[str, Any],
    run_options: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata every checkpoint of a run carries (see the module doc), checked plain.

    `features`: the feature shards' attrs with ``n_tokens`` and ``dim``; `training`: the
    hyper-parameters (``vis4mer.training.TrainSettings``); `run_options`: how the run is
    executed (``vis4mer.training.RunOptions``); `extra`: the caller's own fields.
    """
    metadata = {
        "format": FORMAT,
        "run": run_name,
        "model": {"arch": arch, "kwargs": model_kwargs},
        "task": {"type": task_type, "label_names": label_names, "metric": metric, "mode": mode},
        "features": features,
        "window_frames": window_frames,
        "tokens": tokens,
        "training": training,
        "run_options": run_options,
        "versions": {"torch": str(torch.__version__), "vis4mer": version()},
    }
    metadata.update(extra or {})
    check_plain(metadata)
    return metadata


def epoch_checkpoint(
    metadata: dict[str, Any],
    *,
    epoch: int,
    val_metric: float,
    val_loss: float,
    best_epoch: int,
    best_val_metric: float,
    model: torch.nn.Module,
) -> dict[str, Any]:
    """The checkpoint of `model` after `epoch` (``best.pt``'s content; NaN numbers as None)."""
    return {
        **metadata,
        "epoch": epoch,
        "val_metric": plain_float(val_metric),
        "val_loss": plain_float(val_loss),
        "best_epoch": best_epoch,
        "best_val_metric": plain_float(best_val_metric),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }


def plain_float(value: float) -> float | None:
    """`value` as a checkpoint (and JSON) number: None for NaN."""
    return None if math.isnan(value) else float(value)


def float_or_nan(value: float | None) -> float:
    """The inverse of :func:`plain_float`."""
    return math.nan if value is None else float(value)


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Refuse values torch.load(weights_only=True) would reject (e.g. numpy scalars, Paths)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
    elif not (value is None or type(value) in (str, int, float, bool) or isinstance(value, torch.Tensor)):
        raise TypeError(f"{where}: {type(value).__name__} value {value!r} is not checkpoint-safe")


# --------------------------------------------------------------------------- reading


def read_checkpoint(path) -> dict[str, Any]:
    """The dict of a training checkpoint file, its format checked (loaded on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a usable {FORMAT} training checkpoint: {type(error).__name__}: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path} is not a vis4mer training checkpoint (format {found!r}, expected {FORMAT!r})")
    return checkpoint


def required_field(checkpoint: dict[str, Any], dotted: str, path, why: str) -> Any:
    """``checkpoint["a"]["b"]`` for `dotted` ``"a.b"``; a missing one is a CheckpointError
    naming the field and `why` it is needed."""
    value: Any = checkpoint
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise CheckpointError(f"{path}: the checkpoint has no field '{dotted}' ({why}); {STALE_HINT}")
        value = value[key]
    return value


def rebuild_model(
    checkpoint: dict[str, Any], path="checkpoint", device: str | torch.device = "cpu", model_factory: ModelFactory | None = None
) -> torch.nn.Module:
    """The model of a checkpoint's dict with its weights, in eval mode on `device`.

    `model_factory(arch, **kwargs)` defaults to :func:`vis4mer.build_model`.
    """
    arch = required_field(checkpoint, "model.arch", path, "the model's architecture")
    kwargs = required_field(checkpoint, "model.kwargs", path, "the model's hyper-parameters")
    state_dict = required_field(checkpoint, "state_dict", path, "the model's weights")
    try:
        model = (model_factory or build_model)(arch, **kwargs)
        model.load_state_dict(state_dict)
    except Exception as error:
        raise CheckpointError(f"{path}: the model cannot be rebuilt: {type(error).__name__}: {error}") from error
    return model.to(device).eval()


def load_model(
    path, device: str | torch.device = "cpu", model_factory: ModelFactory | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(the model of the checkpoint file `path`, in eval mode on `device`; the checkpoint's dict)."""
    checkpoint = read_checkpoint(path)
    return rebuild_model(checkpoint, path, device, model_factory), checkpoint
