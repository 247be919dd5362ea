"""COIN: reading COIN.json into train/test examples, annotated ranges, and clear errors."""

import copy
import json
from fractions import Fraction

import av
import numpy as np
import pytest

from vis4mer.sources.coin import N_CLASSES, class_names, clip_range, read_coin


def entry(recipe_type, name, subset, start, end, duration=300.0):
    return {
        "recipe_type": recipe_type,
        "class": name,
        "subset": subset,
        "start": start,
        "end": end,
        "duration": duration,
        "video_url": "https://www.youtube.com/embed/xyz",
        "annotation": [{"segment": [start, end], "id": "1", "label": "a step"}],
    }


DATABASE = {
    "-0og5PXqOgs": entry(67, "MakeSandwich", "training", 12.0, 201.5),
    "aB3_kd9x-Q0": entry(67, "MakeSandwich", "testing", 3, 40),  # integer seconds are fine
    "Zz9": entry(0, "RemoveBlade", "training", 0.0, 5.25),
    "k2": entry(179, "AssembleBed", "training", 10.0, 11.0),
}


def write_coin(path, database):
    path.write_text(json.dumps({"version": "1.0", "database": database}))
    return path


def test_read_coin(tmp_path):
    splits = read_coin(write_coin(tmp_path / "COIN.json", DATABASE))
    assert [example.video_id for example in splits["train"]] == ["-0og5PXqOgs", "Zz9", "k2"]
    assert [example.video_id for example in splits["test"]] == ["aB3_kd9x-Q0"]
    first = splits["train"][0]
    assert (first.target, first.label_name, first.start, first.end) == (67, "MakeSandwich", 12.0, 201.5)
    assert clip_range(splits["test"][0]) == (3.0, 40.0) and isinstance(splits["test"][0].start, float)
    names = class_names(splits)
    assert len(names) == N_CLASSES == 180
    assert (names[0], names[67], names[179], names[1]) == ("RemoveBlade", "MakeSandwich", "AssembleBed", "class_1")


def test_clip_ranges_feed_the_swin_stage(tmp_path):
    """The features of a COIN video come from its annotated range only."""
    from vis4mer.swin import extract_swin_features_to_shard

    video = tmp_path / "Zz9.mp4"
    with av.open(str(video), mode="w") as container:  # 10 s at 10 fps
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for k in range(100):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), k, np.uint8))))
        container.mux(stream.encode())
    examples = read_coin(write_coin(tmp_path / "COIN.json", DATABASE))["train"]
    ranges = {example.video_id: clip_range(example) for example in examples if example.video_id == "Zz9"}
    manifest = extract_swin_features_to_shard(
        {"Zz9": video}, tmp_path / "coin.h5", "swin_test_patch244_window877", None, 256, 2, ranges=ranges, size=64
    )
    # 0-5.25 s at 10 fps: frames 0..52, 53 frames -> 2 segments (the whole video would give 4)
    assert manifest["Zz9"]["n_segments"] == 2 and (manifest["Zz9"]["start"], manifest["Zz9"]["end"]) == (0.0, 5.25)


def broken(video_id, **changes):
    database = copy.deepcopy(DATABASE)
    for key, value in changes.items():
        if value is KeyError:
            del database[video_id][key]
        else:
            database[video_id][key] = value
    return database


BAD_DATABASES = [
    (broken("k2", start=KeyError), "video 'k2': missing key\\(s\\) \\['start'\\]"),
    (broken("k2", recipe_type=180), "video 'k2': 'recipe_type' is 180"),
    (broken("k2", recipe_type="3"), "video 'k2': 'recipe_type' is '3'"),
    (broken("k2", recipe_type=True), "video 'k2': 'recipe_type' is True"),
    (broken("Zz9", subset="validation"), "video 'Zz9': 'subset' is 'validation'"),
    (broken("Zz9", end=0.0), "video 'Zz9': annotated range start=0.0 end=0.0"),
    (broken("Zz9", start=-1.0), "video 'Zz9': annotated range start=-1.0"),
    (broken("Zz9", end="12"), "video 'Zz9': 'end' is '12'"),
    (broken("Zz9", end=float("nan")), "video 'Zz9': 'end' is nan"),
    (broken("Zz9", **{"class": ""}), "video 'Zz9': 'class' is ''"),
    (broken("aB3_kd9x-Q0", **{"class": "MakeToast"}), "recipe_type 67 is class 'MakeToast', but 'MakeSandwich'"),
    ({**DATABASE, "k3": ["not", "an", "object"]}, "video 'k3': entry is a list"),
    ({}, "non-empty object under the key 'database'"),
]


@pytest.mark.parametrize("database, message", BAD_DATABASES)
def test_malformed_entries_fail_naming_the_video(tmp_path, database, message):
    path = write_coin(tmp_path / "COIN.json", database)
    with pytest.raises(ValueError, match=message) as error:
        read_coin(path)
    assert str(path) in str(error.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        read_coin(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_coin(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json: expected a non-empty object under the key 'database'"):
        read_coin(tmp_path / "list.json")
