"""Rule aggregate: all.json and summary.md of a dataset."""

from _common import run_logged, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "aggregate")


def main():
    from vis4mer.aggregate import write_aggregate

    collected = write_aggregate(
        snakemake.wildcards.dataset, list(snakemake.input.metrics), snakemake.output.all_json, snakemake.output.summary
    )
    logger.info("collected %d runs", collected["n_runs"])


run_logged(logger, main)
