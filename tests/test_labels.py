"""vis4mer.labels.LabelTransform: a regression target from a split-file column and back, in the
one form the config, the loaders and the checkpoints share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vis4mer.labels import LabelTransform, raw_from_target, target_quantity


def test_forward_then_invert_gives_the_quantity():
    like = LabelTransform("like_count", ratio_with="dislike_count", scale=10.0, offset=-9.0)
    targets = like.apply([900, 30], [100, 10])
    np.testing.assert_allclose(targets, [0.0, -1.5])
    assert [like.invert(t) for t in targets] == pytest.approx([0.9, 0.75])  # the ratio: the counts cannot be told apart
    views = LabelTransform("view_count", log=True, offset=-2.0)
    assert views.invert(float(views.apply([1000.0])[0])) == pytest.approx(1000.0)
    assert views.invert(800.0) == math.inf  # exp overflow, not an exception
    assert like.quantity == "like_count / (like_count + dislike_count)" and views.quantity == "view_count"


def test_config_form_round_trips_with_only_the_steps_that_act():
    transform = LabelTransform.from_config("like_count", {"ratio_with": "dislike_count", "scale": 10.0, "offset": -9.0})
    assert transform.as_config() == {"label_column": "like_count",
                                     "label_transform": {"ratio_with": "dislike_count", "scale": 10.0, "offset": -9.0}}
    assert LabelTransform.from_config(None, {"log": False, "scale": 1}).as_config() == {"label_column": "label", "label_transform": {}}
    assert raw_from_target(1.5, {}) == 1.5 and target_quantity("views", {"log": True}) == "views"


def test_invalid_transforms_are_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"unknown target.label_transform keys \['sqrt'\]"):
        LabelTransform.from_config("v", {"sqrt": True}, "target.label_transform")
    with pytest.raises(ValueError, match="label_transform.scale is 0"):
        LabelTransform.from_config("v", {"scale": 0})
    with pytest.raises(ValueError, match=r"non-positive labels of \['b'\]"):
        LabelTransform("v", log=True).apply([3.0, 0.0], ids=["a", "b"])
    with pytest.raises(ValueError, match=r"like \+ dislike is 0 for \['a'\]"):
        LabelTransform("like", ratio_with="dislike").apply([0.0], [0.0], ids=["a"])
