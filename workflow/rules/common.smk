# Config validation and input functions shared by the stage rules (no rules here).
#
# Layout (every path relative to the working directory):
#   results/<dataset>/videos/, splits/<task>/{train,val,test}.csv   demo datasets only
#   results/<dataset>/splits/<task>/{train,val,test}.csv           lvu, breakfast, coin (datasets.smk, splits.smk)
#   results/<dataset>/downloads/shard_<i>.json                     lvu, coin (download.smk)
#   results/<dataset>/frames/shard_<i>.h5                          temp() unless keep_frames
#   results/<dataset>/features/<backbone>/shard_<i>.h5
#   results/<dataset>/<task>/<model>/{best.pt,last.pt,train_log.csv,train_curve.png,metrics.json,confusion.png}
#   results/<dataset>/<task>/<model>/seed_<n>/...                  the same per seed, with datasets.<name>.seeds
#   results/<dataset>/{all.json,summary.md}
#   logs/<dataset>/..., benchmarks/<dataset>/...
#
# Shards: the video ids of a dataset (the union of its split files over all tasks) are
# sorted and cut into chunks of `shard_size` (vis4mer.shards.shard_groups); shard i is
# chunk i. The DAG only needs the number of shards: for a demo dataset it follows from
# demo.n_videos (the split files do not exist yet), for a local dataset from its split
# files, read once when the DAG is built. The frames script recomputes the chunks from
# the split files at run time and checks the count, so both always agree.

import math
import os
import re
from functools import lru_cache
from pathlib import Path

import sys

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

try:
    import vis4mer
except ImportError:  # snakemake runs from an environment without the package: use the checkout
    sys.path.insert(0, str(Path(workflow.basedir) / "lib"))

from vis4mer.shards import is_complete, shard_groups
from vis4mer.sources.splits import read_split_csv
from vis4mer.training import LAUNCH_SETTINGS as NOT_PARAMS_TRAINING  # training keys that do not change the result

validate(config, schema="../schemas/config.schema.yaml")

RESULTS = "results"
LOGS = "logs"
BENCHMARKS = "benchmarks"
SPLITS = ("train", "val", "test")
DEMO_TASK = "order"  # the one task vis4mer.demo_data writes


def _check_config():
    """Cross-references the JSON schema cannot express; each error names the key."""
    datasets, models = config["datasets"], config["models"]
    for name in config["targets"]:
        if name not in datasets:
            raise WorkflowError(f"config: targets lists {name!r}, which is not under 'datasets' ({sorted(datasets)})")
    for name, dataset in datasets.items():
        for model in dataset["models"]:
            if model not in models:
                raise WorkflowError(
                    f"config: datasets.{name}.models lists {model!r}, which is not under 'models' ({sorted(models)})"
                )
        if dataset["source"] == "demo" and set(dataset["tasks"]) != {DEMO_TASK}:
            raise WorkflowError(
                f"config: datasets.{name}.tasks must be exactly {{{DEMO_TASK}: ...}} for a demo dataset "
                f"(the generator writes only that task), got {sorted(dataset['tasks'])}"
            )
        for task, spec in dataset["tasks"].items():
            if spec.get("label_transform") and spec["type"] != "regression":
                raise WorkflowError(f"config: datasets.{name}.tasks.{task}.label_transform is for regression tasks only")
        if dataset["source"] == "demo" and dataset["tasks"][DEMO_TASK]["type"] != "classification":
            raise WorkflowError(f"config: datasets.{name}.tasks.{DEMO_TASK}.type must be classification")


_check_config()


def _alternatives(names):
    """A regex matching exactly these names (never matching anything when empty)."""
    names = sorted(set(names))
    return "|".join(re.escape(name) for name in names) if names else "(?!x)x"


DATASET_REGEX = _alternatives(config["datasets"])
DEMO_DATASET_REGEX = _alternatives(n for n, d in config["datasets"].items() if d["source"] == "demo")
# a model name, or name/seed_<n>: one run per seed (datasets.<name>.seeds, see datasets.smk)
MODEL_REGEX = f"(?:{_alternatives(config['models'])})(?:/seed_-?[0-9]+)?"
TASK_REGEX = _alternatives(t for d in config["datasets"].values() for t in d["tasks"])


def frames_output(path):
    """Frames shards are intermediate: temp() unless config keep_frames."""
    return path if config["keep_frames"] else temp(path)


# ------------------------------------------------------------------------ config views


def dataset_config(dataset):
    return config["datasets"][dataset]


def task_config(dataset, task):
    """The task's type and split-file columns (dataset defaults filled in)."""
    ds = dataset_config(dataset)
    if task not in ds["tasks"]:
        raise WorkflowError(f"dataset {dataset!r} has no task {task!r} (tasks: {sorted(ds['tasks'])})")
    spec = ds["tasks"][task]
    if ds["source"] in SOURCE_KINDS:  # split files of the splits rule (final targets); the whole class-id space
        return {
            "type": spec["type"],
            "id_column": "youtube_id",
            "label_column": "class_id",
            "label_transform": {},
            **source_task_extras(dataset, task),
        }
    return {
        "type": spec["type"],
        "id_column": spec.get("id_column", ds["id_column"]),
        "label_column": spec.get("label_column", ds["label_column"]),
        "label_transform": dict(spec.get("label_transform", {})),
    }


def backbone_of(dataset):
    return dataset_config(dataset)["features"]["backbone"]


def model_config(model):
    """The model section of the config with its defaults, as train.py's ModelSpec
    (`model` may be a {model} wildcard name/seed_<n>)."""
    spec = config["models"][run_model(model)]
    return {
        "arch": spec["arch"],
        "d_model": spec["d_model"],
        "n_layers": spec["n_layers"],
        "dropout": spec["dropout"],
        "kwargs": dict(spec["kwargs"]),
    }


def training_config(wildcards=None):
    """Result-affecting training settings (params: changing one re-trains): the top-level
    'training', with the dataset's overrides and the run's seed when given its wildcards."""
    training = {key: value for key, value in config["training"].items() if key not in NOT_PARAMS_TRAINING}
    if wildcards is None:
        return {**training, "seed": config["seed"]}
    seed = run_seed(wildcards.model)
    return {
        **training,
        **dataset_config(wildcards.dataset).get("training", {}),
        "seed": config["seed"] if seed is None else seed,
    }


def attempt_scaled(rule, resource):
    """Resource `resource` (mem_mb, runtime in minutes) of `rule` from the config's
    'resources', times the attempt: a job retried after running out of memory or time
    (--retries, as profiles/slurm sets) asks for 2x, then 3x."""
    base = config["resources"][rule][resource]

    def scaled(wildcards, attempt):
        return base * attempt

    return scaled


def evaluation_config(dataset):
    """The top-level 'evaluation' with the dataset's overrides."""
    return {**config["evaluation"], **dataset_config(dataset).get("evaluation", {})}


# ------------------------------------------------------------------------ splits and shards


def split_file(dataset, task, split):
    ds = dataset_config(dataset)
    if ds["source"] != "local":  # demo: generated; lvu, breakfast, coin: rule splits
        return f"{RESULTS}/{dataset}/splits/{task}/{split}.csv"
    return os.path.join(ds["split_dir"], task, f"{split}.csv")


def split_files(dataset):
    """(split file, id column, label column) for every task and split of the dataset."""
    return [
        (split_file(dataset, task, split), task_config(dataset, task)["id_column"], task_config(dataset, task)["label_column"])
        for task in dataset_config(dataset)["tasks"]
        for split in SPLITS
    ]


@lru_cache(maxsize=None)
def local_video_ids(dataset):
    """Union of the video ids in a local dataset's split files (read once per DAG build);
    for lvu, breakfast and coin: the ids of their sources (datasets.smk)."""
    if dataset_config(dataset)["source"] in SOURCE_KINDS:
        return source_video_ids(dataset)
    ids = set()
    for path, id_column, label_column in split_files(dataset):
        if not os.path.exists(path):
            raise WorkflowError(
                f"dataset {dataset!r}: split file {path} does not exist "
                f"(expected <split_dir>/<task>/<split>.csv with split_dir={dataset_config(dataset)['split_dir']!r})"
            )
        try:
            ids.update(row.video_id for row in read_split_csv(path, id_column, label_column))
        except ValueError as error:
            raise WorkflowError(f"dataset {dataset!r}: {error}") from error
    if not ids:
        raise WorkflowError(f"dataset {dataset!r}: the split files list no videos")
    return tuple(sorted(ids))


def n_shards(dataset):
    ds = dataset_config(dataset)
    if ds["source"] == "demo":
        return math.ceil(ds["demo"]["n_videos"] / config["shard_size"])
    return len(shard_groups(local_video_ids(dataset), config["shard_size"]))


def shard_names(dataset):
    return [f"{index:04d}" for index in range(n_shards(dataset))]


@lru_cache(maxsize=None)
def _local_video_files(dataset):
    from vis4mer.sources.local import resolve_videos

    ds = dataset_config(dataset)
    return resolve_videos(local_video_ids(dataset), ds["video_dir"], list(ds["video_extensions"]))


@lru_cache(maxsize=None)
def checked_shard(path):
    """`path`, after removing it if it is a half-written or foreign HDF5 file.

    Shards are written to a temporary name and renamed when complete, so a file
    without the 'complete' attribute at a shard's path was copied or written by
    something else, mid-way; readers would refuse it (vis4mer.shards.open_shard).
    Removing it makes Snakemake rebuild it (and what depends on it) in this run,
    instead of trusting it by its mtime. Checked once per path per invocation
    (also in a dry run, which then shows the rebuild).
    """
    if os.path.exists(path) and not is_complete(path):
        logger.warning(f"{path} is an incomplete shard (no 'complete' attribute): removed, it will be rebuilt")
        os.remove(path)
    return path


# ------------------------------------------------------------------------ input functions


def frames_input(wildcards):
    """Split files (they define the shard's ids) and the videos of the shard."""
    ds = dataset_config(wildcards.dataset)
    index = int(wildcards.shard)
    if index >= n_shards(wildcards.dataset):
        raise WorkflowError(f"dataset {wildcards.dataset!r} has {n_shards(wildcards.dataset)} shards, not shard {wildcards.shard}")
    inputs = {"splits": sorted({path for path, _, _ in split_files(wildcards.dataset)})}
    if ds["source"] == "demo":
        inputs["videos"] = f"{RESULTS}/{wildcards.dataset}/videos"
    elif ds["source"] in SOURCE_KINDS:
        inputs.update(source_frames_input(wildcards.dataset, index))
    else:
        group = shard_groups(local_video_ids(wildcards.dataset), config["shard_size"])[index]
        files = _local_video_files(wildcards.dataset)
        # only existing files: a missing video is skipped (and reported) by the frames stage
        inputs["videos"] = [str(files[vid]) for vid in group if files[vid].exists()]
    return inputs


def frames_params(wildcards):
    ds = dataset_config(wildcards.dataset)
    params = {
        "dataset": wildcards.dataset,
        "shard_index": int(wildcards.shard),
        "n_shards": n_shards(wildcards.dataset),
        "shard_size": config["shard_size"],
        "split_files": [[path, id_column, label_column] for path, id_column, label_column in split_files(wildcards.dataset)],
        "video_dir": f"{RESULTS}/{wildcards.dataset}/videos" if ds["source"] == "demo" else ds.get("video_dir", ""),
        "video_extensions": ["mp4"] if ds["source"] == "demo" else list(ds["video_extensions"]),
        "fps": ds["frames"]["fps"],
        "size": ds["frames"]["size"],
        "decoder": ds["frames"]["decoder"],
    }
    if ds["source"] in SOURCE_KINDS:
        params.update(source_frames_params(wildcards.dataset, int(wildcards.shard)))
    return params


def features_input(wildcards):
    configured = backbone_of(wildcards.dataset)
    if wildcards.backbone != configured:
        raise WorkflowError(
            f"features of dataset {wildcards.dataset!r} are configured for backbone {configured!r}, "
            f"not {wildcards.backbone!r} (datasets.{wildcards.dataset}.features.backbone)"
        )
    inputs = {"frames": checked_shard(f"{RESULTS}/{wildcards.dataset}/frames/shard_{wildcards.shard}.h5")}
    weights_file = dataset_config(wildcards.dataset)["features"]["checkpoint"]
    if weights_file:
        inputs["checkpoint"] = weights_file  # a changed weights file re-extracts the features
    return inputs


def features_params(wildcards):
    ds = dataset_config(wildcards.dataset)
    params = {
        "backbone": ds["features"]["backbone"],
        "checkpoint": ds["features"]["checkpoint"],
        "img_size": ds["frames"]["size"],
    }
    if not ds["features"]["checkpoint"]:
        # Random weights must be the SAME in every shard's job, or features of two
        # shards come from two different networks: seed the initialisation.
        params["init_seed"] = config["seed"]
    return params


def feature_shards(wildcards):
    dataset = wildcards.dataset
    return [
        checked_shard(f"{RESULTS}/{dataset}/features/{backbone_of(dataset)}/shard_{name}.h5")
        for name in shard_names(dataset)
    ]


def run_splits(wildcards):
    return {split: split_file(wildcards.dataset, wildcards.task, split) for split in SPLITS}


def run_files(dataset, name):
    """One file of every (task, model[, seed]) run of a dataset, in config order."""
    ds = dataset_config(dataset)
    return [f"{RESULTS}/{dataset}/{task}/{run}/{name}" for task in ds["tasks"] for run in run_names(dataset)]


def aggregate_input(wildcards):
    ds = dataset_config(wildcards.dataset)
    inputs = {
        "metrics": run_files(wildcards.dataset, "metrics.json"),
        "curves": run_files(wildcards.dataset, "train_curve.png"),
        "confusion": [
            f"{RESULTS}/{wildcards.dataset}/{task}/{run}/confusion.png"
            for task, spec in ds["tasks"].items()
            if spec["type"] == "classification"
            for run in run_names(wildcards.dataset)
        ],
    }
    if ds["source"] in DOWNLOAD_KINDS:
        inputs["downloads"] = download_manifests(wildcards.dataset)  # coverage in all.json
    return inputs


def all_targets():
    return [f"{RESULTS}/{dataset}/{name}" for dataset in config["targets"] for name in ("all.json", "summary.md")]
