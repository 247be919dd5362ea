"""Rule evaluate: test-split metrics of the best checkpoint (vis4mer.evaluation)."""

from _common import run_logged, runtime, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "evaluate")


def main():
    from vis4mer.atomic import write_json
    from vis4mer.evaluation import evaluate_checkpoint
    from vis4mer.labels import read_task_rows

    set_threads(snakemake.threads)
    task = snakemake.params.task
    rows = read_task_rows(snakemake.input.test, task["id_column"], task["label_column"], task["label_transform"])
    metrics = evaluate_checkpoint(
        snakemake.input.checkpoint,
        list(snakemake.input.features),
        rows,
        stride_frames=snakemake.params.eval_stride_frames,
        batch_size=runtime(snakemake)["eval_batch_size"],
        device=runtime(snakemake)["device"],
        progress=runtime(snakemake)["progress"],
    )
    w = snakemake.wildcards
    metrics = {"dataset": w.dataset, "task": w.task, "model": w.model, **metrics}
    write_json(snakemake.output.metrics, metrics)
    logger.info(
        "%s: %s = %s on %d/%d test videos (%d missing)",
        snakemake.params.run, metrics["metric"], metrics["value"], metrics["n_evaluated"], metrics["n_total"], metrics["n_missing"],
    )


run_logged(logger, main)
