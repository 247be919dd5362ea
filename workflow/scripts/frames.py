"""Rule frames: decode the videos of one shard into a frames shard."""

from pathlib import Path

from _common import run_logged, set_threads, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "frames")


def main():
    from vis4mer.sources.local import resolve_videos
    from vis4mer.frames import decode_videos_to_shard
    from vis4mer.shards import shard_groups
    from vis4mer.sources.splits import read_split_csv

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
    group = groups[p["shard_index"]]
    if "ids" in p and list(p["ids"]) != group:  # lvu, breakfast, coin: ids planned from the sources
        raise RuntimeError(f"dataset {p['dataset']}: shard {p['shard_index']} of the split files differs from the planned one")
    missing, keep_last_s = {}, {}
    if "downloads" in snakemake.input.keys():  # lvu, coin: the files the download stage got
        from vis4mer.sources import videos_from_manifests

        videos, missing = videos_from_manifests(group, list(snakemake.input.downloads))
    elif "videos" in p:  # breakfast: files found when the DAG was built
        videos, missing = {vid: Path(path) for vid, path in p["videos"].items()}, dict(p["missing"])
    else:
        videos = resolve_videos(group, p["video_dir"], p["video_extensions"])
    if p.get("trim_preview"):  # LVU: keep the last <duration> seconds (lvu_durations.csv)
        from vis4mer.sources.lvu import read_durations

        durations = read_durations(Path(snakemake.input.durations).parent)
        keep_last_s = {vid: durations[vid] for vid in videos if vid in durations}
        if unknown := sorted(set(videos) - set(keep_last_s)):
            logger.warning("no duration in %s for %s: decoded whole", snakemake.input.durations, unknown)
    ranges = {vid: tuple(r) for vid, r in p.get("ranges", {}).items() if vid in videos}
    logger.info("shard %d/%d: %d videos, fps %s, size %s, decoder %s", p["shard_index"], p["n_shards"], len(videos), p["fps"], p["size"], p["decoder"])
    manifest = decode_videos_to_shard(
        videos, snakemake.output[0], fps=p["fps"], size=p["size"], decoder=p["decoder"],
        ranges=ranges, keep_last_s=keep_last_s, skipped=missing,
    )
    skipped = {vid: entry["message"] for vid, entry in manifest.items() if entry["status"] != "ok"}
    logger.info("decoded %d videos, skipped %d", len(manifest) - len(skipped), len(skipped))
    for vid, message in sorted(skipped.items()):
        logger.warning("skipped %s: %s", vid, message)


run_logged(logger, main)
