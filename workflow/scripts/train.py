"""Rule train: one model on one task of a dataset (vis4mer.training.train_model)."""

import shutil
from pathlib import Path

from _common import run_logged, runtime, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "train")


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
                            "task_name": snakemake.wildcards.task},
        )
    except NonFiniteLossError as error:
        # Snakemake deletes the outputs of a failed job: keep the last good checkpoints
        # and the log where it does not look.
        rescue = Path(snakemake.output.best).parent / "failed"
        rescue.mkdir(parents=True, exist_ok=True)
        kept = [shutil.copy2(path, rescue / Path(path).name) for path in (outputs.best, outputs.last, outputs.log) if Path(path).exists()]
        raise NonFiniteLossError(f"{error} [copies of the checkpoints kept so far: {', '.join(map(str, kept)) or 'none'}]") from None


run_logged(logger, main)
