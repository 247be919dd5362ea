"""The results figure: ours next to the paper per task, seeds as error bars, MSE apart."""

from __future__ import annotations

import matplotlib.image

from vis4mer.plotting import PAPER_LABEL, plot_summary, summary_bars


def row(task, model, metric, values, paper=None):
    finite = [v for v in values if v is not None]
    mean = sum(finite) / len(finite) if finite else None
    std = None
    if len(finite) >= 2:
        std = (sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) ** 0.5
    return {"task": task, "model": model, "metric": metric, "values": values, "n_runs": len(values), "mean": mean, "std": std,
            "paper": None if paper is None else {"value": paper, "metric": metric}}


ROWS = [
    row("genre", "vis4mer", "accuracy", [0.50, 0.54, 0.52], paper=54.71),
    row("genre", "transformer", "accuracy", [0.40]),
    row("view_count", "vis4mer", "mse", [3.9, 4.1], paper=3.63),
    row("year", "vis4mer", "accuracy", [None], paper=44.75),  # not evaluated yet: no bar, the paper's still drawn
]


def test_bars_in_paper_units_with_seed_spread():
    bars = summary_bars(ROWS + [{**ROWS[0], "paper": None, "model": "meanpool"}])
    accuracy = {(task, label): (value, error) for task, label, value, error in bars["accuracy"]}
    value, error = accuracy[("genre", "vis4mer")]
    assert abs(value - 52.0) < 1e-9 and abs(error - 2.0) < 1e-9  # mean ± sample std over 3 seeds, in %
    assert accuracy[("genre", "transformer")] == (40.0, None)
    assert accuracy[("genre", PAPER_LABEL)] == (54.71, None)
    assert [label for task, label, *_ in bars["accuracy"]].count(PAPER_LABEL) == 2  # once per task: genre, year
    assert ("year", "vis4mer") not in accuracy
    (mse_ours, mse_paper) = bars["mse"]
    assert mse_ours[:2] == ("view_count", "vis4mer") and abs(mse_ours[2] - 4.0) < 1e-9 and mse_paper[1:3] == (PAPER_LABEL, 3.63)


def test_figure_is_written(tmp_path):
    path = tmp_path / "summary.png"
    plot_summary(ROWS, path, title="lvu")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 400  # two panels side by side
    plot_summary([], tmp_path / "empty.png")  # no results yet: still a figure
    assert (tmp_path / "empty.png").stat().st_size > 1000
