"""vis4mer.sources.validation: the validation holdouts of Breakfast and COIN."""

from __future__ import annotations

import pytest

from vis4mer.sources import validation
from vis4mer.sources.splits import SplitRow


def test_holdout_errors():
    rows = [SplitRow("a", 0), SplitRow("b", 1)]
    with pytest.raises(ValueError, match="at least 2 groups"):
        validation.holdout_by_group(rows, {"a": "P03", "b": "P03"}, 0.5, 0)
    with pytest.raises(ValueError, match="is empty"):  # one video per class: nothing to hold out
        validation.with_validation(rows, rows, {"fraction": 0.1})
    with pytest.raises(ValueError, match="strategy"):
        validation.with_validation(rows, rows, {"strategy": "kfold"})
