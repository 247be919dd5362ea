"""Rule splits: one task's split files of an lvu, breakfast or coin dataset (vis4mer.sources)."""

from pathlib import Path

from _common import run_logged, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "splits")


def main():
    from vis4mer.sources import read_source, write_task_splits

    arguments = snakemake.params.source
    task = snakemake.wildcards.task
    data = read_source(arguments)
    if task not in data.tasks:
        raise ValueError(f"{arguments['source']} source has no task {task!r} (tasks: {sorted(data.tasks)})")
    task_data = data.tasks[task]
    out_dir = Path(snakemake.output[0]).parent
    if out_dir != Path(snakemake.output[-1]).parent:
        raise RuntimeError(f"the split files of one task must share a folder, got {list(snakemake.output)}")
    write_task_splits(task_data, out_dir)
    counts = {split: len(rows) for split, rows in task_data.splits.items()}
    logger.info("%s %s (%s): %s videos -> %s", arguments["source"], task, task_data.kind, counts, out_dir)
    if task_data.label_names:
        logger.info("%d classes: %s", len(task_data.label_names), ", ".join(task_data.label_names))
    for key, value in data.notes.items():
        logger.info("%s: %s", key, value)


run_logged(logger, main)
