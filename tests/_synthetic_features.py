"""Synthetic feature shards and split rows for the datasets/training/evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vis4mer.shards import ShardWriter
from vis4mer.sources.splits import SplitRow, write_split_csv

LABEL_NAMES = ("neg", "pos")


def write_feature_shard(path: Path, videos: dict[str, np.ndarray], skipped: dict[str, str] | None = None) -> Path:
    """A complete features shard holding `videos` ({id: [T, tokens, dim]}) and skipped ids."""
    with ShardWriter(path, "features", attrs={"backbone": "synthetic", "weights": "random", "fps": 1.0}) as shard:
        for video_id, array in videos.items():
            shard.add(video_id, array.astype(np.float16), n_frames=len(array), source_video=f"{video_id}.mp4")
        for video_id, message in (skipped or {}).items():
            shard.skip(video_id, message)
    return Path(path)


def separable_dataset(tmp_path: Path, n_videos: int = 16, tokens: int = 3, dim: int = 8, seed: int = 0):
    """Two shards of videos whose label is the sign of feature 0; rows per split.

    Lengths vary between 3 and 9 frames, so windows of 6 frames both pad and slide.
    """
    rng = np.random.default_rng(seed)
    videos, rows = {}, []
    for index in range(n_videos):
        label = index % 2
        n_frames = int(rng.integers(3, 10))
        array = rng.normal(0.0, 0.3, size=(n_frames, tokens, dim))
        array[:, :, 0] += 1.0 if label else -1.0
        video_id = f"v{index:03d}"
        videos[video_id] = array
        rows.append(SplitRow(video_id, label, LABEL_NAMES[label]))
    ids = sorted(videos)
    half = len(ids) // 2
    shards = [
        write_feature_shard(tmp_path / "shard_0000.h5", {v: videos[v] for v in ids[:half]}),
        write_feature_shard(tmp_path / "shard_0001.h5", {v: videos[v] for v in ids[half:]}),
    ]
    splits = {"train": rows[: n_videos // 2], "val": rows[n_videos // 2 : 3 * n_videos // 4], "test": rows[3 * n_videos // 4 :]}
    return shards, splits, videos


def write_splits(split_dir: Path, splits: dict[str, list[SplitRow]]) -> dict[str, Path]:
    paths = {}
    for split, rows in splits.items():
        paths[split] = split_dir / f"{split}.csv"
        write_split_csv(paths[split], rows)
    return paths
