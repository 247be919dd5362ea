"""Rule fetch_weights: a backbone's pretrained weights into its library's cache (vis4mer.weights),
recorded for the features jobs."""

from _common import run_logged, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "fetch_weights")


def main():
    from vis4mer.weights import PRETRAINED, resolve_weights, write_record

    p = snakemake.params.fetch
    resolved = resolve_weights(PRETRAINED, p["backbone"], url=p["url"], sha256=p["sha256"])
    write_record(snakemake.output[0], resolved)
    logger.info("%s: %s (%s, sha256 %s)", p["backbone"], resolved.identity, resolved.file, resolved.sha256)


run_logged(logger, main)
