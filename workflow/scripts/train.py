"""Rule train: one model on one task of a dataset (vis4mer.training.train_model)."""

import shutil
from pathlib import Path

from _common import run_logged, runtime, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "train")


def inference_metadata(task):
    """What `vis4mer predict` needs besides the model and features attrs: how the frames
    were decoded, the evaluation stride, and the regression target's transform (to invert
    it). Read from the config: frames settings that differ re-run frames -> features -> train."""
    config = snakemake.config
    frames = config["datasets"][snakemake.wildcards.dataset].get("frames", {})
    return {
        "frames": dict(frames),  # fps, size, decoder, and any later setting of how frames are sampled
        "eval_stride_frames": config.get("evaluation", {}).get("eval_stride_frames", 1),
        "target": {"label_column": task["label_column"], "label_transform": dict(task.get("label_transform") or {})},
    }


def main():
    from vis4mer.datasets import read_task_rows
    from vis4mer.training import ModelSpec, NonFiniteLossError, TrainOutputs, TrainSettings, train_model

    set_threads(snakemake.threads)
    task = snakemake.params.task
    rt = runtime(snakemake)
    settings = TrainSettings.from_dict(
        {
            **snakemake.params.training,
            "device": rt["device"],
            "num_workers": rt["num_workers"],
            "eval_batch_size": rt["eval_batch_size"],
            "progress": rt["progress"],
        }
    )
    rows = {
        split: read_task_rows(getattr(snakemake.input, split), task["id_column"], task["label_column"], task["label_transform"])
        for split in ("train", "val", "test")
    }
    outputs = TrainOutputs(snakemake.output.best, snakemake.output.last, snakemake.output.log, snakemake.output.curve)
    try:
        train_model(
            run_name=snakemake.params.run,
            task_type=task["type"],
            feature_shards=list(snakemake.input.features),
            train_rows=rows["train"],
            val_rows=rows["val"],
            label_rows=[rows["test"]],  # class names only
            model_spec=ModelSpec(**snakemake.params.model),
            settings=settings,
            outputs=outputs,
            extra_metadata={"model_config_name": snakemake.wildcards.model, "dataset": snakemake.wildcards.dataset,
                            "task_name": snakemake.wildcards.task, **inference_metadata(task)},
        )
    except NonFiniteLossError as error:
        # Snakemake deletes the outputs of a failed job: keep the last good checkpoints
        # and the log where it does not look.
        rescue = Path(snakemake.output.best).parent / "failed"
        rescue.mkdir(parents=True, exist_ok=True)
        kept = [shutil.copy2(path, rescue / Path(path).name) for path in (outputs.best, outputs.last, outputs.log) if Path(path).exists()]
        raise NonFiniteLossError(f"{error} [copies of the checkpoints kept so far: {', '.join(map(str, kept)) or 'none'}]") from None


run_logged(logger, main)
