"""Decoding videos into a frames shard: sampling, resizing, and skipping bad files."""

import math

import numpy as np
import pytest

from vis4mer.frames import (
    CHUNK_FRAMES,
    decode_video,
    decode_videos_to_shard,
    frames_shown_at,
    iter_video_chunks,
    resize_and_crop,
    sample_indices,
    sample_times,
    video_file_problem,
)
from _video import grey_frames
from _video import write_vfr_video, write_video as write_h264
from vis4mer.shards import open_shard, read_manifest

# (video id, native fps, seconds, width, height); decord 0.6 fails on some small
# widths (16, 24, 48, 72 px: "DECORDArrayCopyFromTo: The size must exactly match")
VIDEOS = [("v_a", 8, 3.0, 32, 32), ("v_b", 10, 4.5, 40, 32), ("v_c", 5, 5.0, 32, 40), ("v_d", 8, 0.5, 32, 32)]


def write_video(path, fps, seconds, width, height):
    """H.264 video whose frame k is a flat grey of level 10 * (k // fps): the
    grey level tells which second a decoded frame came from (lossless, so exact)."""
    levels = [10 * (k // fps) + 40 for k in range(int(fps * seconds))]
    write_h264(path, grey_frames(levels, width, height), fps, options={"qp": "0"})


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = {}
    for video_id, fps, seconds, width, height in VIDEOS:
        paths[video_id] = root / f"{video_id}.mp4"
        write_video(paths[video_id], fps, seconds, width, height)
    paths["empty"] = root / "empty.mp4"
    paths["empty"].write_bytes(b"")
    paths["text"] = root / "text.mp4"
    paths["text"].write_text("this is not a video\n")
    paths["missing"] = root / "missing.mp4"
    return paths


def decoders():
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # torchcodec needs the system FFmpeg libraries
        return ["decord"]
    return ["decord", "torchcodec"]


@pytest.mark.parametrize("decoder", decoders())
def test_decode_to_shard(videos, tmp_path, decoder):
    out = tmp_path / "frames.h5"
    manifest = decode_videos_to_shard(videos, out, fps=1.0, size=16, decoder=decoder)
    assert manifest == read_manifest(out)
    with open_shard(out) as shard:
        assert shard.attrs["kind"] == "frames" and shard.attrs["size"] == 16
        for video_id, native_fps, seconds, _, _ in VIDEOS:
            frames = shard["videos"][video_id]
            n_frames = max(1, math.floor(seconds))  # T = floor(duration * fps), at least 1
            assert frames.shape == (n_frames, 16, 16, 3) and frames.dtype == np.uint8
            assert dict(frames.attrs) == {
                "fps": 1.0,
                "n_frames": n_frames,
                "source_video": str(videos[video_id]),
                "duration_s": pytest.approx(int(native_fps * seconds) / native_fps),
                "native_fps": pytest.approx(native_fps),
            }
            # frame i is taken at t = i s: grey level 10 * i + 40
            np.testing.assert_allclose(frames[()].mean(axis=(1, 2, 3)), 10 * np.arange(n_frames) + 40, atol=2)
            assert manifest[video_id]["status"] == "ok" and manifest[video_id]["n_frames"] == n_frames


@pytest.mark.parametrize("decoder", decoders())
def test_bad_files_are_skipped_with_a_message(videos, tmp_path, decoder):
    manifest = decode_videos_to_shard(videos, tmp_path / "frames.h5", fps=1.0, size=16, decoder=decoder)
    expected = {"empty": "empty file (0 bytes)", "missing": "file not found", "text": f"{decoder} could not decode"}
    for video_id, message in expected.items():
        assert manifest[video_id]["status"] == "skipped"
        assert message in manifest[video_id]["message"] and str(videos[video_id]) in manifest[video_id]["message"]
    with open_shard(tmp_path / "frames.h5") as shard:
        assert sorted(shard["videos"]) == sorted(v[0] for v in VIDEOS)


@pytest.mark.parametrize("decoder", decoders())
def test_streaming_decodes_the_same_frames_one_chunk_at_a_time(videos, decoder):
    path = videos["v_c"]
    chunks = list(iter_video_chunks(path, fps=8.0, size=16, decoder=decoder))  # 40 frames: more than one chunk
    assert len(chunks) == 2
    assert all(len(chunk) <= CHUNK_FRAMES for chunk in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), decode_video(path, 8.0, 16, decoder)[0])


@pytest.mark.parametrize("decoder", decoders())
def test_a_variable_frame_rate_video_is_sampled_by_presentation_time(tmp_path, decoder):
    """30 fps for 5 s, then 3 fps for 5 s (165 frames, 16.5 fps on average): by frame index,
    1 fps sampling would stop at 0.55 x 9 s; by PTS, frame i shows second i of the video."""
    path = write_vfr_video(tmp_path / "vfr.mp4", [(30, 5), (3, 5)])
    frames, native_fps, n_native = decode_video(path, 1.0, 16, decoder)
    assert n_native == 165 and len(frames) == 9  # the last frame ends at 9.7 s (the rate of the stream's header)
    np.testing.assert_allclose(frames.mean(axis=(1, 2, 3)), 10 * np.arange(9) + 40, atol=2)
    # the streamed frames (vis4mer predict) are the same
    np.testing.assert_array_equal(np.concatenate(list(iter_video_chunks(path, 1.0, 16, decoder))), frames)
    part, _, _ = decode_video(path, 2.0, 16, decoder, start_s=4.0, end_s=7.0)  # a range: times 4, 4.5, ... 6.5
    np.testing.assert_allclose(part.mean(axis=(1, 2, 3)), 10 * np.array([4, 4, 5, 5, 6, 6]) + 40, atol=2)


def test_frames_shown_at_go_by_presentation_time():
    timestamps = np.array([0.0, 0.1, 0.2, 1.0, 2.0])  # 10 fps, then 1 fps
    np.testing.assert_array_equal(frames_shown_at(timestamps, [0.0, 0.15, 0.5, 1.0, 1.99, 2.5]), [0, 1, 2, 3, 3, 4])
    np.testing.assert_array_equal(sample_times(3.0, 2.0, 0.5), [0.5, 1.0, 1.5, 2.0, 2.5])


def test_file_problems_are_found_before_decoding(videos, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.txt").write_bytes(b"")
    assert video_file_problem(videos["v_a"], by_extension=True) is None
    assert video_file_problem(videos["missing"]) == f"file not found: {videos['missing']}"
    assert video_file_problem(tmp_path) == f"not a regular file: {tmp_path}"
    assert video_file_problem(videos["empty"]) == f"empty file (0 bytes): {videos['empty']}"
    assert video_file_problem(tmp_path / "notes.txt") is None  # the pipeline's files may have any name
    assert video_file_problem(tmp_path / "notes.txt", by_extension=True).startswith("unsupported container '.txt'")
    assert video_file_problem(tmp_path / "empty.txt", by_extension=True).startswith("unsupported container")


def test_decoders_give_the_same_pixels(videos, tmp_path):
    if len(decoders()) < 2:
        pytest.skip("torchcodec is not importable here")
    clean = {v[0]: videos[v[0]] for v in VIDEOS}
    for decoder in ("decord", "torchcodec"):
        decode_videos_to_shard(clean, tmp_path / f"{decoder}.h5", fps=2.0, size=24, decoder=decoder)
    with open_shard(tmp_path / "decord.h5") as a, open_shard(tmp_path / "torchcodec.h5") as b:
        for video_id in clean:
            np.testing.assert_array_equal(a["videos"][video_id][()], b["videos"][video_id][()])


def test_sample_indices():
    np.testing.assert_array_equal(sample_indices(30, 10.0, 1.0), [0, 10, 20])
    np.testing.assert_array_equal(sample_indices(45, 10.0, 2.0), [0, 5, 10, 15, 20, 25, 30, 35, 40])
    np.testing.assert_array_equal(sample_indices(29, 29.97, 1.0), [0])  # shorter than 1 s: one frame
    np.testing.assert_array_equal(sample_indices(3, 1.0, 4.0), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


def test_resize_keeps_aspect_then_crops_the_centre():
    frames = np.zeros((1, 20, 40, 3), np.uint8)  # [T, H, W, 3], landscape
    frames[:, :, 8:32] = 200  # a centre band wider than the crop (antialiasing blurs its edges)
    out = resize_and_crop(frames, 10)  # -> 10 x 20, centre 10 x 10 crop
    assert out.shape == (1, 10, 10, 3) and out.dtype == np.uint8
    assert (out == 200).all()
    assert resize_and_crop(np.zeros((2, 8, 8, 3), np.uint8), 8).shape == (2, 8, 8, 3)


def test_unknown_decoder_is_rejected(videos, tmp_path):
    with pytest.raises(ValueError, match="unknown decoder"):
        decode_videos_to_shard(videos, tmp_path / "f.h5", 1.0, 16, decoder="opencv")
    assert not (tmp_path / "f.h5").exists()


# ------------------------------------------------------------------ the reference code's frames


def test_squash_resizes_the_whole_frame_with_area_averaging():
    """A known 4 x 8 frame whose column j holds 10 j (and 10 j + 1 in green)."""
    from vis4mer.frames import resize_frames, squash

    frame = np.zeros((1, 4, 8, 3), np.uint8)
    frame[0, :, :, :] = (10 * np.arange(8))[None, :, None]
    frame[0, :, :, 1] += 1
    squashed = squash(frame, 4)  # 8 -> 4 columns: means of column pairs, every column kept
    assert squashed.shape == (1, 4, 4, 3) and squashed.dtype == np.uint8
    assert (squashed[0, :, :, 0] == [5, 25, 45, 65]).all() and (squashed[0, :, :, 1] == [6, 26, 46, 66]).all()
    assert (resize_frames(frame, 4, "crop")[0, :, :, 0] == [20, 30, 40, 50]).all()  # ours: the centre square
    # a non-integer factor: INTER_AREA weighs the shared middle column by half (0 + 45)/1.5, (45 + 180)/1.5
    thirds = np.zeros((1, 3, 3, 3), np.uint8)
    thirds[0, :, :, :] = np.array([0, 90, 180])[None, :, None]
    assert (squash(thirds, 2)[0, :, :, 0] == [30, 150]).all()
    with pytest.raises(ValueError, match="unknown resize 'stretch'"):
        resize_frames(frame, 4, "stretch")


@pytest.mark.parametrize(("n_native", "seconds", "expected"), [
    (100, 30, [int(100 / 30 * i) for i in range(30)] + [99]),  # a 100-frame file for a 30 s clip: 31 frames
    (7200, 120, list(range(0, 7200, 60)) + [7199]),  # 2 minutes at 60 fps: one per second, then the last
    (50, 120, [int(50 / 120 * i) for i in range(120)] + [49]),  # a file shorter than the clip: frames repeat
])
def test_spread_indices_are_the_reference_codes_lvu_frame_times(n_native, seconds, expected):
    from vis4mer.frames import spread_indices

    indices = spread_indices(n_native, seconds)
    assert indices.tolist() == expected and len(indices) == seconds + 1


def test_decode_spreads_duration_plus_one_frames_over_the_whole_file_and_squashes(videos, tmp_path):
    out = tmp_path / "spread.h5"
    chosen = {"v_b": videos["v_b"], "v_c": videos["v_c"]}  # v_b: 45 frames at 10 fps; v_c: 25 at 5 fps, 40 px high
    decode_videos_to_shard(chosen, out, fps=1.0, size=16, spread_seconds={"v_b": 9}, resize="squash")
    with open_shard(out) as shard:
        assert shard.attrs["resize"] == "squash"
        frames = shard["videos"]["v_b"]
        assert frames.shape == (10, 16, 16, 3) and frames.attrs["spread_seconds"] == 9
        native = np.array([int(45 / 9 * i) for i in range(9)] + [44])  # 0, 5, 10, ..., 40, 44
        np.testing.assert_allclose(frames[()].mean(axis=(1, 2, 3)), 10 * (native // 10) + 40, atol=2)
        assert shard["videos"]["v_c"].shape == (5, 16, 16, 3) and "spread_seconds" not in shard["videos"]["v_c"].attrs
    with pytest.raises(ValueError, match="spread_seconds samples the whole file"):
        decode_videos_to_shard(chosen, out, 1.0, 16, spread_seconds={"v_b": 9}, keep_last_s={"v_b": 3.0})


@pytest.fixture(scope="module")
def av1_video(tmp_path_factory):
    """A 64x64 AV1 .mp4 (3 s at 4 fps) made with the system ffmpeg, which decord cannot decode."""
    import shutil
    import subprocess

    path = tmp_path_factory.mktemp("av1") / "av1.mp4"
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout if shutil.which("ffmpeg") else ""
    encoder = next((name for name in ("libsvtav1", "libaom-av1") if name in encoders), None)
    if encoder is None:
        pytest.skip("no AV1 encoder in this ffmpeg")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=4:duration=3",
                    "-c:v", encoder, "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_a_video_decord_cannot_read_is_read_with_torchcodec_and_recorded(av1_video, tmp_path, caplog):
    if len(decoders()) < 2:
        pytest.skip("torchcodec is not importable here")
    with caplog.at_level("WARNING"):
        manifest = decode_videos_to_shard({"yt": av1_video}, tmp_path / "frames.h5", fps=1.0, size=16, decoder="decord")
    assert manifest["yt"]["status"] == "ok"
    with open_shard(tmp_path / "frames.h5") as shard:
        video = shard["videos"]["yt"]
        assert video.shape == (3, 16, 16, 3) and video.attrs["decoder"] == "torchcodec"
        assert video.attrs["decoder_fallback"].startswith(f"decord could not decode {av1_video}: DECORDError")
    assert f"decord could not decode {av1_video}" in caplog.text and "(av1 video); read with torchcodec instead" in caplog.text
    # vis4mer predict's streamed frames: the same fallback
    np.testing.assert_array_equal(np.concatenate(list(iter_video_chunks(av1_video, 1.0, 16, "decord"))),
                                  decode_video(av1_video, 1.0, 16, "torchcodec")[0])


def test_without_the_other_decoder_the_message_says_which_one_reads_the_video(av1_video, monkeypatch):
    from vis4mer import frames

    monkeypatch.setattr(frames, "decoder_problem", lambda decoder: "ModuleNotFoundError: No module named 'torchcodec'")
    with pytest.raises(frames.VideoError) as error:
        decode_video(av1_video, 1.0, 16, "decord")
    message = str(error.value)
    assert message.startswith(f"decord could not decode {av1_video}: DECORDError")
    assert message.endswith("; av1 video: torchcodec reads it, decord does not, but torchcodec is not installed "
                            "(ModuleNotFoundError: No module named 'torchcodec'): install it (requirements/base.txt)")
