"""The validation split of Breakfast and COIN, which have none in the paper.

The paper reports train and test results only, and the reference code selected its model on
the test set. Two strategies (config ``validation.strategy``):

- ``holdout`` (default): a seeded `fraction` of the training videos becomes the validation
  split and is not trained on. Breakfast holds out whole participants (every camera of a
  participant films the same scene, so holding out single videos would leak that scene into
  training); COIN holds out videos stratified by class (round(fraction x n) of a class's n
  training videos, at least one where n >= 2, never all of them).
- ``test``: the test split doubles as the validation split, as in the reference code. The
  test numbers are then those of the model selected on the test set (optimistic); all.json
  records the strategy so such numbers are never mistaken for held-out ones.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from vis4mer.sources.splits import SplitRow

STRATEGIES = ("holdout", "test")


def _check_validation(validation: Mapping[str, Any]) -> tuple[str, float, int]:
    strategy = validation.get("strategy", "holdout")
    fraction = float(validation.get("fraction", 0.1))
    seed = int(validation.get("seed", 0))
    if strategy not in STRATEGIES:
        raise ValueError(f"validation strategy {strategy!r} is not one of {STRATEGIES}")
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    return strategy, fraction, seed


def holdout_by_group(rows: Sequence[SplitRow], groups: Mapping[str, str], fraction: float, seed: int):
    """(train rows, val rows): whole groups (e.g. participants), in a seeded order, are held
    out until at least `fraction` of the rows are; at least one group on each side."""
    names = sorted({groups[row.video_id] for row in rows})
    if len(names) < 2:
        raise ValueError(f"a validation holdout by group needs at least 2 groups in the training split, found {names}")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    sizes = {name: sum(groups[row.video_id] == name for row in rows) for name in names}
    held, count = set(), 0
    for name in order[:-1]:
        if count >= fraction * len(rows) and held:
            break
        held.add(name)
        count += sizes[name]
    return [r for r in rows if groups[r.video_id] not in held], [r for r in rows if groups[r.video_id] in held]


def holdout_by_class(rows: Sequence[SplitRow], fraction: float, seed: int):
    """(train rows, val rows): per class, round(fraction x n) of its n rows (at least 1 when
    n >= 2, never all), chosen in a seeded order; rows keep their input order."""
    rng = np.random.default_rng(seed)
    by_class: dict[Any, list[SplitRow]] = {}
    for row in rows:
        by_class.setdefault(row.label, []).append(row)
    held: set[str] = set()
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda r: r.video_id)
        n = len(members)
        k = 0 if n < 2 else min(n - 1, max(1, math.floor(fraction * n + 0.5)))
        held.update(members[i].video_id for i in rng.permutation(n)[:k])
    return [r for r in rows if r.video_id not in held], [r for r in rows if r.video_id in held]


def with_validation(train, test, validation: Mapping[str, Any], groups=None) -> tuple[dict[str, list[SplitRow]], dict[str, Any]]:
    """({"train", "val", "test": rows}, the note for all.json) by the `validation` strategy;
    `groups` {id: group} holds out whole groups, else videos stratified by class."""
    strategy, fraction, seed = _check_validation(validation)
    if strategy == "test":
        note = {
            "strategy": "test",
            "description": "the test split is also the validation split (model selection on the test set, "
            "as the reference code did): test results are optimistic",
        }
        return {"train": list(train), "val": list(test), "test": list(test)}, note
    if groups is not None:
        kept, val = holdout_by_group(train, groups, fraction, seed)
        held_groups = sorted({groups[r.video_id] for r in val})
        description = f"participants {', '.join(held_groups)} of the training split held out ({len(val)} videos)"
    else:
        kept, val = holdout_by_class(train, fraction, seed)
        held_groups = None
        description = f"{len(val)} training videos held out, stratified by class"
    if not val:
        raise ValueError(
            f"the validation holdout ({fraction:.0%} of {len(train)} training videos) is empty; "
            "raise the fraction or use the strategy 'test'"
        )
    note = {"strategy": "holdout", "fraction": fraction, "seed": seed, "description": description, "n_val": len(val)}
    if held_groups is not None:
        note["held_out_groups"] = held_groups
    return {"train": kept, "val": val, "test": list(test)}, note
