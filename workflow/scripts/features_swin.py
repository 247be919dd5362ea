"""Rule features_swin: Video Swin clip features of the videos of one shard (vis4mer.swin)."""

from _common import run_logged, runtime, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "features_swin")


def main():
    from vis4mer.sources import shard_videos
    from vis4mer.swin import extract_swin_features_to_shard
    from vis4mer.devices import resolve_device
    from vis4mer.weights import job_weights

    set_threads(snakemake.threads)
    p = snakemake.params.swin
    weights = job_weights(
        p["weights"], p["backbone"], record=snakemake.input.get("weights"), seed=p.get("init_seed", 0)
    )
    manifests = list(snakemake.input.downloads) if "downloads" in snakemake.input.keys() else None
    videos, missing = shard_videos(p["ids"], p, manifests)
    ranges = {v: tuple(r) for v, r in p["ranges"].items() if v in videos} if "ranges" in p else None
    device = resolve_device(runtime(snakemake)["device"])
    logger.info(
        "backbone %s (size %s), weights %s, device %s: %d videos, %d without a file",
        p["backbone"], p["size"], weights.identity, device, len(videos), len(missing),
    )
    manifest = extract_swin_features_to_shard(
        videos,
        snakemake.output[0],
        backbone=p["backbone"],
        weights=weights,
        max_segments={v: p["max_segments"][v] for v in videos},
        batch_size=runtime(snakemake)["segment_batch_size"],
        device=str(device),
        ranges=ranges,
        size=p["size"],
        num_threads=snakemake.threads,
        seed=p.get("init_seed", 0),
        skipped=missing,
        segment_rule={v: p["segment_rules"][v] for v in videos},
        resize=p["resize"],
        normalise=p["normalise"],
    )
    n_ok = sum(entry["status"] == "ok" for entry in manifest.values())
    logger.info("features for %d videos, %d skipped", n_ok, len(manifest) - n_ok)


run_logged(logger, main)
