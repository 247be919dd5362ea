"""Token features of a frames shard with a tiny timm ViT."""

import hashlib
import logging

import numpy as np
import pytest
import torch

from vis4mer.compat import import_timm
from vis4mer.features import FrameEncoder, build_backbone, extract_features_to_shard
from vis4mer.shards import ShardWriter, open_shard, read_manifest

BACKBONE = "vit_tiny_patch16_224"
SIZE = 32  # img_size 32, patch 16: 2 x 2 patches + CLS = 5 tokens of dim 192
TOKENS, DIM = 5, 192


@pytest.fixture
def frames_shard(tmp_path):
    path = tmp_path / "frames.h5"
    rng = np.random.default_rng(0)
    with ShardWriter(path, "frames", attrs={"fps": 1.0, "size": SIZE}) as shard:
        for video_id, n_frames in (("v_a", 3), ("v_b", 5)):
            frames = rng.integers(0, 256, (n_frames, SIZE, SIZE, 3), dtype=np.uint8)  # [T, S, S, 3]
            shard.add(video_id, frames, fps=1.0, n_frames=n_frames, source_video=f"/videos/{video_id}.mp4")
        shard.skip("v_bad", "decord could not decode /videos/v_bad.mp4", source_video="/videos/v_bad.mp4")
    return path


def test_random_weights_tokens_shapes_and_attrs(frames_shard, tmp_path, caplog):
    out = tmp_path / "features.h5"
    with caplog.at_level(logging.WARNING, logger="vis4mer"):
        manifest = extract_features_to_shard(frames_shard, out, BACKBONE, None, batch_size=2, img_size=SIZE)
    assert any("RANDOM weights" in record.message for record in caplog.records)
    with open_shard(out) as shard:
        assert shard.attrs["kind"] == "features" and shard.attrs["weights"] == "random-seed0"
        for video_id, n_frames in (("v_a", 3), ("v_b", 5)):
            tokens = shard["videos"][video_id]
            assert tokens.shape == (n_frames, TOKENS, DIM) and tokens.dtype == np.float16
            assert np.isfinite(tokens[()]).all()
            assert dict(tokens.attrs) == {
                "backbone": BACKBONE,
                "weights": "random-seed0",
                "fps": 1.0,
                "n_frames": n_frames,
                "source_video": f"/videos/{video_id}.mp4",
            }
        assert "v_bad" not in shard["videos"]
    assert manifest == read_manifest(out)
    assert manifest["v_bad"] == {
        "status": "skipped",
        "message": "decord could not decode /videos/v_bad.mp4",
        "source_video": "/videos/v_bad.mp4",
    }


def test_batching_and_threads_do_not_change_the_tokens(frames_shard, tmp_path):
    threads = torch.get_num_threads()
    torch.manual_seed(1)
    try:
        extract_features_to_shard(frames_shard, tmp_path / "b1.h5", BACKBONE, None, 1, img_size=SIZE, num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    torch.manual_seed(1)
    extract_features_to_shard(frames_shard, tmp_path / "b4.h5", BACKBONE, None, batch_size=4, img_size=SIZE)
    with open_shard(tmp_path / "b1.h5") as a, open_shard(tmp_path / "b4.h5") as b:
        np.testing.assert_allclose(a["videos/v_b"][()], b["videos/v_b"][()], atol=2e-3)


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_checkpoint_round_trip(frames_shard, tmp_path, wrap):
    model, _ = build_backbone(BACKBONE, img_size=SIZE)
    checkpoint = tmp_path / "vit_tiny.pth"
    state_dict = model.state_dict()
    torch.save(state_dict if wrap is None else {wrap: state_dict, "epoch": 3}, checkpoint)
    out = tmp_path / "features.h5"
    extract_features_to_shard(frames_shard, out, BACKBONE, checkpoint, batch_size=4, img_size=SIZE)
    expected_hash = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    encoder = FrameEncoder(model, batch_size=4, device=torch.device("cpu"))
    with open_shard(out) as shard, open_shard(frames_shard) as frames:
        assert shard.attrs["weights"] == expected_hash and shard.attrs["checkpoint"] == str(checkpoint)
        for video_id in ("v_a", "v_b"):
            assert shard["videos"][video_id].attrs["weights"] == expected_hash
            np.testing.assert_array_equal(shard["videos"][video_id][()], encoder(frames["videos"][video_id][()]))


def test_missing_checkpoint_names_the_path(frames_shard, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        extract_features_to_shard(frames_shard, tmp_path / "f.h5", BACKBONE, tmp_path / "nowhere.pth", 2, img_size=SIZE)
    assert not (tmp_path / "f.h5").exists()


def test_checkpoint_of_another_model_is_rejected(frames_shard, tmp_path):
    checkpoint = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, checkpoint)
    with pytest.raises(ValueError, match="shares no parameter name"):
        extract_features_to_shard(frames_shard, tmp_path / "f.h5", BACKBONE, checkpoint, 2, img_size=SIZE)


def test_partial_checkpoint_reports_missing_and_unexpected_keys(frames_shard, tmp_path, caplog):
    model, _ = build_backbone(BACKBONE, img_size=SIZE)
    state_dict = {k: v for k, v in model.state_dict().items() if not k.startswith("norm.")}
    state_dict["extra.weight"] = torch.zeros(1)
    torch.save(state_dict, tmp_path / "partial.pth")
    with caplog.at_level(logging.WARNING, logger="vis4mer"):
        extract_features_to_shard(frames_shard, tmp_path / "f.h5", BACKBONE, tmp_path / "partial.pth", 2, img_size=SIZE)
    messages = " ".join(record.message for record in caplog.records)
    assert "missing keys" in messages and "norm.weight" in messages
    assert "unexpected keys" in messages and "extra.weight" in messages


@pytest.mark.parametrize("n_classes", [21843, 1000, 7])
def test_checkpoint_with_any_classifier_head_loads(frames_shard, tmp_path, n_classes, caplog):
    """An in21k checkpoint (21843-class head) used to fail with a size mismatch: the features need no head."""
    timm = import_timm()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        source = timm.create_model(BACKBONE, pretrained=False, img_size=SIZE, num_classes=n_classes)
    torch.save(source.state_dict(), tmp_path / "headed.pth")
    with caplog.at_level(logging.INFO, logger="vis4mer"):
        model, weights = build_backbone(BACKBONE, tmp_path / "headed.pth", img_size=SIZE)
    assert weights == hashlib.sha256((tmp_path / "headed.pth").read_bytes()).hexdigest()
    assert "classifier head ['head.weight', 'head.bias'] dropped" in " ".join(r.message for r in caplog.records)
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model.forward_features(images), source.eval().forward_features(images))


def test_frame_size_must_match_the_backbone(frames_shard, tmp_path):
    with pytest.raises(ValueError, match="32x32 frames but the backbone expects 224x224: pass img_size=32"):
        extract_features_to_shard(frames_shard, tmp_path / "f.h5", BACKBONE, None, 2)
    assert not (tmp_path / "f.h5").exists()


def test_random_backbone_is_the_same_network_in_every_job():
    """Shards extracted by different jobs must come from one network when no checkpoint is given."""
    from vis4mer.features import build_backbone

    torch.manual_seed(123)
    first, weights = build_backbone("vit_tiny_patch16_224", img_size=32, seed=7)
    state_after = torch.random.get_rng_state()
    torch.manual_seed(456)
    second, _ = build_backbone("vit_tiny_patch16_224", img_size=32, seed=7)
    other, other_weights = build_backbone("vit_tiny_patch16_224", img_size=32, seed=8)
    assert weights == "random-seed7" and other_weights == "random-seed8"
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, c) for a, c in zip(first.state_dict().values(), other.state_dict().values()))
    torch.manual_seed(123)
    build_backbone("vit_tiny_patch16_224", img_size=32, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state_after), "the caller's RNG must be left untouched"


def test_a_video_with_non_finite_features_is_skipped_and_named(frames_shard, tmp_path, monkeypatch, caplog):
    """Written as skipped, with the reason, so training and evaluation count it as missing;
    a shard written without the check names the video and the shard when it is read."""
    from vis4mer.feature_store import FeatureStore

    encode = FrameEncoder.__call__

    def nan_for_v_b(self, frames):
        tokens = encode(self, frames)
        if len(frames) == 5:  # v_b
            tokens[2, 0, 0] = np.nan
        return tokens

    monkeypatch.setattr(FrameEncoder, "__call__", nan_for_v_b)
    out = tmp_path / "features.h5"
    with caplog.at_level(logging.WARNING, logger="vis4mer"):
        manifest = extract_features_to_shard(frames_shard, out, BACKBONE, None, batch_size=2, img_size=SIZE)
    message = "non-finite features: 1 NaN or infinite values in 1 of 5 frames (first: frame 2)"
    assert manifest["v_b"] == {"status": "skipped", "message": message, "source_video": "/videos/v_b.mp4"}
    assert f"skipping video v_b: {message}" in caplog.text
    store = FeatureStore([out])
    assert store.video_ids == ["v_a"] and store.missing_reason("v_b") == f"skipped: {message}"
    # an older shard holding the NaN: reading it names the shard, the video and the frames
    old = tmp_path / "old.h5"
    with ShardWriter(old, "features") as shard:
        shard.add("v_c", np.array([[[1.0, np.inf]]], dtype=np.float16), n_frames=1)
    with pytest.raises(ValueError, match=r"old.h5: videos/v_c, frames 0:None: non-finite features: 1 NaN or infinite"):
        FeatureStore([old]).read("v_c")


class _Inputs(torch.nn.Module):
    """Stands in for a ViT: its 'tokens' are the pixels it was fed."""

    def forward_features(self, images):  # [B, 3, S, S] -> [B, S*S, 3]
        return images.flatten(2).transpose(1, 2)


def test_pixels_fed_to_the_backbone_with_and_without_normalisation():
    frame = np.zeros((1, 2, 2, 3), np.uint8)
    frame[0, 0, 0] = (0, 51, 255)
    frame[0, 1, 1] = (102, 204, 153)
    raw = FrameEncoder(_Inputs(), batch_size=1, device=torch.device("cpu"), normalise="none")(frame)
    np.testing.assert_allclose(raw[0, 0], [0.0, 0.2, 1.0], atol=1e-3)  # the reference: pixels / 255, no mean/std
    np.testing.assert_allclose(raw[0, 3], [0.4, 0.8, 0.6], atol=1e-3)
    model, _ = build_backbone(BACKBONE, img_size=SIZE)  # timm's config of this ViT: mean = std = 0.5
    encoder = FrameEncoder(model, batch_size=1, device=torch.device("cpu"))
    assert encoder.mean.flatten().tolist() == [0.5] * 3 and encoder.std.flatten().tolist() == [0.5] * 3
    with pytest.raises(ValueError, match="unknown normalise"):
        FrameEncoder(_Inputs(), 1, torch.device("cpu"), normalise="imagenet")


def test_normalisation_and_resize_are_recorded_and_change_the_tokens(frames_shard, tmp_path):
    extract_features_to_shard(frames_shard, tmp_path / "ours.h5", BACKBONE, None, 4, img_size=SIZE)
    extract_features_to_shard(frames_shard, tmp_path / "ref.h5", BACKBONE, None, 4, img_size=SIZE, normalise="none")
    with open_shard(tmp_path / "ours.h5") as ours, open_shard(tmp_path / "ref.h5") as reference:
        assert (ours.attrs["normalise"], reference.attrs["normalise"]) == ("backbone", "none")
        assert ours.attrs["resize"] == "crop"  # the frames shard has no resize attr: frames from before it were cropped
        assert not np.allclose(ours["videos/v_a"][()], reference["videos/v_a"][()])
