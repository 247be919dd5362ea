"""A tiny trained run for the predict/CLI tests, built once per session in-process.

Tiny demo videos (PyAV H.264), decoded and encoded by the pipeline's library functions
(vit_tiny at 32 px, random weights seed 0: 5 tokens x 192 per frame), then 1-epoch
trainings with the metadata the workflow's train rule records: a ViS4mer and a
Transformer on the order task, and a ViS4mer regression on a log-transformed target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

FPS, SIZE, WINDOW = 1.0, 32, 4
TRANSFORM = {"log": True, "scale": 2.0, "offset": -3.0}  # target = 2 ln(n_frames) - 3


@dataclass
class TinyRun:
    root: Path
    videos: dict[str, Path]  # video id -> .mp4
    shards: list[Path]
    rows: dict[str, list]  # split -> SplitRow (order task)
    classifier: Path  # vis4mer, classification
    transformer: Path
    regressor: Path  # vis4mer, regression with TRANSFORM


_CACHE: dict[str, TinyRun] = {}


def inference_metadata(label_column="class_id", label_transform=None, stride=1):
    """What workflow/scripts/train.py adds to a checkpoint (extra_metadata)."""
    from vis4mer.checkpoint import inference_metadata

    return inference_metadata(frames={"fps": FPS, "size": SIZE, "decoder": "decord"}, eval_stride_frames=stride,
                              target={"label_column": label_column, "label_transform": label_transform})


def write_audio(path: Path, seconds: float = 1.0) -> Path:
    """An .mp4 with one AAC audio stream and no video stream."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for _ in range(int(seconds * 16000 / 1024)):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def tiny_run(tmp_path_factory) -> TinyRun:
    if "run" not in _CACHE:
        _CACHE["run"] = _build(tmp_path_factory.mktemp("predict_run"))
    return _CACHE["run"]


def _build(root: Path) -> TinyRun:
    from vis4mer.demo_data import generate_demo_dataset
    from vis4mer.features import extract_features_to_shard
    from vis4mer.frames import decode_videos_to_shard
    from vis4mer.sources.splits import SplitRow, read_split_csv
    from vis4mer.training import ModelSpec, RunOptions, TrainOutputs, TrainSettings, train_model

    generate_demo_dataset(
        root / "data", n_videos=6, seed=3, size=SIZE, fps=2.0, min_seconds=6, max_seconds=11,
        event_seconds=(1.0, 1.0), min_gap_seconds=2.0, split_fractions=(0.34, 0.33, 0.33),
    )
    videos = {p.stem: p for p in sorted((root / "data" / "videos").glob("*.mp4"))}
    decode_videos_to_shard(videos, root / "frames.h5", fps=FPS, size=SIZE)
    shard = root / "features.h5"
    extract_features_to_shard(root / "frames.h5", shard, "vit_tiny_patch16_224", None, batch_size=8, device="cpu", img_size=SIZE, seed=0)
    rows = {split: read_split_csv(root / "data" / "splits" / "order" / f"{split}.csv", "youtube_id", "class_id") for split in ("train", "val", "test")}
    settings = TrainSettings(window_frames=WINDOW, tokens="all", batch_size=2, epochs=1, val_stride_frames=2)

    def train(name, arch, task_type, task_rows, metadata, **kwargs):
        out = root / name
        train_model(
            run_name=f"tiny/{name}", task_type=task_type, feature_shards=[shard], train_rows=task_rows["train"],
            val_rows=task_rows["val"], label_rows=[task_rows["test"]],
            model_spec=ModelSpec(arch, d_model=8, n_layers=2, dropout=0.0, kwargs=kwargs), settings=settings,
            options=RunOptions(device="cpu", progress=False),
            outputs=TrainOutputs(out / "best.pt", out / "last.pt", out / "log.csv", out / "curve.png"),
            extra_metadata=metadata,
        )
        return out / "best.pt"

    from vis4mer.feature_store import FeatureStore

    store = FeatureStore([shard])
    regression_rows = {
        split: [SplitRow(r.video_id, 2.0 * math.log(store.n_frames(r.video_id)) - 3.0, None) for r in split_rows]
        for split, split_rows in rows.items()
    }
    store.close()
    return TinyRun(
        root=root,
        videos=videos,
        shards=[shard],
        rows=rows,
        classifier=train("vis4mer", "vis4mer", "classification", rows, inference_metadata(), d_state=8),
        transformer=train("transformer", "transformer", "classification", rows, inference_metadata(), n_heads=1),
        regressor=train("regression", "vis4mer", "regression", regression_rows,
                        inference_metadata("n_frames", TRANSFORM, stride=2), d_state=8),
    )
