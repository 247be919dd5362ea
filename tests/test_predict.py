"""vis4mer.predict: batch and streaming prediction on new videos from a training checkpoint.

A tiny run (tests/_predict_data.py) is built once: demo videos -> frames -> vit_tiny
features (random weights, seed 0) -> 1-epoch models. Predictions from the videos must
equal evaluation's on the stored features; streaming must equal batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from _predict_data import TRANSFORM, tiny_run, write_audio
from _video import write_video
from vis4mer.feature_store import FeatureStore
from vis4mer.frames import VideoError
from vis4mer.labels import read_task_rows
from vis4mer.evaluation import predict_videos
from vis4mer.checkpoint import CheckpointError, load_model
from vis4mer.predict import (
    BackboneError,
    InferenceSpec,
    Predictor,
    PredictError,
    expand_inputs,
    raw_from_target,
    target_quantity,
)
from vis4mer.sources.splits import SplitRow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def classifier(run):
    return Predictor(run.classifier, device="cpu")


def _evaluation_vectors(checkpoint, run, video_ids, stride):
    model, meta = load_model(checkpoint)
    store = FeatureStore(run.shards)
    rows = [SplitRow(v, 0, None) for v in video_ids]
    vectors, _ = predict_videos(model, store, rows, window_frames=meta["window_frames"], tokens=meta["tokens"],
                                stride_frames=stride, batch_size=4, device="cpu", task_type=meta["task"]["type"])
    store.close()
    return vectors


# ----------------------------------------------------------------------------- batch and streaming


def test_batch_prediction_equals_evaluation_on_the_pipeline_features(run, classifier):
    ids = sorted(run.videos)
    expected = _evaluation_vectors(run.classifier, run, ids, stride=1)
    for video_id in ids:
        got = classifier.predict(run.videos[video_id])
        store = FeatureStore(run.shards)
        assert got.n_frames == store.n_frames(video_id)
        np.testing.assert_allclose(got.vector, expected[video_id], rtol=1e-5, atol=1e-6)
        described = classifier.describe(got.vector, got.n_windows, top_k=1)
        assert len(described["top_k"]) == 1 and math.isclose(sum(described["probabilities"]), 1.0, rel_tol=1e-9)
        assert described["label"] == ("a_first", "b_first")[int(np.argmax(expected[video_id]))]


def test_streaming_final_equals_batch_and_reports_running_predictions(run, classifier):
    for video_id in sorted(run.videos)[:3]:
        batch = classifier.predict(run.videos[video_id])
        updates = []
        streamed = classifier.stream(run.videos[video_id], every_seconds=2, on_update=updates.append)
        np.testing.assert_allclose(streamed.vector, batch.vector, rtol=1e-4, atol=1e-6)
        assert (streamed.n_frames, streamed.n_windows) == (batch.n_frames, batch.n_windows)
        assert [u["t"] for u in updates] == [2.0 * i for i in range(1, batch.n_frames // 2 + 1)]
        assert streamed.running == updates
        assert all(math.isclose(sum(u["probabilities"]), 1.0, rel_tol=1e-6) for u in updates)


def test_streaming_refuses_models_without_a_recurrent_mode(run):
    predictor = Predictor(run.transformer, device="cpu")
    predictor.predict(run.videos[sorted(run.videos)[0]])  # batch mode is fine
    with pytest.raises(PredictError, match="streaming needs a vis4mer model.*'transformer'"):
        predictor.check_streamable()
    with pytest.raises(PredictError, match="without --stream"):
        predictor.stream(run.videos[sorted(run.videos)[0]])


def test_stride_defaults_to_the_checkpoint_evaluation_stride(run):
    video = run.videos[sorted(run.videos)[-1]]
    recorded = Predictor(run.regressor, device="cpu")
    assert recorded.stride == 2
    expected = _evaluation_vectors(run.regressor, run, [video.stem], stride=2)[video.stem]
    np.testing.assert_allclose(recorded.predict(video).vector, expected, rtol=1e-5)
    assert Predictor(run.regressor, device="cpu", stride_frames=3).stride == 3


# ----------------------------------------------------------------------------- regression targets


def test_regression_reports_the_value_in_the_task_units(run):
    predictor = Predictor(run.regressor, device="cpu")
    result = predictor.predict(run.videos[sorted(run.videos)[0]])
    described = predictor.describe(result.vector, result.n_windows)
    assert described["target"] == pytest.approx(float(result.vector[0]))
    assert described["value"] == pytest.approx(math.exp((described["target"] + 3.0) / 2.0))
    assert described["quantity"] == "n_frames"
    assert predictor.spec.label_transform == TRANSFORM


def test_raw_from_target_inverts_the_workflow_label_transforms(tmp_path):
    """The LVU target transforms the workflow records in checkpoints (vis4mer.sources.lvu.TARGETS),
    through read_task_rows and back; lvu.TASKS agrees."""
    from vis4mer.sources import lvu

    like, views = (lvu.TARGETS[task].as_config()["label_transform"] for task in ("like_ratio", "view_count"))
    (tmp_path / "like.csv").write_text("like_count dislike_count youtube_id imdb_id\n930 70 a -\n5 15 b -\n")
    (tmp_path / "views.csv").write_text("view_count youtube_id imdb_id\n1234567 a -\n42 b -\n")
    for row, (likes, dislikes) in zip(read_task_rows(tmp_path / "like.csv", "youtube_id", "like_count", like), [(930, 70), (5, 15)]):
        assert raw_from_target(row.label, like) == pytest.approx(likes / (likes + dislikes), rel=1e-12)
        assert 10 * raw_from_target(row.label, like) == pytest.approx(lvu.TASKS["like_ratio"].raw_from_target(row.label))
    for row, count in zip(read_task_rows(tmp_path / "views.csv", "youtube_id", "view_count", views), [1234567, 42]):
        assert raw_from_target(row.label, views) == pytest.approx(count, rel=1e-9)
        assert raw_from_target(row.label, views) == pytest.approx(lvu.TASKS["view_count"].raw_from_target(row.label))
    assert target_quantity("like_count", like) == "like_count / (like_count + dislike_count)"
    assert target_quantity("view_count", views) == "view_count"
    assert raw_from_target(1.5, {}) == 1.5


# ----------------------------------------------------------------------------- checkpoint metadata


def _edited(run, tmp_path, edit, source=None) -> Path:
    checkpoint = torch.load(source or run.classifier, map_location="cpu", weights_only=True)
    edit(checkpoint)
    path = tmp_path / "edited.pt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize(
    ("remove", "field"),
    [(("frames",), "frames.fps"), (("frames", "size"), "frames.size"), (("features", "img_size"), "features.img_size"),
     (("window_frames",), "window_frames"), (("task", "label_names"), "task.label_names")],
)
def test_old_checkpoints_name_the_missing_field(run, tmp_path, remove, field):
    def edit(checkpoint):
        parent = checkpoint
        for key in remove[:-1]:
            parent = parent[key]
        del parent[remove[-1]]

    with pytest.raises(CheckpointError, match=f"no field '{field}'.*re-train"):
        Predictor(_edited(run, tmp_path, edit), device="cpu")


def test_regression_checkpoint_without_its_target_transform_is_refused(run, tmp_path):
    with pytest.raises(CheckpointError, match="'target.label_transform'"):
        Predictor(_edited(run, tmp_path, lambda c: c.pop("target"), source=run.regressor), device="cpu")


def test_missing_eval_stride_falls_back_to_one(run, tmp_path):
    assert Predictor(_edited(run, tmp_path, lambda c: c.pop("eval_stride_frames"), source=run.regressor), device="cpu").stride == 1


def test_unusable_checkpoint_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Predictor(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a usable vis4mer-checkpoint-1"):
        Predictor(tmp_path / "text.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a vis4mer training checkpoint"):
        Predictor(tmp_path / "other.pt")


def test_the_checkpoint_file_is_read_once(run, monkeypatch):
    loads = []
    load = torch.load

    def counting_load(path, *args, **kwargs):
        loads.append(Path(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    Predictor(run.classifier, device="cpu")
    assert loads.count(Path(run.classifier)) == 1


def test_spec_reads_everything_inference_needs(run):
    spec = InferenceSpec.from_checkpoint(torch.load(run.classifier, weights_only=True))
    assert (spec.backbone, spec.weights, spec.img_size) == ("vit_tiny_patch16_224", "random-seed0", 32)
    assert (spec.fps, spec.frame_size, spec.decoder, spec.window_frames, spec.tokens) == (1.0, 32, "decord", 4, "all")
    assert (spec.n_tokens, spec.dim, spec.label_names, spec.eval_stride_frames) == (5, 192, ("a_first", "b_first"), 1)


# ----------------------------------------------------------------------------- backbone


def test_unseeded_random_backbone_cannot_be_rebuilt(run, tmp_path):
    path = _edited(run, tmp_path, lambda c: c["features"].update(weights="random"))
    with pytest.raises(BackboneError, match="'random'.*neither random-seed<N> nor a sha256"):
        Predictor(path, device="cpu")


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"n_tokens": 17}, r"gives \[tokens, dim\] = \[5, 192\] per frame, the model was trained on features of \[17, 192\]"),
        ({"img_size": 64}, r"expects \(64, 64\) frames, but frames are 32x32"),
        ({"backbone": "swin_base_patch244_window877_kinetics600_22k"}, "not a timm per-frame backbone"),
    ],
)
def test_features_that_do_not_match_are_refused(run, tmp_path, features, message):
    with pytest.raises(BackboneError, match=message):
        Predictor(_edited(run, tmp_path, lambda c: c["features"].update(features)), device="cpu")


def test_another_backbone_is_refused_naming_the_difference(run, tmp_path):
    path = _edited(run, tmp_path, lambda c: c["features"].update(backbone="vit_small_patch16_224"))
    with pytest.raises(BackboneError, match=r"vit_small_patch16_224 gives \[tokens, dim\] = \[5, 384\].*\[5, 192\]"):
        Predictor(path, device="cpu")


def test_backbone_weights_file_must_have_the_recorded_sha256(run, tmp_path):
    from vis4mer.features import build_backbone, file_sha256

    backbone, _ = build_backbone("vit_tiny_patch16_224", img_size=32, seed=5)
    weights = tmp_path / "vit_tiny.pt"
    torch.save(backbone.state_dict(), weights)
    digest = file_sha256(weights)
    recorded = _edited(run, tmp_path, lambda c: c["features"].update(weights=digest, checkpoint=str(tmp_path / "moved.pt")))
    with pytest.raises(BackboneError, match="moved.pt .*does not exist; pass --backbone-checkpoint"):
        Predictor(recorded, device="cpu")
    predictor = Predictor(recorded, device="cpu", backbone_checkpoint=weights)  # located by the user, same bytes
    assert predictor.predict(run.videos[sorted(run.videos)[0]]).n_frames > 0
    other = tmp_path / "other.pt"
    torch.save(build_backbone("vit_tiny_patch16_224", img_size=32, seed=6)[0].state_dict(), other)
    with pytest.raises(BackboneError, match=f"has sha256 {file_sha256(other)}.*weights {digest}: refusing"):
        Predictor(recorded, device="cpu", backbone_checkpoint=other)
    with pytest.raises(BackboneError, match="does not apply"):
        Predictor(run.classifier, device="cpu", backbone_checkpoint=weights)


# ----------------------------------------------------------------------------- bad videos


def test_bad_videos_raise_a_video_error_naming_the_problem(classifier, tmp_path):
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    write_video(tmp_path / "no_frames.mp4", np.zeros((0, 32, 32, 3), np.uint8))
    write_audio(tmp_path / "audio_only.mp4")
    cases = {
        "missing.mp4": "file not found",
        "text.mp4": "not a readable video container",
        "empty.mp4": r"empty file \(0 bytes\)",
        "notes.txt": "unsupported container '.txt'",
        "no_frames.mp4": r"no video stream in .*no_frames.mp4 \(streams: none\): the file has no frames",
        "audio_only.mp4": r"no video stream in .*audio_only.mp4 \(streams: audio\): the file has no frames",
    }
    for name, message in cases.items():
        for run_mode in (classifier.predict, classifier.stream):
            with pytest.raises(VideoError, match=message):
                run_mode(tmp_path / name)


def test_directories_expand_to_their_video_files_sorted(tmp_path):
    for name in ("b.mp4", "a.MKV", "c.txt", "d.webm"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.mp4").mkdir()
    (tmp_path / "empty").mkdir()
    expanded = expand_inputs([tmp_path, tmp_path / "c.txt", tmp_path / "empty"])
    assert [Path(name).name for name, _, _ in expanded] == ["a.MKV", "b.mp4", "d.webm", "c.txt", "empty"]
    assert expanded[-1][1] is None and "no video files in directory" in expanded[-1][2]
    assert all(error is None for _, _, error in expanded[:-1])


def test_checkpoint_without_the_model_names_the_field(run, tmp_path):
    with pytest.raises(CheckpointError, match="no field 'model.arch'"):
        Predictor(_edited(run, tmp_path, lambda c: c.pop("model")), device="cpu")


def test_frames_settings_predict_does_not_apply_are_warned_about(run, tmp_path, caplog):
    path = _edited(run, tmp_path, lambda c: c["frames"].update(keep_last_s=30))
    with caplog.at_level("WARNING", logger="vis4mer.predict"):
        Predictor(path, device="cpu")
    assert "frames settings {'keep_last_s': 30} are recorded but not applied" in caplog.text
