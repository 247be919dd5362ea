"""Video Swin clip features: segment sampling, the tiny Swin3D end to end, checkpoint layouts."""

import hashlib
import json
import logging
import math

import numpy as np
import pytest
import torch

from _video import grey_frames
from _video import write_video as write_h264
from vis4mer.shards import open_shard, read_manifest
from vis4mer.swin import (
    BACKBONES,
    build_swin,
    extract_swin_features_to_shard,
    frame_range,
    import_swin3d,
    segment_indices,
    segment_starts,
)

TINY = "swin_test_patch244_window877"
SWIN_B = "swin_base_patch244_window877_kinetics600_22k"
SIZE = 64  # 64 / 32 = 2: 2 x 2 = 4 tokens per segment
TOKENS, DIM = 4, 128  # tiny: embed_dims 16 * 2^3
# (video id, native fps, frames, width, height); decord 0.6 fails on some small widths (48, 72)
VIDEOS = [("v_long", 10, 100, 96, 64), ("v_short", 8, 20, 64, 64)]


def write_video(path, fps, n_frames, width, height):
    """H.264 video whose frame k is a flat grey of level 2 * k + 10."""
    write_h264(path, grey_frames([2 * k + 10 for k in range(n_frames)], width, height), fps)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("swin_videos")
    paths = {}
    for video_id, fps, n_frames, width, height in VIDEOS:
        paths[video_id] = root / f"{video_id}.mp4"
        write_video(paths[video_id], fps, n_frames, width, height)
    paths["v_corrupt"] = root / "v_corrupt.mp4"
    paths["v_corrupt"].write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    paths["v_missing"] = root / "v_missing.mp4"
    return paths


@pytest.mark.parametrize("n_frames", [1, 20, 32, 33, 64, 100, 1000, 4321])
@pytest.mark.parametrize("max_segments", [1, 3, 64])
def test_segment_starts(n_frames, max_segments):
    starts = segment_starts(n_frames, max_segments)
    all_segments = math.ceil(n_frames / 32)
    assert len(starts) == min(max_segments, all_segments)
    assert starts.min() >= 0 and starts.max() <= max(0, n_frames - 32)
    assert (np.diff(starts) > 0).all()
    if len(starts) == all_segments:  # every frame is in some segment
        covered = np.zeros(n_frames, bool)
        for start in starts:
            covered[start : start + 32] = True
        assert covered.all()
    if len(starts) == 1:  # centred, shifted inside the range
        assert starts[0] == min(max(0, n_frames // 2 - 16), max(0, n_frames - 32))
    elif len(starts) < all_segments:  # uniformly spread, not overlapping
        assert np.ptp(np.diff(starts)) <= 1 and np.diff(starts).min() >= 32


def test_frame_range_and_segment_indices():
    assert frame_range(100, 10.0, None, None) == (0, 100)
    assert frame_range(100, 10.0, 2.0, 6.5) == (20, 65)
    assert frame_range(100, 10.0, 8.0, 60.0) == (80, 100)  # end clipped to the video
    with pytest.raises(ValueError, match="no frames"):
        frame_range(100, 10.0, 12.0, 15.0)
    indices = segment_indices(20, 65, max_segments=64)  # 45 frames: 2 segments
    assert indices.shape == (2, 32) and indices.min() == 20 and indices.max() == 64
    short = segment_indices(0, 20, max_segments=4)  # shorter than a segment: last frame repeated
    assert short.shape == (1, 32) and (short[0, 19:] == 19).all()


def test_tiny_swin_features_random_weights(videos, tmp_path, caplog):
    out = tmp_path / "swin.h5"
    with caplog.at_level(logging.WARNING, logger="vis4mer"):
        manifest = extract_swin_features_to_shard(videos, out, TINY, None, max_segments=3, batch_size=2, size=SIZE)
    assert any("RANDOM weights" in record.message for record in caplog.records)
    expected_segments = {"v_long": 3, "v_short": 1}  # 100 frames: 4 possible, max 3; 20 frames: 1
    with open_shard(out) as shard:
        assert shard.attrs["kind"] == "features" and shard.attrs["weights"] == "random-seed0"
        assert shard.attrs["segment_frames"] == 32 and shard.attrs["size"] == SIZE
        for video_id, fps, n_frames, _, _ in VIDEOS:
            tokens = shard["videos"][video_id]
            assert tokens.shape == (expected_segments[video_id], TOKENS, DIM) and tokens.dtype == np.float16
            assert np.isfinite(tokens[()]).all()
            assert dict(tokens.attrs) == {
                "backbone": TINY,
                "weights": "random-seed0",
                "fps": fps,
                "n_segments": expected_segments[video_id],
                "segment_frames": 32,
                "n_native_frames": n_frames,
                "source_video": str(videos[video_id]),
            }
        assert set(shard["videos"]) == {"v_long", "v_short"}
    assert manifest == read_manifest(out)
    assert manifest["v_corrupt"]["status"] == "skipped"
    assert "decord could not open" in manifest["v_corrupt"]["message"]
    assert manifest["v_missing"]["message"].startswith("file not found")
    assert any("skipping video v_corrupt" in record.message for record in caplog.records)


def test_a_video_decord_cannot_open_is_read_with_torchcodec_and_recorded(tmp_path):
    """YouTube serves AV1, which decord cannot decode (COIN's Video Swin features)."""
    import shutil
    import subprocess

    pytest.importorskip("torchcodec.decoders")
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout if shutil.which("ffmpeg") else ""
    if "libsvtav1" not in encoders:
        pytest.skip("no libsvtav1 encoder in this ffmpeg")
    path = tmp_path / "av1.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10:duration=4",
                    "-c:v", "libsvtav1", "-pix_fmt", "yuv420p", str(path)], check=True)
    manifest = extract_swin_features_to_shard({"yt": path}, tmp_path / "swin.h5", TINY, None, 2, 1, size=SIZE)
    assert manifest["yt"]["status"] == "ok"
    with open_shard(tmp_path / "swin.h5") as shard:
        tokens = shard["videos"]["yt"]
        assert tokens.shape == (2, TOKENS, DIM) and tokens.attrs["decoder"] == "torchcodec"
        assert tokens.attrs["decoder_fallback"].startswith(f"decord could not open {path}: DECORDError")


def test_ranges_restrict_segments_and_are_recorded(videos, tmp_path):
    chosen = {key: videos[key] for key in ("v_long", "v_short")}
    ranges = {"v_long": (2.0, 6.5), "v_short": (5.0, 9.0)}  # v_short lasts 2.5 s: nothing in range
    out = tmp_path / "coin.h5"
    manifest = extract_swin_features_to_shard(
        chosen, out, TINY, None, max_segments=64, batch_size=4, ranges=ranges, size=SIZE
    )
    with open_shard(out) as shard:
        tokens = shard["videos"]["v_long"]
        assert tokens.shape == (2, TOKENS, DIM)  # frames 20..64: 45 frames, 2 segments
        assert (tokens.attrs["start"], tokens.attrs["end"]) == (2.0, 6.5)
    assert manifest["v_short"]["status"] == "skipped" and "no frames" in manifest["v_short"]["message"]
    assert (manifest["v_short"]["start"], manifest["v_short"]["end"]) == (5.0, 9.0)
    with pytest.raises(ValueError, match="no \\(start, end\\)"):
        extract_swin_features_to_shard(chosen, out, TINY, None, 4, 1, ranges={"v_long": (0.0, 1.0)}, size=SIZE)


def test_batching_does_not_change_the_tokens(videos, tmp_path):
    chosen, threads = {"v_long": videos["v_long"]}, torch.get_num_threads()
    torch.manual_seed(1)
    extract_swin_features_to_shard(
        chosen, tmp_path / "b1.h5", TINY, None, max_segments=3, batch_size=1, size=SIZE, num_threads=1
    )
    torch.manual_seed(1)
    extract_swin_features_to_shard(
        chosen, tmp_path / "b4.h5", TINY, None, max_segments=3, batch_size=3, size=SIZE, num_threads=1
    )
    assert torch.get_num_threads() == 1
    torch.set_num_threads(threads)
    with open_shard(tmp_path / "b1.h5") as a, open_shard(tmp_path / "b4.h5") as b:
        np.testing.assert_allclose(a["videos/v_long"][()], b["videos/v_long"][()], atol=2e-3)


def test_size_must_be_a_multiple_of_the_token_stride(videos, tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        extract_swin_features_to_shard(videos, tmp_path / "x.h5", TINY, None, 4, 1, size=48)
    with pytest.raises(ValueError, match="unknown Swin backbone"):
        extract_swin_features_to_shard(videos, tmp_path / "x.h5", "swin_huge", None, 4, 1)


def to_video_swin_layout(state_dict):
    """mmaction2 names -> a checkpoint as released with Video-Swin-Transformer: the final
    LayerNorm is `norm` (not `norm3`), keys under `backbone.`, plus a classifier head."""
    backbone = {
        f"backbone.norm.{key[len('norm3.'):]}" if key.startswith("norm3.") else f"backbone.{key}": value
        for key, value in state_dict.items()
    }
    head = {"cls_head.fc_cls.weight": torch.zeros(600, DIM), "cls_head.fc_cls.bias": torch.zeros(600)}
    return {"state_dict": {**backbone, **head}, "meta": {"config": "model = dict(...)"}}


def to_mmaction2_layout(state_dict):
    backbone = {f"backbone.{key}": value for key, value in state_dict.items()}
    head = {"cls_head.fc_cls.weight": torch.zeros(600, DIM), "cls_head.fc_cls.bias": torch.zeros(600)}
    return {"state_dict": {**backbone, **head}, "meta": {"epoch": 30}}


LAYOUTS = {
    "video-swin": to_video_swin_layout,
    "mmaction2": to_mmaction2_layout,
    "bare": lambda state_dict: dict(state_dict),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_checkpoint_round_trip(layout, tmp_path):
    model, _ = build_swin(TINY)
    checkpoint = tmp_path / "swin.pth"
    torch.save(LAYOUTS[layout](model.state_dict()), checkpoint)
    if layout == "video-swin":
        assert "backbone.norm.weight" in torch.load(checkpoint)["state_dict"]
    torch.manual_seed(1)  # a different random init, overwritten by the checkpoint
    loaded, report = build_swin(TINY, checkpoint)
    assert report.weights == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert report.layout == ("video-swin" if layout == "video-swin" else "mmaction2")
    assert report.missing_keys == () and report.unexpected_keys == ()
    assert len(report.ignored_keys) == (0 if layout == "bare" else 2)
    clip = torch.randn(2, 3, 32, SIZE, SIZE)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(clip), model(clip), rtol=0, atol=0)


def test_broken_checkpoint_is_reported_and_recorded(videos, tmp_path, caplog):
    model, _ = build_swin(TINY)
    state_dict = to_mmaction2_layout(model.state_dict())
    del state_dict["state_dict"]["backbone.layers.1.blocks.0.mlp.fc1.weight"]
    del state_dict["state_dict"]["backbone.layers.0.blocks.0.attn.relative_position_index"]  # rebuilt, not reported
    state_dict["state_dict"]["backbone.layers.0.blocks.0.attn.extra_table"] = torch.zeros(3)
    checkpoint = tmp_path / "broken.pth"
    torch.save(state_dict, checkpoint)
    out = tmp_path / "swin.h5"
    with caplog.at_level(logging.WARNING, logger="vis4mer"):
        extract_swin_features_to_shard({"v_short": videos["v_short"]}, out, TINY, checkpoint, 4, 1, size=SIZE)
    messages = " ".join(record.message for record in caplog.records)
    assert "1 missing keys" in messages and "1 unexpected keys" in messages
    with open_shard(out) as shard:
        assert json.loads(shard.attrs["missing_keys"]) == ["layers.1.blocks.0.mlp.fc1.weight"]
        assert json.loads(shard.attrs["unexpected_keys"]) == ["layers.0.blocks.0.attn.extra_table"]
        assert json.loads(shard.attrs["ignored_keys"]) == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
        assert shard.attrs["checkpoint_layout"] == "mmaction2" and shard.attrs["checkpoint"] == str(checkpoint)


def test_unusable_checkpoints_fail_naming_the_file(tmp_path):
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, unrelated)
    with pytest.raises(ValueError, match="unrelated.pth shares no parameter name"):
        build_swin(TINY, unrelated)
    wrong_width = tmp_path / "wrong_width.pth"
    torch.save({"backbone.patch_embed.proj.weight": torch.zeros(8, 3, 2, 4, 4)}, wrong_width)
    with pytest.raises(ValueError, match="wrong_width.pth does not fit"):
        build_swin(TINY, wrong_width)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_swin(TINY, tmp_path / "absent.pth")


def test_checkpoint_with_non_tensor_metadata_loads_with_a_warning(tmp_path, caplog):
    model, _ = build_swin(TINY)
    checkpoint = tmp_path / "meta.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"history": np.arange(3)}}, checkpoint)
    with caplog.at_level(logging.WARNING, logger="vis4mer"):
        _, report = build_swin(TINY, checkpoint)
    assert any("full unpickling" in record.message and "numpy" in record.message for record in caplog.records)
    assert report.missing_keys == () and report.unexpected_keys == ()


def test_swin_b_configuration():
    """Swin-B is mmaction2's own "base" architecture (building it costs ~9 s on 2 cores, so
    its forward shape is checked with the tiny model's identical patch/window geometry)."""
    config = BACKBONES[SWIN_B]
    assert (config.patch_size, config.window_size) == ((2, 4, 4), (8, 7, 7))
    assert import_swin3d().arch_zoo["base"] == {
        "embed_dims": config.embed_dims,
        "depths": list(config.depths),
        "num_heads": list(config.num_heads),
    } == {"embed_dims": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]}
    assert config.out_dim == 1024 and (224 // config.spatial_stride) ** 2 == 49
    tiny = BACKBONES[TINY]
    assert (tiny.patch_size, tiny.window_size, tiny.spatial_stride) == (config.patch_size, config.window_size, 32)
    model, _ = build_swin(TINY)
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 32, 96, 96)).shape == (1, DIM, 16, 3, 3)  # [B, C, T/2, S/32, S/32]


def test_import_swin3d_is_idempotent():
    assert import_swin3d() is import_swin3d()


# ------------------------------------------------------------------ the reference code's segments


def _reference_train_starts(n_frames, n_segments):
    """The reference extraction's training starts, written out (segments of 32 frames)."""
    if n_frames < n_segments + 32:
        return list(range(n_frames - 32))
    return [int(s) for s in np.arange(0, n_frames - 32, step=(n_frames - 32) / float(n_segments))]


@pytest.mark.parametrize("n_segments", [512, 256])  # Breakfast, COIN
@pytest.mark.parametrize("n_frames", [40, 300, 543, 544, 545, 1000, 6000])
def test_dense_segments_of_training_videos(n_frames, n_segments):
    starts = segment_starts(n_frames, n_segments, rule="dense")
    assert starts.tolist() == _reference_train_starts(n_frames, n_segments)
    if n_frames < n_segments + 32:  # a segment at every frame
        assert starts.tolist() == list(range(n_frames - 32))
    else:  # exactly n_segments, uniformly spaced over the whole video
        assert len(starts) == n_segments and starts[0] == 0 and starts[-1] >= n_frames - 32 - math.ceil((n_frames - 32) / n_segments)


def test_dense_segments_of_breakfast_and_coin_example_lengths():
    breakfast_short = segment_starts(15 * 20, 512, rule="dense")  # 20 s at 15 fps: 300 frames
    assert len(breakfast_short) == 268 and breakfast_short[-1] == 267
    breakfast_long = segment_starts(15 * 150, 512, rule="dense")  # 150 s: 2250 frames
    assert len(breakfast_long) == 512 and breakfast_long[:3].tolist() == [0, 4, 8] and breakfast_long[-1] == 2213
    coin_long = segment_starts(25 * 60, 256, rule="dense")  # 60 s at 25 fps
    assert len(coin_long) == 256 and coin_long[-1] == 1462


@pytest.mark.parametrize("n_frames", [20, 80, 96, 2000, 2048, 9000])
def test_uniform_test_segments_are_always_64_over_the_whole_video(n_frames):
    starts = segment_starts(n_frames, 64, rule="uniform")
    assert len(starts) == 64 and starts[0] == 0
    assert starts.tolist() == [i * max(0, n_frames - 32) // 64 for i in range(64)]
    assert (np.diff(starts) >= 0).all() and starts[-1] <= max(0, n_frames - 32)
    if n_frames - 32 >= 64:  # 64 distinct segments spanning the video
        assert len(set(starts.tolist())) == 64 and starts[-1] >= (n_frames - 32) * 63 // 64


def test_uniform_segments_of_a_short_test_video_are_the_reference_codes_repetition():
    """Breakfast's test extraction gives n - 32 segments when n < 96, and its dataset repeats
    them to 64 (indices int(i * (n - 32) / 64)): the same segments as uniform's 64 starts."""
    n_frames = 80
    repeated = np.arange(n_frames - 32)[np.arange(0, n_frames - 32, (n_frames - 32) / 64.0, dtype=np.float32).astype(np.int32)]
    assert segment_starts(n_frames, 64, rule="uniform").tolist() == repeated.tolist()


def test_reference_segments_extraction_by_role(videos, tmp_path):
    chosen = {key: videos[key] for key in ("v_long", "v_short")}
    out = tmp_path / "reference.h5"
    extract_swin_features_to_shard(
        chosen, out, TINY, None, max_segments={"v_long": 80, "v_short": 4}, batch_size=8, size=SIZE,
        segment_rule={"v_long": "dense", "v_short": "uniform"}, resize="squash", normalise="none",
    )
    with open_shard(out) as shard:
        assert shard["videos/v_long"].shape == (68, TOKENS, DIM)  # 100 frames < 80 + 32: a segment at 0..67
        assert shard["videos/v_short"].shape == (4, TOKENS, DIM)  # always 4
        assert json.loads(shard.attrs["segment_rules"]) == ["dense", "uniform"]
        assert (shard.attrs["resize"], shard.attrs["normalise"]) == ("squash", "none")
    with pytest.raises(ValueError, match="unknown segment rule"):
        extract_swin_features_to_shard(chosen, out, TINY, None, 4, 1, size=SIZE, segment_rule="every")


def test_segment_encoder_feeds_pixels_over_255_without_normalisation():
    from vis4mer.swin import SegmentEncoder

    class Inputs(torch.nn.Module):  # [B, 3, T, S, S] -> [B, 3, T, 1, 1]: the mean pixel of each channel
        def forward(self, clips):
            return clips.mean(dim=(3, 4), keepdim=True)

    segment = np.zeros((1, 2, 2, 2, 3), np.uint8)
    segment[..., 0], segment[..., 1], segment[..., 2] = 255, 51, 0
    raw = SegmentEncoder(Inputs(), torch.device("cpu"), normalise="none")(segment)
    np.testing.assert_allclose(raw[0, 0], [1.0, 0.2, 0.0], atol=1e-3)
    ours = SegmentEncoder(Inputs(), torch.device("cpu"))(segment)
    np.testing.assert_allclose(ours[0, 0], [(255 - 123.675) / 58.395, (51 - 116.28) / 57.12, -103.53 / 57.375], atol=1e-2)
