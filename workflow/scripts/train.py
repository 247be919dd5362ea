"""Rule train: one model on one task of a dataset (vis4mer.training.train_model).

GPUs: the job's `gpu` resource (config training.gpus_per_run) is K. K <= 1 trains in this
process on its leased GPU (or the CPU). K > 1 trains with DistributedDataParallel, one
process per leased GPU, under torchrun (vis4mer.launch.train_with_torchrun: NCCL on
GPUs, gloo on CPU); rank 0 writes the same outputs. The lease's locks are passed to
torchrun, so the GPUs stay leased while any of its processes lives.

Resuming: the run's state is kept in <run>/.resume/ (config runtime.resume), which is not
an output of the rule, so Snakemake never deletes it; a re-run of an interrupted job
(--rerun-incomplete, or after a failure) continues from the last finished epoch.
"""

import shutil
from pathlib import Path

import _common
from _common import gpus_requested, run_logged, runtime, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "train")


def remove_replaced_results(paths) -> None:
    """The results of the model this job replaces (metrics, all.json, ...) go first: if the
    job fails, none is left describing a model that no longer exists."""
    removed = [path for path in map(Path, paths) if path.exists()]
    for path in removed:
        path.unlink()
    if removed:
        logger.info("removed the results of the model this job replaces: %s", ", ".join(map(str, removed)))


def main():
    remove_replaced_results(snakemake.params.replaces)
    from vis4mer.checkpoint import inference_metadata
    from vis4mer.config import dataset_evaluation
    from vis4mer.labels import read_task_rows
    from vis4mer.sources import class_rows
    from vis4mer.training import ModelSpec, NonFiniteLossError, RunOptions, TrainOutputs, TrainSettings, train_model

    set_threads(snakemake.threads)
    task = snakemake.params.task
    rt = runtime(snakemake)
    settings = TrainSettings.from_dict(snakemake.params.training)  # training_config: all but LAUNCH_SETTINGS
    options = RunOptions(
        device=rt["device"], num_workers=rt["num_workers"], eval_batch_size=rt["eval_batch_size"], progress=rt["progress"],
        feature_cache=rt["feature_cache"],
    )
    rows = {
        split: read_task_rows(getattr(snakemake.input, split), task["id_column"], task["label_column"], task["label_transform"])
        for split in ("train", "val", "test")
    }
    state_dir = Path(snakemake.output.last).parent / ".resume" if rt.get("resume", True) else None
    outputs = TrainOutputs(snakemake.output.best, snakemake.output.last, snakemake.output.log, snakemake.output.curve, state_dir)
    n_processes = gpus_requested(snakemake)
    # what `vis4mer predict` reads back (frames settings that differ re-run frames -> features -> train)
    dataset = snakemake.wildcards.dataset
    for_inference = inference_metadata(
        frames=snakemake.config["datasets"][dataset]["frames"],
        eval_stride_frames=dataset_evaluation(snakemake.config, dataset)["eval_stride_frames"],
        # lvu: the split files hold the final targets; task["target"] says how they derive from the raw columns
        target=task.get("target") or {"label_column": task["label_column"], "label_transform": task.get("label_transform")},
    )
    try:
        train_kwargs = dict(
            run_name=snakemake.params.run,
            task_type=task["type"],
            feature_shards=list(snakemake.input.features),
            train_rows=rows["train"],
            val_rows=rows["val"],
            # class names only; label_names (lvu, breakfast, coin): the task's whole class-id space
            label_rows=[rows["test"], class_rows(task.get("label_names") or [])],
            model_spec=ModelSpec(**snakemake.params.model),
            settings=settings,
            options=options,
            outputs=outputs,
            extra_metadata={"model_config_name": snakemake.wildcards.model, "dataset": snakemake.wildcards.dataset,
                            "task_name": snakemake.wildcards.task, "recipe": snakemake.params.recipe, **for_inference},
        )
        if n_processes > 1:
            from vis4mer.launch import train_with_torchrun

            lease = _common.LEASE
            train_with_torchrun(
                n_processes,
                threads_per_rank=max(1, snakemake.threads // n_processes),
                pass_fds=lease.fds if lease is not None else (),
                **train_kwargs,
            )
        else:
            train_model(**train_kwargs)
    except NonFiniteLossError as error:
        # Snakemake deletes the outputs of a failed job: keep the last good checkpoints
        # and the log where it does not look.
        rescue = Path(snakemake.output.best).parent / "failed"
        rescue.mkdir(parents=True, exist_ok=True)
        kept = [shutil.copy2(path, rescue / Path(path).name) for path in (outputs.best, outputs.last, outputs.log) if Path(path).exists()]
        raise NonFiniteLossError(f"{error} [copies of the checkpoints kept so far: {', '.join(map(str, kept)) or 'none'}]") from None


run_logged(logger, main)
