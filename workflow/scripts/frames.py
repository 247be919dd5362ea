"""Rule frames: decode the videos of one shard into a frames shard.

The shard's ids, the files known when the DAG was built (and why the others have none),
COIN-style ranges, LVU's keep-last or spread durations and the resize come as params (common.smk, from the
dataset's source and shard plan); a downloaded dataset's files come from its manifests.
"""

from _common import run_logged, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "frames")


def main():
    from vis4mer.frames import decode_videos_to_shard
    from vis4mer.sources import shard_videos

    set_threads(snakemake.threads)
    p = snakemake.params.frames
    manifests = list(snakemake.input.downloads) if "downloads" in snakemake.input.keys() else None
    videos, missing = shard_videos(p["ids"], p, manifests)
    keep_last_s = {}
    if "keep_last_s" in p:  # LVU trim_preview: the last <duration> seconds (lvu_durations.csv)
        keep_last_s = {vid: seconds for vid, seconds in p["keep_last_s"].items() if vid in videos}
        if unknown := sorted(set(videos) - set(keep_last_s)):
            logger.warning("no duration in %s for %s: decoded whole", snakemake.input.durations, unknown)
    spread_seconds = {}
    if "spread_seconds" in p:  # LVU, recipe item lvu_frame_times spread: duration + 1 frames over the file
        spread_seconds = {vid: seconds for vid, seconds in p["spread_seconds"].items() if vid in videos}
        if unknown := sorted(set(videos) - set(spread_seconds)):
            logger.warning("no duration in lvu_durations.csv for %s: sampled at %s fps", unknown, p["fps"])
    ranges = {vid: tuple(r) for vid, r in p.get("ranges", {}).items() if vid in videos}
    logger.info("shard %d/%d: %d videos, fps %s, size %s (%s), decoder %s", p["shard_index"], p["n_shards"], len(videos), p["fps"],
                p["size"], p["resize"], p["decoder"])
    manifest = decode_videos_to_shard(
        videos, snakemake.output[0], fps=p["fps"], size=p["size"], decoder=p["decoder"],
        ranges=ranges, keep_last_s=keep_last_s, skipped=missing, resize=p["resize"], spread_seconds=spread_seconds,
    )
    skipped = {vid: entry["message"] for vid, entry in manifest.items() if entry["status"] != "ok"}
    logger.info("decoded %d videos, skipped %d", len(manifest) - len(skipped), len(skipped))
    for vid, message in sorted(skipped.items()):
        logger.warning("skipped %s: %s", vid, message)


run_logged(logger, main)
