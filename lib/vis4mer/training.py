"""Training of one (dataset, task, model) run on stored features.

The recipe follows the paper (ViS4mer, ECCV 2022) and its reference code:

* AdamW, lr 1e-3, weight decay 0.01, with the S4 parameters in their own group
  (:func:`vis4mer.build_optimizer`);
* the learning-rate schedule ``lr_schedule`` (:mod:`vis4mer.schedules`): ReduceLROnPlateau on
  the validation metric (``max`` for accuracy, ``min`` for MSE), or the reference code's
  effective step decay;
* every step sees one RANDOM clip of ``window_frames`` frames of each drawn video (see
  :mod:`vis4mer.windows`: a window of consecutive frames, zero-padded at the end for shorter
  videos, or frames spread over the whole video, ``clip_frames``), an epoch being every
  training video once or draws weighted by the windows a video has (``epoch_draws``);
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

Settings: :class:`TrainSettings` are the hyper-parameters (they decide the result and the
run's identity); :class:`RunOptions` say how the run is executed (device, data workers, the
feature cache, evaluation batch size, progress bars) and can change between a run and its resumption.

Resuming: ``last`` also carries the full resume state (optimizer, scheduler, random
states, best-so-far: :class:`vis4mer.resume.RunState`); with ``TrainOutputs.state_dir`` a
killed run continues from its last finished epoch and ends as an uninterrupted run would
(:mod:`vis4mer.resume`).

Steps: :func:`train_model` sets the run up (:class:`_Run`), resumes it when it can, then
per epoch trains (:meth:`_Run.train_epoch`), validates (:meth:`_Run.validate`), steps the
learning-rate schedule (:mod:`vis4mer.schedules`), records
the log row and the best epoch (:meth:`_Run.record`) and saves the checkpoints
(:meth:`_Run.save`), and finally writes the log, the curve and clears the resume state
(:meth:`_Run.finish`).

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
from vis4mer.checkpoint import build_metadata, epoch_checkpoint
from vis4mer.feature_cache import FEATURE_CACHES, KEY as FEATURE_CACHE_KEY, FeatureCache, WindowBatches, WindowItems, processes_on_this_machine
from vis4mer.feature_store import FeatureStore
from vis4mer.labels import describe_labels
from vis4mer.windows import RandomWindowDataset, tokens_per_frame
from vis4mer.distributed import DistContext, ShardedBatchSampler, WeightedItems, rank_loss, wrap_model
from vis4mer.evaluation import metric_for, predict_videos, score, video_loss
from vis4mer.model import build_model
from vis4mer.optim import build_optimizer
from vis4mer.schedules import build_schedule
from vis4mer.sources.splits import SplitRow
from vis4mer.train_log import write_log_csv

logger = logging.getLogger("vis4mer.training")

# keys of the config's `training` section that are not TrainSettings: the number of
# processes a run is launched on (vis4mer.launch), which gives the same result
LAUNCH_SETTINGS = ("gpus_per_run",)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive training steps had a non-finite loss or gradient."""


@dataclass
class TrainSettings:
    """Hyper-parameters of one run (config key ``training`` but LAUNCH_SETTINGS)."""

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
    lr_schedule: str = "plateau"  # plateau | step (vis4mer.schedules)
    epoch_draws: str = "videos"  # videos | windows (vis4mer.windows)
    clip_frames: str = "window"  # window | spread (vis4mer.windows)
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class RunOptions:
    """How a run is executed, not what it computes (config key ``runtime``)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N (vis4mer.devices)
    num_workers: int = 0  # DataLoader workers
    eval_batch_size: int = 32  # windows per forward in validation
    progress: bool = True  # tqdm bars
    feature_cache: str = "none"  # none | ram | gpu: where training windows come from (vis4mer.feature_cache)

    def __post_init__(self):
        if self.feature_cache not in FEATURE_CACHES:
            raise ValueError(f"{FEATURE_CACHE_KEY} must be one of {FEATURE_CACHES}, got {self.feature_cache!r}")


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
    options: RunOptions | None = None,
    label_rows: Sequence[Sequence[SplitRow]] = (),
    model_factory: Callable[..., torch.nn.Module] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one run; write ``best``/``last`` checkpoints, the CSV log and the curve PNG.

    `options` default to :class:`RunOptions`'s defaults. `label_rows`: extra split rows (e.g.
    the test split) consulted only for the set of classes and their names, so a class absent
    from train/val still gets an output. `extra_metadata`: fields added to every checkpoint.
    `model_factory(arch, d_input=, l_max=, d_output=, d_model=, n_layers=, dropout=, **kwargs)`
    defaults to :func:`vis4mer.build_model`.
    """
    run = _Run(
        run_name, task_type, feature_shards, train_rows, val_rows, model_spec, settings, options or RunOptions(),
        outputs, label_rows, model_factory, extra_metadata,
    )
    for epoch in range(run.resume() + 1, settings.epochs + 1):
        started = time.perf_counter()
        train_loss, n_skipped, n_padded = run.train_epoch(epoch)
        val_metric, val_loss = run.validate(epoch)
        run.schedule.after_epoch(epoch, val_metric, run.validates(epoch))
        improved = run.record(epoch, started, train_loss, val_metric, val_loss, n_skipped, n_padded)
        run.save(epoch, val_metric, val_loss, improved)
    return run.finish()


class _Run:
    """One training run's model, data and state, and its steps (see the module doc)."""

    def __init__(
        self, run_name, task_type, feature_shards, train_rows, val_rows, model_spec: ModelSpec, settings: TrainSettings,
        options: RunOptions, outputs: TrainOutputs, label_rows, model_factory, extra_metadata,
    ):
        self.name, self.task_type, self.settings, self.options, self.outputs = run_name, task_type, settings, options, outputs
        self.metric_name, self.mode = metric_for(task_type)
        self.ctx = ctx = DistContext.current()
        self.device = device = ctx.device(options.device)
        logger.info("run %s: device %s%s", run_name, device, f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        seed_everything(settings.seed)

        self.store = store = FeatureStore(feature_shards)
        self.train_rows, train_missing = store.partition(train_rows)
        self.val_rows, val_missing = store.partition(val_rows)
        for split, missing, total in (("train", train_missing, len(train_rows)), ("val", val_missing, len(val_rows))):
            if missing:
                logger.warning("run %s: %d of %d %s rows have no features and are left out: %s", run_name, len(missing), total, split, sorted(missing)[:20])
        if not self.train_rows:
            raise ValueError(f"run {run_name}: none of the {len(train_rows)} training rows has features")
        if not self.val_rows:
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
        self.model = model = (model_factory or build_model)(model_spec.arch, **model_kwargs).to(device)
        self.trained = wrap_model(model, device, ctx)  # DDP across processes; `model` itself otherwise
        n_params = sum(p.numel() for p in model.parameters())
        logger.info(
            "run %s: %s with %s parameters; sequence %d frames x %d tokens = %d, dim %d; %d train / %d val clips; %s",
            run_name, model_spec.arch, f"{n_params:,}", settings.window_frames, n_tokens, model_kwargs["l_max"],
            store.dim, len(self.train_rows), len(self.val_rows), "classes " + ", ".join(label_names) if label_names else "regression",
        )
        self.optimizer = build_optimizer(model, lr=settings.lr, weight_decay=settings.weight_decay)
        self.schedule = build_schedule(
            settings.lr_schedule, self.optimizer, mode=self.mode, factor=settings.lr_factor, patience=settings.lr_patience,
            val_every_epochs=settings.val_every_epochs, epochs=settings.epochs,
        )
        self.criterion = torch.nn.CrossEntropyLoss() if task_type == "classification" else torch.nn.MSELoss()
        self.clip_criterion = type(self.criterion)(reduction="none")  # per clip, for the distributed loss
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.max_norm = settings.grad_clip if settings.grad_clip else math.inf

        self.dataset = RandomWindowDataset(
            store, self.train_rows, settings.window_frames, settings.tokens, task_type, settings.seed,
            epoch_draws=settings.epoch_draws, clip_frames=settings.clip_frames,
        )
        # Every epoch draws its clip order from this generator, exactly as many numbers each
        # epoch whatever num_workers is (no persistent workers: a persistent iterator skips a
        # draw after the first epoch), so the order is a function of (seed, epoch) that
        # resuming restores and that the distributed sampler reproduces on every rank.
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.loader = training_loader(self.dataset, settings.batch_size, options, device, self.generator, ctx, run_name)

        self.metadata = build_metadata(
            run_name=run_name, arch=model_spec.arch, model_kwargs=model_kwargs, task_type=task_type,
            label_names=label_names, metric=self.metric_name, mode=self.mode,
            features={**store.attrs, "n_tokens": store.n_tokens, "dim": store.dim},
            window_frames=settings.window_frames, tokens=settings.tokens, training=asdict(settings),
            run_options=asdict(options),
            # the rows without features, by split, with the reason (evaluation copies it to metrics.json, all.json counts it)
            extra={**(extra_metadata or {}), "left_out": {"train": dict(sorted(train_missing.items())), "val": dict(sorted(val_missing.items()))}},
        )
        self.log: list[dict[str, Any]] = []
        self.state = resume_state.RunState(resume_state.fingerprint(self.metadata, store.paths, self.train_rows, self.val_rows))

    # -- resume
    def resume(self) -> int:
        """Continue from the saved state of this run when there is one; the last epoch done (0: none)."""
        ctx, outputs = self.ctx, self.outputs
        last_epoch = 0
        saved = resume_state.load_state(outputs.state_dir, self.state.fingerprint)
        if saved is not None:
            checkpoint, self.state = saved
            self.model.load_state_dict(checkpoint["state_dict"])
            self.optimizer.load_state_dict(checkpoint["optimizer_state"])
            self.schedule.load_state_dict(checkpoint["scheduler_state"])
            self.log = [dict(row) for row in checkpoint["train_log"]]
            self.generator.set_state(self.state.generator)
            resume_state.set_rng_state(self.state.rank_rng(ctx.rank, ctx.world_size), self.device)
            if ctx.is_main:
                resume_state.restore_outputs(outputs.state_dir, self.state.best_epoch, outputs.best, outputs.last)
            last_epoch = checkpoint["epoch"]
            logger.info("run %s: resumed after epoch %d from %s (best epoch %d)", self.name, last_epoch,
                        outputs.state_dir / resume_state.STATE_FILE, self.state.best_epoch)
            del checkpoint, saved
        ctx.barrier()
        return last_epoch

    # -- one epoch
    def train_epoch(self, epoch: int) -> tuple[float, int, int]:
        """One pass over the training clips: (mean loss of the finite steps, steps skipped, padded clips)."""
        settings = self.settings
        self.dataset.set_epoch(epoch)
        self.trained.train()
        loss_sum, n_steps, n_skipped, n_padded = 0.0, 0, 0, 0
        # tqdm.auto used to get the loader itself and make a throwaway iterator of it (one
        # draw from `generator`, and with workers a prefetch that drew the order too, so
        # results depended on num_workers). Now it gets the one real iterator, and the
        # draw is explicit: runs reproduce earlier ones made with num_workers 0.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        batches = iter(self.loader)
        bar = tqdm(batches, total=len(self.loader), desc=f"{self.name} epoch {epoch}/{settings.epochs}",
                   disable=not self.options.progress, mininterval=2.0)
        for step, batch in enumerate(bar, start=1):
            loss, step_loss, finite, padded = self._step(batch)
            n_padded += padded
            if not finite:
                self.optimizer.zero_grad(set_to_none=True)
                n_skipped += 1
                self.state.consecutive_nonfinite += 1
                logger.warning("run %s: epoch %d step %d: non-finite loss/gradient (%s), step skipped", self.name, epoch, step, _fmt(loss))
                if self.state.consecutive_nonfinite > settings.max_consecutive_nonfinite:
                    raise self._nonfinite_error(epoch, step)
                continue
            self.optimizer.step()
            self.state.consecutive_nonfinite = 0
            loss_sum += step_loss
            n_steps += 1
            bar.set_postfix(loss=f"{loss_sum / n_steps:.4f}", refresh=False)
        bar.close()
        return (loss_sum / n_steps if n_steps else math.nan), n_skipped, int(self.ctx.all_reduce_sum(n_padded))

    def _step(self, batch) -> tuple[torch.Tensor, float, bool, int]:
        """Forward and backward of one batch: (loss, its value, finite?, padded clips), not yet applied."""
        ctx = self.ctx
        x, y, padded = batch[:3]
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        output = self.trained(x)
        prediction = output[:, 0] if self.task_type == "regression" else output
        if ctx.distributed:  # see vis4mer.distributed: the gradient of the global batch's mean loss
            weight, n_global = batch[3], batch[4]
            loss, step_loss = rank_loss(self.clip_criterion(prediction, y), weight, n_global, ctx)
            finite = math.isfinite(step_loss)
            loss.backward()  # every rank, always: DDP's all-reduce needs all of them
            grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_norm)
            return loss, step_loss, finite and bool(torch.isfinite(grad_norm)), int(padded[weight > 0].sum())
        loss = self.criterion(prediction, y)
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_norm)
            finite = bool(torch.isfinite(grad_norm))
        return loss, (float(loss.detach()) if finite else math.nan), finite, int(padded.sum())

    def _nonfinite_error(self, epoch: int, step: int) -> NonFiniteLossError:
        outputs, best_epoch = self.outputs, self.state.best_epoch
        saved = [f"{outputs.best} (best, epoch {best_epoch})"] if best_epoch else []
        saved += [f"{outputs.last} (epoch {epoch - 1})"] if epoch > 1 else []
        kept = f"last good checkpoints kept: {', '.join(saved)}" if saved else "no checkpoint had been written yet"
        return NonFiniteLossError(
            f"training run {self.name} stopped: {self.state.consecutive_nonfinite} consecutive steps with a "
            f"non-finite loss or gradient (max_consecutive_nonfinite={self.settings.max_consecutive_nonfinite}) "
            f"at epoch {epoch}, step {step}; {kept}. Lower the learning rate, set training.grad_clip, "
            "or check the features for NaN/inf."
        )

    def validates(self, epoch: int) -> bool:
        """Whether `epoch` ends with a validation: every val_every_epochs epochs, and the last."""
        return epoch % self.settings.val_every_epochs == 0 or epoch == self.settings.epochs

    def validate(self, epoch: int) -> tuple[float, float]:
        """(video-level metric, loss) on the validation rows, NaN on epochs without validation.

        Rank 0 evaluates; the other ranks wait for its numbers, so every rank steps the
        schedule the same way (a plateau's patience counts validations, as in the reference code).
        """
        settings = self.settings
        if not self.validates(epoch):
            return math.nan, math.nan  # no plateau step; cannot become the best checkpoint
        val_metric = val_loss = math.nan
        if self.ctx.is_main:
            predictions, _ = predict_videos(
                self.model, self.store, self.val_rows,
                window_frames=settings.window_frames, tokens=settings.tokens, stride_frames=settings.val_stride_frames,
                batch_size=self.options.eval_batch_size, device=self.device, task_type=self.task_type,
            )
            val_metric = score(predictions, self.val_rows, self.task_type)
            val_loss = video_loss(predictions, self.val_rows, self.task_type)
        return tuple(self.ctx.broadcast([val_metric, val_loss]))

    def record(self, epoch, started, train_loss, val_metric, val_loss, n_skipped, n_padded) -> bool:
        """Append the epoch's log row and update the best epoch; True when this one is the new best."""
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_metric": val_metric,
            "val_loss": val_loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "n_nonfinite_skipped": n_skipped,
            "n_padded": n_padded,
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.log.append(row)
        state = self.state
        improved = _better((val_metric, val_loss), (state.best_val_metric, state.best_val_loss), self.mode)
        if improved:
            state.best_val_metric, state.best_val_loss, state.best_epoch = val_metric, val_loss, epoch
        logger.info(
            "run %s: epoch %d train_loss %.4f val_%s %.4f val_loss %.4f lr %.2e skipped %d padded %d (%.1fs)%s",
            self.name, epoch, train_loss, self.metric_name, val_metric, val_loss, row["lr"], n_skipped, n_padded,
            row["seconds"], " *best*" if improved else "",
        )
        return improved

    def save(self, epoch: int, val_metric: float, val_loss: float, improved: bool) -> None:
        """``best`` (when improved) and ``last`` with the resume state, and the log (rank 0)."""
        ctx, outputs, state = self.ctx, self.outputs, self.state
        state.rng = ctx.gather(resume_state.rng_state(self.device))  # every rank's, for an exact resume
        if not ctx.is_main:
            return
        checkpoint = epoch_checkpoint(
            self.metadata, epoch=epoch, val_metric=val_metric, val_loss=val_loss, best_epoch=state.best_epoch,
            best_val_metric=state.best_val_metric, model=self.model,
        )
        if improved:
            atomic.torch_save(checkpoint, outputs.best)
            resume_state.record_best(outputs.state_dir, outputs.best, epoch)
        state.generator, state.world_size = self.generator.get_state(), ctx.world_size
        atomic.torch_save(
            {**checkpoint, "optimizer_state": self.optimizer.state_dict(), "scheduler_state": self.schedule.state_dict(),
             "train_log": self.log, "resume": state.to_checkpoint()},
            outputs.last,
        )
        resume_state.record_state(outputs.state_dir, outputs.last, state.best_epoch)
        write_log_csv(self.log, outputs.log)

    def finish(self) -> TrainResult:
        """The last outputs (rank 0): best (when no epoch was validated), the log, the curve; the
        resume state removed, so a forced re-run starts from scratch."""
        outputs = self.outputs
        if self.ctx.is_main:
            if not outputs.best.exists():  # every epoch had a NaN metric: keep the last model as best
                atomic.torch_save(torch.load(outputs.last, map_location="cpu", weights_only=True), outputs.best)
            write_log_csv(self.log, outputs.log)  # also when resumed after the last epoch
            from vis4mer.plotting import plot_train_curve

            plot_train_curve(self.log, outputs.curve, title=self.name, metric=self.metric_name)
            resume_state.clear(outputs.state_dir)
        self.ctx.barrier()
        self.store.close()
        return TrainResult(self.state.best_epoch, self.state.best_val_metric, len(self.log), self.log)


def training_loader(
    dataset: RandomWindowDataset,
    batch_size: int,
    options: RunOptions,
    device: torch.device,
    generator: torch.Generator,
    ctx: DistContext | None = None,
    run_name: str = "",
) -> DataLoader:
    """The DataLoader of a run's training windows: batches of `dataset`'s items in an order drawn
    from `generator` (the same whatever the options), this rank's part of each under `ctx`.

    ``options.feature_cache`` ``none``: `options.num_workers` workers read the windows from the
    shards in their dtype and assemble float32 batches (pinned on CUDA). ``ram``/``gpu``: the
    training videos' features are loaded here, once (:class:`vis4mer.feature_cache.FeatureCache`,
    refused when they do not fit), and each batch is assembled from them in this process,
    float32 on `device`.
    """
    ctx = ctx or DistContext()
    device = torch.device(device)
    length = dataset.window_frames * tokens_per_frame(dataset.store.n_tokens, dataset.tokens)
    items, collate = WindowItems(dataset), WindowBatches(length, dataset.store.dim, torch.device("cpu"))
    workers, pin_memory = options.num_workers, device.type == "cuda"
    if options.feature_cache != "none":
        cache = FeatureCache.load(
            dataset.store, [row.video_id for row in dataset.rows], dataset.tokens, options.feature_cache, device,
            progress=options.progress, copies=processes_on_this_machine() if options.feature_cache == "ram" else 1,
            description=f"{run_name} feature cache".strip(),
        )
        items, collate, workers, pin_memory = WindowItems(dataset, cache), WindowBatches(length, cache.dim, device), 0, False
        if options.num_workers:
            logger.info("run %s: %s %s: batches are assembled in this process (num_workers %d unused)",
                        run_name, FEATURE_CACHE_KEY, options.feature_cache, options.num_workers)
    if not ctx.distributed:
        return DataLoader(
            items, batch_size=batch_size, shuffle=True, generator=generator, num_workers=workers, pin_memory=pin_memory,
            collate_fn=collate,
        )
    if batch_size < ctx.world_size:
        logger.warning("run %s: batch_size %d < %d processes: some ranks idle every step", run_name, batch_size, ctx.world_size)
    return DataLoader(
        WeightedItems(items),
        batch_sampler=ShardedBatchSampler(len(dataset), batch_size, ctx.rank, ctx.world_size, generator),
        generator=generator, num_workers=workers, pin_memory=pin_memory, collate_fn=collate,
    )


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

