"""Rule demo_videos: generate the synthetic demo dataset (videos + split files)."""

from pathlib import Path

from _common import run_logged, start

snakemake = snakemake  # noqa: F821 (injected by Snakemake)
logger = start(snakemake, "demo_videos")


def main():
    from vis4mer.demo_data import generate_demo_dataset

    demo = snakemake.params.demo
    out_dir = Path(snakemake.output.videos).parent
    logger.info("generating %d demo videos into %s with %s", demo["n_videos"], out_dir, demo)
    metadata = generate_demo_dataset(
        out_dir,
        n_videos=demo["n_videos"],
        seed=demo["seed"],
        size=demo["size"],
        fps=demo["fps"],
        min_seconds=demo["min_seconds"],
        max_seconds=demo["max_seconds"],
        split_fractions=tuple(demo["split_fractions"]),
        event_seconds=tuple(demo["event_seconds"]),
        min_gap_seconds=demo["min_gap_seconds"],
    )
    logger.info("wrote %d videos", len(metadata["videos"]))


run_logged(logger, main)
