"""Run one training in its own process (tests kill it): python _train_runner.py SPEC.json

SPEC: {"data": dir of separable_dataset, "out": run dir, "epochs": n, "step_sleep_s": s,
       "dropout": p, "nproc": 1|2, "resume": true}. Writes <out>/result.json when done.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic_features import separable_dataset  # noqa: E402


def main(spec_path: str) -> None:
    import logging

    import vis4mer.training as training

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    spec = json.loads(Path(spec_path).read_text())
    # the rows from a scratch copy; the shards are the test's (written once: their
    # modification times are part of a resume state's identity)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_shards, splits, _ = separable_dataset(Path(scratch))
    shards = [Path(spec["data"]) / path.name for path in scratch_shards]
    if spec.get("step_sleep_s"):
        # slow every training step a little, so a kill lands inside an epoch, not between runs
        import torch

        clip = torch.nn.utils.clip_grad_norm_

        def slow_clip(*args, **kwargs):
            time.sleep(spec["step_sleep_s"])
            return clip(*args, **kwargs)

        torch.nn.utils.clip_grad_norm_ = slow_clip
    out = Path(spec["out"])
    kwargs = dict(
        run_name="toy/sign/vis4mer", task_type="classification", feature_shards=shards,
        train_rows=splits["train"], val_rows=splits["val"], label_rows=[splits["test"]],
        model_spec=training.ModelSpec(arch="vis4mer", d_model=16, n_layers=2, dropout=spec.get("dropout", 0.1)),
        settings=training.TrainSettings(
            window_frames=6, tokens="all", batch_size=3, epochs=spec["epochs"], lr=1e-2, lr_patience=1, seed=3,
            val_every_epochs=spec.get("val_every_epochs", 1),
        ),
        options=training.RunOptions(device="cpu", progress=False, eval_batch_size=8),
        outputs=training.TrainOutputs(out / "best.pt", out / "last.pt", out / "train_log.csv", out / "train_curve.png",
                                      state_dir=(out / ".resume") if spec.get("resume", True) else None),
    )
    if spec.get("nproc", 1) > 1:
        from vis4mer.launch import train_with_torchrun

        result = train_with_torchrun(spec["nproc"], **kwargs)
    else:
        result = training.train_model(**kwargs)
    (out / "result.json").write_text(json.dumps({"best_epoch": result.best_epoch, "best_val_metric": result.best_val_metric}))


if __name__ == "__main__":
    main(sys.argv[1])
