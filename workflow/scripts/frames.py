"""Rule frames: decode the videos of one shard into a frames shard."""

from _common import run_logged, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "frames")


def main():
    from vis4mer.datasets import resolve_videos
    from vis4mer.frames import decode_videos_to_shard
    from vis4mer.shards import shard_groups
    from vis4mer.splits import read_split_csv

    set_threads(snakemake.threads)
    p = snakemake.params.frames
    ids = set()
    for path, id_column, label_column in p["split_files"]:
        ids.update(row.video_id for row in read_split_csv(path, id_column, label_column))
    groups = shard_groups(ids, p["shard_size"])
    if len(groups) != p["n_shards"]:
        raise RuntimeError(
            f"dataset {p['dataset']}: the split files list {len(ids)} videos = {len(groups)} shards of "
            f"{p['shard_size']}, but the workflow planned {p['n_shards']} shards (for a demo dataset: "
            "demo.n_videos must match what the generator writes)"
        )
    videos = resolve_videos(groups[p["shard_index"]], p["video_dir"], p["video_extensions"])
    logger.info("shard %d/%d: %d videos, fps %s, size %s, decoder %s", p["shard_index"], p["n_shards"], len(videos), p["fps"], p["size"], p["decoder"])
    manifest = decode_videos_to_shard(videos, snakemake.output[0], fps=p["fps"], size=p["size"], decoder=p["decoder"])
    skipped = {vid: entry["message"] for vid, entry in manifest.items() if entry["status"] != "ok"}
    logger.info("decoded %d videos, skipped %d", len(manifest) - len(skipped), len(skipped))
    for vid, message in sorted(skipped.items()):
        logger.warning("skipped %s: %s", vid, message)


run_logged(logger, main)
