"""Rule aggregate: all.json, summary.md, summary.png and results.html of a dataset (vis4mer.aggregate)."""

from _common import run_logged, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "aggregate")


def main():
    from vis4mer.aggregate import write_aggregate

    downloads = list(snakemake.input.downloads) if "downloads" in snakemake.input.keys() else []
    collected = write_aggregate(
        snakemake.wildcards.dataset,
        list(snakemake.input.metrics),
        snakemake.output.all_json,
        snakemake.output.summary,
        info=snakemake.params.info,
        download_manifests=downloads,
        summary_png=snakemake.output.figure,
        results_page=snakemake.output.page,
    )
    logger.info("collected %d runs", collected["n_runs"])
    if "downloads" in collected:
        logger.info("downloads: %s", collected["downloads"]["counts"])


run_logged(logger, main)
