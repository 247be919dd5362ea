"""vis4mer.train_log: the per-epoch CSV log, written and read back."""

from __future__ import annotations

import math

from vis4mer.train_log import LOG_COLUMNS, read_log_csv, write_log_csv


def test_rows_round_trip_with_unvalidated_epochs_as_nan(tmp_path):
    rows = [
        {"epoch": 1, "train_loss": 0.7, "val_metric": math.nan, "val_loss": math.nan, "lr": 1e-3, "n_nonfinite_skipped": 0,
         "n_padded": 3, "seconds": 1.25, "not_logged": "x"},
        {"epoch": 2, "train_loss": 0.5, "val_metric": 0.75, "val_loss": 0.4, "lr": 2e-4, "n_nonfinite_skipped": 1,
         "n_padded": 0, "seconds": 1.5},
    ]
    path = tmp_path / "train_log.csv"
    write_log_csv(rows, path)
    assert path.read_text().splitlines()[0] == ",".join(LOG_COLUMNS)
    read = read_log_csv(path)
    assert math.isnan(read[0]["val_metric"]) and read[1] == {key: rows[1][key] for key in LOG_COLUMNS}
    assert all(type(row["epoch"]) is int and type(row["n_padded"]) is int for row in read)
    assert not list(tmp_path.glob("*.tmp-*"))
