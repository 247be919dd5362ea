"""Rule confusion_plot: the confusion matrix of a classification run's metrics.json as PNG."""

import json

from _common import run_logged, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "confusion_plot")


def main():
    from vis4mer.plotting import plot_confusion

    metrics = json.loads(open(snakemake.input.metrics).read())
    if "confusion" not in metrics:
        raise ValueError(f"{snakemake.input.metrics} has no confusion matrix (task type {metrics.get('task_type')})")
    confusion = metrics["confusion"]
    value = metrics["value"]
    title = f"{snakemake.params.run}: {metrics['metric']} {value:.3f}" if value is not None else snakemake.params.run
    plot_confusion(confusion["matrix"], confusion["labels"], snakemake.output[0], title=title)


run_logged(logger, main)
