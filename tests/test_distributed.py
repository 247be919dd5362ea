"""Multi-process training (vis4mer.distributed, vis4mer.launch): DDP under torchrun, gloo on CPU, 2 processes.

The design claim tested: K processes on batch_size/K clips each of the same global batches
give the single-process run's numbers, up to floating-point summation order.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from _synthetic_features import separable_dataset
from vis4mer.distributed import DistContext, ShardedBatchSampler, WeightedItems
from vis4mer.launch import train_with_torchrun
from vis4mer.checkpoint import load_model
from vis4mer.train_log import read_log_csv
from vis4mer.training import ModelSpec, RunOptions, TrainOutputs, TrainSettings, train_model

torch_dist = pytest.importorskip("torch.distributed")


def _kwargs(tmp_path, shards, splits, name, batch_size, epochs=3, task_type="classification", splits_override=None):
    run = tmp_path / name
    run.mkdir()
    rows = splits_override or splits
    return dict(
        run_name=f"toy/{name}", task_type=task_type, feature_shards=shards,
        train_rows=rows["train"], val_rows=rows["val"], label_rows=[rows["test"]] if task_type == "classification" else [],
        model_spec=ModelSpec(arch="vis4mer", d_model=16, n_layers=2, dropout=0.0),
        settings=TrainSettings(window_frames=6, tokens="all", batch_size=batch_size, epochs=epochs, lr=1e-2, lr_patience=0,
                               lr_factor=0.5, seed=0),
        options=RunOptions(device="cpu", progress=False, eval_batch_size=8),
        outputs=TrainOutputs(run / "best.pt", run / "last.pt", run / "train_log.csv", run / "train_curve.png"),
    )


def _assert_logs_close(single, multi, rel=1e-4):
    assert len(single) == len(multi)
    for a, b in zip(single, multi):
        assert a["epoch"] == b["epoch"]
        for key in ("n_nonfinite_skipped", "n_padded", "lr"):
            assert a[key] == b[key], (key, a, b)
        for key in ("train_loss", "val_metric", "val_loss"):
            assert math.isclose(a[key], b[key], rel_tol=rel, abs_tol=1e-6), (key, a, b)


def test_sharded_sampler_covers_each_global_batch_once():
    """Each rank's parts, joined, are the batches of a single-process shuffled DataLoader."""
    for n, batch_size, world in ((10, 4, 2), (9, 4, 3), (5, 3, 4), (7, 1, 2)):
        reference = [
            list(batch)
            for batch in torch.utils.data.BatchSampler(
                torch.utils.data.RandomSampler(range(n), generator=torch.Generator().manual_seed(3)), batch_size, False
            )
        ]
        per_rank = [list(ShardedBatchSampler(n, batch_size, rank, world, torch.Generator().manual_seed(3))) for rank in range(world)]
        assert all(len(parts) == len(reference) == len(ShardedBatchSampler(n, batch_size, 0, world, None)) for parts in per_rank)
        for step, batch in enumerate(reference):
            real = [index for parts in per_rank for index, weight, size in parts[step] if weight > 0]
            assert real == batch  # contiguous parts, in order: exactly the global batch
            for parts in per_rank:
                assert all(size == len(batch) for _, _, size in parts[step])
                assert parts[step]  # never empty: a rank without clips gets one of weight 0


def test_weighted_items_append_weight_and_batch_size():
    items = WeightedItems([("x0", 0), ("x1", 1)])
    assert items[(1, 0.0, 5)] == ("x1", 1, 0.0, 5) and len(items) == 2


def test_context_outside_a_process_group():
    ctx = DistContext.current()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert ctx.all_reduce_sum(2.5) == 2.5 and ctx.broadcast([1, "a"]) == [1, "a"] and ctx.gather(3) == [3]
    assert ctx.device("cpu") == torch.device("cpu")


def test_a_process_group_of_one_is_the_ddp_path(tmp_path):
    """torchrun on one GPU: one rank in a process group still runs DDP (wrapped model,
    sharded sampler, collectives), so the multi-GPU path can be checked on one device."""
    from torch.nn.parallel import DistributedDataParallel

    from vis4mer.distributed import wrap_model

    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        ctx = DistContext.current()
        assert (ctx.rank, ctx.world_size, ctx.distributed) == (0, 1, True)
        assert isinstance(wrap_model(torch.nn.Linear(2, 2), torch.device("cpu"), ctx), DistributedDataParallel)
        assert ctx.all_reduce_sum(2.5) == 2.5 and ctx.gather("a") == ["a"]
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.slow
def test_one_process_under_torchrun_matches_a_plain_run(tmp_path, capfd):
    shards, splits, _ = separable_dataset(tmp_path)
    single = train_model(**_kwargs(tmp_path, shards, splits, "plain", 3))
    ddp = train_with_torchrun(1, **_kwargs(tmp_path, shards, splits, "ddp", 3))
    assert "rank 0 of 1 joined the process group (backend gloo)" in capfd.readouterr().err
    _assert_logs_close(single.log, ddp.log)
    assert ddp.best_epoch == single.best_epoch


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [4, 3, 1])
def test_two_processes_match_one(tmp_path, batch_size):
    """4: even halves; 3: uneven parts (2+1) and a last batch of 2; 1: every step one rank runs
    a weight-0 clip. Same log (loss, metric, lr schedule, counts) and the same final weights."""
    shards, splits, _ = separable_dataset(tmp_path)
    single = train_model(**_kwargs(tmp_path, shards, splits, "one", batch_size))
    multi = train_with_torchrun(2, **_kwargs(tmp_path, shards, splits, "two", batch_size))
    _assert_logs_close(single.log, multi.log)
    assert multi.best_epoch == single.best_epoch and multi.epochs_run == single.epochs_run
    assert _assert_logs_close(single.log, read_log_csv(tmp_path / "two" / "train_log.csv")) is None
    for name in ("best.pt", "last.pt"):
        model_one, checkpoint_one = load_model(tmp_path / "one" / name)
        model_two, checkpoint_two = load_model(tmp_path / "two" / name)
        assert checkpoint_one["epoch"] == checkpoint_two["epoch"]
        assert checkpoint_one["model"] == checkpoint_two["model"]
        # Adam divides by the gradient's running RMS, so rounding differences in tiny gradients
        # move a weight by up to ~lr x their relative size: compare at the tensor's scale
        for key, value in checkpoint_one["state_dict"].items():
            scale = float(value.abs().max()) or 1.0
            difference = float((checkpoint_two["state_dict"][key] - value).abs().max())
            assert difference <= 1e-3 * scale, f"{name}: {key} differs by {difference:.2e} (scale {scale:.2e})"
    last = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert last["resume"]["world_size"] == 2 and len(last["resume"]["rng"]) == 2
    assert (tmp_path / "two" / "train_curve.png").stat().st_size > 0


@pytest.mark.slow
def test_two_processes_match_one_on_regression(tmp_path):
    shards, splits, videos = separable_dataset(tmp_path)
    from vis4mer.sources.splits import SplitRow

    regression = {split: [SplitRow(r.video_id, float(np.mean(videos[r.video_id][:, :, 1])), None) for r in rows]
                  for split, rows in splits.items()}
    single = train_model(**_kwargs(tmp_path, shards, splits, "one", 3, 2, "regression", regression))
    multi = train_with_torchrun(2, **_kwargs(tmp_path, shards, splits, "two", 3, 2, "regression", regression))
    _assert_logs_close(single.log, multi.log)


@pytest.mark.slow
def test_worker_errors_reach_the_caller(tmp_path):
    """A NonFiniteLossError in the workers is raised again by train_with_torchrun."""
    from vis4mer.training import NonFiniteLossError

    shards, splits, _ = separable_dataset(tmp_path)
    kwargs = _kwargs(tmp_path, shards, splits, "nan", 4)
    kwargs["settings"].lr = 1e30  # the first step overflows the weights: every later step is non-finite
    kwargs["settings"].max_consecutive_nonfinite = 1
    with pytest.raises(NonFiniteLossError, match="toy/nan stopped: 2 consecutive steps"):
        train_with_torchrun(2, **kwargs)


@pytest.mark.slow
def test_workflow_trains_with_two_processes_when_gpus_per_run_is_2(tmp_path):
    """training.gpus_per_run: 2 makes the train job ask for gpu=2 and run torchrun (gloo on
    CPU here); the outputs are the same files, with the single-process numbers."""
    import json

    from _workflow import TINY_CONFIG, copy_workflow, snakemake, write_config

    workdir = copy_workflow(tmp_path / "wf")
    config = json.loads(json.dumps(TINY_CONFIG))
    config["datasets"]["tiny"]["models"] = ["vis4mer"]
    config["training"].update(epochs=3, val_every_epochs=1, gpus_per_run=2)
    config["runtime"]["threads"]["train"] = 2
    two = write_config(workdir / "config" / "two.yaml", config)
    config["training"]["gpus_per_run"] = 1
    one = write_config(workdir / "config" / "one.yaml", config)
    target = "results/tiny/order/vis4mer/metrics.json"

    dry = snakemake(workdir, "-n", "--configfile", str(two), "--", target)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert re.search(r"rule train:.*?resources: [^\n]*gpu=2", dry.stdout, re.S)

    result = snakemake(workdir, "--cores", "2", "--configfile", str(two), "--", target, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    run = workdir / "results" / "tiny" / "order" / "vis4mer"
    train_log = (workdir / "logs" / "tiny" / "order" / "vis4mer" / "train.log").read_text()
    assert "training on 2 processes" in train_log and "torch.distributed.run" in train_log
    multi = read_log_csv(run / "train_log.csv")
    for name in ("best.pt", "last.pt", "train_curve.png", "metrics.json"):
        assert (run / name).stat().st_size > 0

    # gpus_per_run is not a params of the rule: changing it re-runs nothing...
    assert "Nothing to be done" in snakemake(workdir, "-n", "--configfile", str(one), "--", target).stdout
    # ...and forced, one process gives the same numbers
    result = snakemake(workdir, "--cores", "2", "--configfile", str(one), "--forcerun", "train", "--", target, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "training on" not in (workdir / "logs" / "tiny" / "order" / "vis4mer" / "train.log").read_text()
    _assert_logs_close(read_log_csv(run / "train_log.csv"), multi)
