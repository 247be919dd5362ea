"""Training of one (dataset, task, model) run on stored features.

The recipe follows the paper (ViS4mer, ECCV 2022) and its reference code:

* AdamW, lr 1e-3, weight decay 0.01, with the S4 parameters in their own group
  (:func:`vis4mer.build_optimizer`);
* ReduceLROnPlateau on the validation metric (``max`` for accuracy, ``min`` for MSE);
* every step sees one RANDOM window of ``window_frames`` frames of each clip (see
  :mod:`vis4mer.windows`; shorter clips are zero-padded at the end);
* validation and model selection use the video-level evaluation of
  :mod:`vis4mer.evaluation` (all windows at a stride), and the checkpoint with the
  best validation metric is kept as ``best``, the latest as ``last``.

Non-finite steps: a batch whose loss (or gradient norm) is NaN/inf is skipped, the
parameters are not updated, and the skip is counted (``n_nonfinite_skipped`` per
epoch in the log). More than ``max_consecutive_nonfinite`` skips in a row stop the
run with :class:`NonFiniteLossError`, which names the run; the checkpoints written
so far are left in place.

Checkpoints (:mod:`vis4mer.checkpoint`) carry everything needed to rebuild the model and
read features for it (:func:`vis4mer.checkpoint.load_model`).

Resuming: ``last`` also carries the full resume state (optimizer, scheduler, random
states, best-so-far); with ``TrainOutputs.state_dir`` a killed run continues from its
last finished epoch and ends as an uninterrupted run would (:mod:`vis4mer.resume`).

Several processes: inside an initialised ``torch.distributed`` process group (torchrun,
:func:`vis4mer.launch.train_with_torchrun`) the run is DistributedDataParallel over
the group, with the single-process result (:mod:`vis4mer.distributed`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vis4mer import atomic
from vis4mer import resume as resume_state
from vis4mer.checkpoint import build_metadata, epoch_checkpoint, float_or_nan, plain_float
from vis4mer.feature_store import FeatureStore
from vis4mer.labels import describe_labels
from vis4mer.windows import RandomWindowDataset, tokens_per_frame
from vis4mer.distributed import DistContext, ShardedBatchSampler, WeightedItems, rank_loss, wrap_model
from vis4mer.evaluation import metric_for, predict_videos, score, video_loss
from vis4mer.model import build_model
from vis4mer.optim import build_optimizer
from vis4mer.sources.splits import SplitRow
from vis4mer.train_log import write_log_csv

logger = logging.getLogger("vis4mer.training")



class NonFiniteLossError(RuntimeError):
    """Too many consecutive training steps had a non-finite loss or gradient."""


@dataclass
class TrainSettings:
    """Hyper-parameters of one run (config key ``training``)."""

    window_frames: int = 60
    tokens: str = "all"  # all | cls
    batch_size: int = 16
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.01
    lr_factor: float = 0.2
    lr_patience: int = 1
    max_consecutive_nonfinite: int = 20
    grad_clip: float | None = None
    val_stride_frames: int = 1
    val_every_epochs: int = 1  # the reference code validated every 10 epochs
    eval_batch_size: int = 32
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class ModelSpec:
    """Which model and its size (config key ``models.<name>``)."""

    arch: str  # vis4mer | transformer | meanpool (vis4mer.build_model names)
    d_model: int
    n_layers: int
    dropout: float = 0.0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainOutputs:
    best: Path
    last: Path
    log: Path
    curve: Path
    # resume state (vis4mer.resume); None: no resuming. Keep it outside what a workflow
    # manager deletes on failure (not a declared output).
    state_dir: Path | None = None

    def __post_init__(self):
        for name in ("best", "last", "log", "curve"):
            setattr(self, name, Path(getattr(self, name)))
        if self.state_dir is not None:
            self.state_dir = Path(self.state_dir)


@dataclass
class TrainResult:
    best_epoch: int
    best_val_metric: float
    epochs_run: int
    log: list[dict[str, Any]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def train_model(
    *,
    run_name: str,
    task_type: str,
    feature_shards: Sequence[Path | str],
    train_rows: Sequence[SplitRow],
    val_rows: Sequence[SplitRow],
    model_spec: ModelSpec,
    settings: TrainSettings,
    outputs: TrainOutputs,
    label_rows: Sequence[Sequence[SplitRow]] = (),
    model_factory: Callable[..., torch.nn.Module] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one run; write ``best``/``last`` checkpoints, the CSV log and the curve PNG.

    `label_rows`: extra split rows (e.g. the test split) consulted only for the set of
    classes and their names, so a class absent from train/val still gets an output.
    `model_factory(arch, d_input=, l_max=, d_output=, d_model=, n_layers=, dropout=, **kwargs)`
    defaults to :func:`vis4mer.build_model`.
    """
    metric_name, mode = metric_for(task_type)
    ctx = DistContext.current()
    device = ctx.device(settings.device)
    logger.info("run %s: device %s%s", run_name, device, f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    seed_everything(settings.seed)

    store = FeatureStore(feature_shards)
    train_present, train_missing = store.partition(train_rows)
    val_present, val_missing = store.partition(val_rows)
    for split, missing, total in (("train", train_missing, len(train_rows)), ("val", val_missing, len(val_rows))):
        if missing:
            logger.warning("run %s: %d of %d %s rows have no features and are left out: %s", run_name, len(missing), total, split, sorted(missing)[:20])
    if not train_present:
        raise ValueError(f"run {run_name}: none of the {len(train_rows)} training rows has features")
    if not val_present:
        raise ValueError(f"run {run_name}: none of the {len(val_rows)} validation rows has features")
    d_output, label_names = describe_labels(task_type, train_rows, val_rows, *label_rows)

    n_tokens = tokens_per_frame(store.n_tokens, settings.tokens)
    model_kwargs = {
        "d_input": store.dim,
        "l_max": settings.window_frames * n_tokens,
        "d_output": d_output,
        "d_model": model_spec.d_model,
        "n_layers": model_spec.n_layers,
        "dropout": model_spec.dropout,
        **model_spec.kwargs,
    }
    model = (model_factory or build_model)(model_spec.arch, **model_kwargs).to(device)
    trained = wrap_model(model, device, ctx)  # DDP across processes; `model` itself otherwise
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "run %s: %s with %s parameters; sequence %d frames x %d tokens = %d, dim %d; %d train / %d val clips; %s",
        run_name, model_spec.arch, f"{n_params:,}", settings.window_frames, n_tokens, model_kwargs["l_max"],
        store.dim, len(train_present), len(val_present), "classes " + ", ".join(label_names) if label_names else "regression",
    )
    optimizer = build_optimizer(model, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=settings.lr_factor, patience=settings.lr_patience
    )
    criterion = torch.nn.CrossEntropyLoss() if task_type == "classification" else torch.nn.MSELoss()
    clip_criterion = type(criterion)(reduction="none")  # per clip, for the distributed loss

    dataset = RandomWindowDataset(store, train_present, settings.window_frames, settings.tokens, task_type, settings.seed)
    # Every epoch draws its clip order from this generator, exactly as many numbers each
    # epoch whatever num_workers is (no persistent workers: a persistent iterator skips a
    # draw after the first epoch), so the order is a function of (seed, epoch) that
    # resuming restores and that the distributed sampler reproduces on every rank.
    generator = torch.Generator().manual_seed(settings.seed)
    if ctx.distributed:
        if settings.batch_size < ctx.world_size:
            logger.warning("run %s: batch_size %d < %d processes: some ranks idle every step", run_name, settings.batch_size, ctx.world_size)
        loader = DataLoader(
            WeightedItems(dataset),
            batch_sampler=ShardedBatchSampler(len(dataset), settings.batch_size, ctx.rank, ctx.world_size, generator),
            generator=generator,
            num_workers=settings.num_workers,
            pin_memory=device.type == "cuda",
        )
    else:
        loader = DataLoader(
            dataset,
            batch_size=settings.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=settings.num_workers,
            pin_memory=device.type == "cuda",
        )

    metadata = build_metadata(
        run_name=run_name, arch=model_spec.arch, model_kwargs=model_kwargs, task_type=task_type,
        label_names=label_names, metric=metric_name, mode=mode,
        features={**store.attrs, "n_tokens": store.n_tokens, "dim": store.dim},
        window_frames=settings.window_frames, tokens=settings.tokens, training=asdict(settings), extra=extra_metadata,
    )

    log: list[dict[str, Any]] = []
    best_metric, best_loss, best_epoch = math.nan, math.nan, 0
    consecutive_nonfinite = 0
    parameters = [p for p in model.parameters() if p.requires_grad]
    max_norm = settings.grad_clip if settings.grad_clip else math.inf

    run_fingerprint = resume_state.fingerprint(metadata, store.paths, train_present, val_present)
    start_epoch = 1
    saved = resume_state.load_state(outputs.state_dir, run_fingerprint)
    if saved is not None:
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer_state"])
        scheduler.load_state_dict(saved["scheduler_state"])
        resumed = saved["resume"]
        log = [dict(row) for row in saved["train_log"]]
        best_epoch, consecutive_nonfinite = resumed["best_epoch"], resumed["consecutive_nonfinite"]
        best_metric, best_loss = float_or_nan(resumed["best_val_metric"]), float_or_nan(resumed["best_val_loss"])
        generator.set_state(resumed["generator"])
        rng = resumed["rng"]
        resume_state.set_rng_state(rng[ctx.rank] if len(rng) == ctx.world_size else rng[0], device)
        if ctx.is_main:
            resume_state.restore_outputs(outputs.state_dir, saved, outputs.best, outputs.last)
        start_epoch = saved["epoch"] + 1
        logger.info("run %s: resumed after epoch %d from %s (best epoch %d)", run_name, saved["epoch"],
                    outputs.state_dir / resume_state.STATE_FILE, best_epoch)
        del saved
    ctx.barrier()

    for epoch in range(start_epoch, settings.epochs + 1):
        started = time.perf_counter()
        dataset.set_epoch(epoch)
        trained.train()
        loss_sum, n_steps, n_skipped, n_padded = 0.0, 0, 0, 0
        # tqdm.auto used to get the loader itself and make a throwaway iterator of it (one
        # draw from `generator`, and with workers a prefetch that drew the order too, so
        # results depended on num_workers). Now it gets the one real iterator, and the
        # draw is explicit: runs reproduce earlier ones made with num_workers 0.
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        batches = iter(loader)
        bar = tqdm(batches, total=len(loader), desc=f"{run_name} epoch {epoch}/{settings.epochs}", disable=not settings.progress, mininterval=2.0)
        for step, batch in enumerate(bar, start=1):
            x, y, padded = batch[:3]
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            output = trained(x)
            prediction = output[:, 0] if task_type == "regression" else output
            if ctx.distributed:  # see vis4mer.distributed: the gradient of the global batch's mean loss
                weight, n_global = batch[3], batch[4]
                n_padded += int(padded[weight > 0].sum())
                loss, step_loss = rank_loss(clip_criterion(prediction, y), weight, n_global, ctx)
                finite = math.isfinite(step_loss)
                loss.backward()  # every rank, always: DDP's all-reduce needs all of them
                grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
                finite = finite and bool(torch.isfinite(grad_norm))
            else:
                n_padded += int(padded.sum())
                loss = criterion(prediction, y)
                finite = bool(torch.isfinite(loss))
                if finite:
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
                    finite = bool(torch.isfinite(grad_norm))
                step_loss = float(loss.detach()) if finite else math.nan
            if not finite:
                optimizer.zero_grad(set_to_none=True)
                n_skipped += 1
                consecutive_nonfinite += 1
                logger.warning("run %s: epoch %d step %d: non-finite loss/gradient (%s), step skipped", run_name, epoch, step, _fmt(loss))
                if consecutive_nonfinite > settings.max_consecutive_nonfinite:
                    saved = [f"{outputs.best} (best, epoch {best_epoch})"] if best_epoch else []
                    saved += [f"{outputs.last} (epoch {epoch - 1})"] if epoch > 1 else []
                    kept = f"last good checkpoints kept: {', '.join(saved)}" if saved else "no checkpoint had been written yet"
                    raise NonFiniteLossError(
                        f"training run {run_name} stopped: {consecutive_nonfinite} consecutive steps with a "
                        f"non-finite loss or gradient (max_consecutive_nonfinite={settings.max_consecutive_nonfinite}) "
                        f"at epoch {epoch}, step {step}; {kept}. Lower the learning rate, set training.grad_clip, "
                        "or check the features for NaN/inf."
                    )
                continue
            optimizer.step()
            consecutive_nonfinite = 0
            loss_sum += step_loss
            n_steps += 1
            bar.set_postfix(loss=f"{loss_sum / n_steps:.4f}", refresh=False)
        bar.close()
        n_padded = int(ctx.all_reduce_sum(n_padded))

        if epoch % settings.val_every_epochs == 0 or epoch == settings.epochs:
            val_metric = val_loss = math.nan
            if ctx.is_main:  # the other ranks wait for its numbers (same scheduler steps everywhere)
                predictions, _ = predict_videos(
                    model, store, val_present,
                    window_frames=settings.window_frames, tokens=settings.tokens, stride_frames=settings.val_stride_frames,
                    batch_size=settings.eval_batch_size, device=device, task_type=task_type,
                )
                val_metric = score(predictions, val_present, task_type)
                val_loss = video_loss(predictions, val_present, task_type)
            val_metric, val_loss = ctx.broadcast([val_metric, val_loss])
            scheduler.step(val_metric)  # patience counts validations, as in the reference code
        else:  # not validated: no scheduler step, cannot become the best checkpoint
            val_metric = val_loss = math.nan
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / n_steps if n_steps else math.nan,
            "val_metric": val_metric,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "n_nonfinite_skipped": n_skipped,
            "n_padded": n_padded,
            "seconds": round(time.perf_counter() - started, 3),
        }
        log.append(row)
        improved = _better((val_metric, val_loss), (best_metric, best_loss), mode)
        if improved:
            best_metric, best_loss, best_epoch = val_metric, val_loss, epoch
        logger.info(
            "run %s: epoch %d train_loss %.4f val_%s %.4f val_loss %.4f lr %.2e skipped %d padded %d (%.1fs)%s",
            run_name, epoch, row["train_loss"], metric_name, val_metric, val_loss, row["lr"], n_skipped, n_padded,
            row["seconds"], " *best*" if improved else "",
        )
        rng = ctx.gather(resume_state.rng_state(device))  # every rank's, for an exact resume
        if not ctx.is_main:
            continue
        state = epoch_checkpoint(
            metadata, epoch=epoch, val_metric=val_metric, val_loss=val_loss, best_epoch=best_epoch,
            best_val_metric=best_metric, model=model,
        )
        if improved:
            atomic.torch_save(state, outputs.best)
            resume_state.record_best(outputs.state_dir, outputs.best, epoch)
        resume = {
            "fingerprint": run_fingerprint,
            "best_epoch": best_epoch,
            "best_val_metric": plain_float(best_metric),
            "best_val_loss": plain_float(best_loss),
            "consecutive_nonfinite": consecutive_nonfinite,
            "generator": generator.get_state(),
            "rng": rng,
            "world_size": ctx.world_size,
        }
        atomic.torch_save(
            {**state, "optimizer_state": optimizer.state_dict(), "scheduler_state": scheduler.state_dict(), "train_log": log,
             "resume": resume},
            outputs.last,
        )
        resume_state.record_state(outputs.state_dir, outputs.last, best_epoch)
        write_log_csv(log, outputs.log)

    if ctx.is_main:
        if not outputs.best.exists():  # every epoch had a NaN metric: keep the last model as best
            atomic.torch_save(torch.load(outputs.last, map_location="cpu", weights_only=True), outputs.best)
        write_log_csv(log, outputs.log)  # also when resumed after the last epoch
        from vis4mer.plotting import plot_train_curve

        plot_train_curve(log, outputs.curve, title=run_name, metric=metric_name)
        resume_state.clear(outputs.state_dir)  # complete: a forced re-run starts from scratch
    ctx.barrier()
    store.close()
    return TrainResult(best_epoch, best_metric, len(log), log)


def _better(candidate: tuple[float, float], best: tuple[float, float], mode: str) -> bool:
    """(metric, loss) beats the best so far: a better metric, or the same metric and a lower loss.

    Accuracy on a small validation split ties often; the video-level loss then prefers
    the more confident model instead of the earliest epoch that reached the accuracy.
    """
    (value, loss), (best_value, best_loss) = candidate, best
    if math.isnan(value):
        return False
    if math.isnan(best_value):
        return True
    if value != best_value:
        return value > best_value if mode == "max" else value < best_value
    return not math.isnan(loss) and (math.isnan(best_loss) or loss < best_loss)


def _fmt(loss: torch.Tensor) -> str:
    value = float(loss.detach())
    return f"loss {value}" if not math.isfinite(value) else "gradient norm not finite"

