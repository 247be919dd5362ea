"""Rule features: backbone tokens of every frame of one frames shard."""

from _common import run_logged, runtime, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "features")


def main():
    from vis4mer.features import extract_features_to_shard
    from vis4mer.devices import resolve_device
    from vis4mer.weights import job_weights

    set_threads(snakemake.threads)
    p = snakemake.params.features
    weights = job_weights(
        p["weights"], p["backbone"], record=snakemake.input.get("weights"), seed=p.get("init_seed", 0)
    )
    device = resolve_device(runtime(snakemake)["device"])
    logger.info(
        "backbone %s (img_size %s, normalise %s), weights %s, device %s", p["backbone"], p["img_size"], p["normalise"],
        weights.identity, device,
    )
    manifest = extract_features_to_shard(
        snakemake.input.frames,
        snakemake.output[0],
        backbone=p["backbone"],
        weights=weights,
        batch_size=runtime(snakemake)["feature_batch_size"],
        device=str(device),
        img_size=p["img_size"],
        seed=p.get("init_seed", 0),
        normalise=p["normalise"],
    )
    n_ok = sum(entry["status"] == "ok" for entry in manifest.values())
    logger.info("features for %d videos, %d skipped", n_ok, len(manifest) - n_ok)


run_logged(logger, main)
