# Config validation and the input functions of the stage rules (no rules here). Anything
# with logic is asked of the library: the config view (vis4mer.config), the dataset's source
# (vis4mer.sources: one module per kind - demo, local, lvu, breakfast, coin) and its shard
# plan (vis4mer.shards.ShardPlan). No function here branches on the kind of a dataset.
#
# Layout (every path relative to the working directory):
#   results/<dataset>/videos/                                      generated datasets (rule demo_videos)
#   results/<dataset>/lvu_1.0/                                     fetched split files (checkpoint lvu_splits)
#   results/<dataset>/splits/<task>/{train,val,test}.csv           generated, or written by the rule splits
#                                                                  (a local dataset's are read in place)
#   results/<dataset>/downloads/shard_<i>.json                     downloaded datasets (rule download)
#   results/<dataset>/frames/shard_<i>.h5                          temp() unless keep_frames
#   results/<dataset>/features/<backbone>/shard_<i>.h5
#   results/<dataset>/<task>/<model>/{best.pt,last.pt,train_log.csv,train_curve.png,metrics.json,confusion.png}
#   results/<dataset>/<task>/<model>/seed_<n>/...                  the same per seed, with datasets.<name>.seeds
#   results/<dataset>/{all.json,summary.md,summary.png,results.html}
#   logs/<dataset>/..., benchmarks/<dataset>/...
#
# Shards: the video ids of a dataset (from its source, read once when the DAG is built) are
# sorted and cut into chunks of `shard_size` (frames, features) and of download.shard_size
# (downloads); shard i is chunk i. The plan is computed here once per dataset and its ids
# are passed to the frames and features jobs as params.

import os
import re
import sys
from functools import lru_cache
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

try:
    import vis4mer
except ImportError:  # snakemake runs from an environment without the package: use the checkout
    sys.path.insert(0, str(Path(workflow.basedir) / "lib"))

from vis4mer.config import (
    SEED_PREFIX,
    ConfigError,
    by_value,
    check_config,
    dataset_evaluation,
    dataset_recipe,
    dataset_training,
    download_sources,
    model_settings,
    parse_run,
    pretrained_url,
    run_names,
    validate_config,
)
from vis4mer.shards import ShardPlan, is_complete
from vis4mer.sources import source_class
from vis4mer.sources.splits import SPLITS
from vis4mer.training import LAUNCH_SETTINGS  # training keys that do not change the result
from vis4mer.weights import PRETRAINED as PRETRAINED_WEIGHTS, RANDOM as RANDOM_WEIGHTS

try:
    validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
    check_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

RESULTS = "results"


def _alternatives(names):
    """A regex matching exactly these names (never matching anything when empty)."""
    names = sorted(set(names))
    return "|".join(re.escape(name) for name in names) if names else "(?!x)x"


def _datasets_where(predicate):
    """Names of the datasets whose source kind (a vis4mer.sources.Source class) and settings
    satisfy `predicate`."""
    return [name for name, ds in config["datasets"].items() if predicate(source_class(ds["source"]), ds)]


DATASET_REGEX = _alternatives(config["datasets"])
# a model name, or name/seed_<n>: one run per seed (datasets.<name>.seeds)
MODEL_REGEX = f"(?:{_alternatives(config['models'])})(?:/{SEED_PREFIX}-?[0-9]+)?"
TASK_REGEX = _alternatives(t for d in config["datasets"].values() for t in d["tasks"])
GENERATED_DATASET_REGEX = _alternatives(_datasets_where(lambda kind, ds: kind.generated))
SPLITS_RULE_DATASET_REGEX = _alternatives(_datasets_where(lambda kind, ds: kind.writes_splits))
FETCHED_SPLITS_DATASET_REGEX = _alternatives(_datasets_where(lambda kind, ds: kind.fetch_checkpoint == "lvu_splits"))
DOWNLOAD_DATASET_REGEX = _alternatives(_datasets_where(lambda kind, ds: kind.downloads))
VIT_DATASET_REGEX = _alternatives(_datasets_where(lambda kind, ds: ds["features"]["family"] == "vit"))
PRETRAINED_DATASET_REGEX = _alternatives(_datasets_where(lambda kind, ds: ds["features"]["weights"] == PRETRAINED_WEIGHTS))
SWIN_DATASET_REGEX = _alternatives(_datasets_where(lambda kind, ds: ds["features"]["family"] == "swin"))


def frames_output(path):
    """Frames shards are intermediate: temp() unless config keep_frames."""
    return path if config["keep_frames"] else temp(path)


def attempt_scaled(rule, resource):
    """Resource `resource` (mem_mb, runtime in minutes) of `rule` from the config's
    'resources', times the attempt: a job retried after running out of memory or time
    (--retries, as profiles/slurm sets) asks for 2x, then 3x."""
    base = config["resources"][rule][resource]

    def scaled(wildcards, attempt):
        return base * attempt

    return scaled


# ------------------------------------------------------------------------ sources and plans


def dataset_config(dataset):
    return config["datasets"][dataset]


@lru_cache(maxsize=None)
def source(dataset):
    """The dataset's vis4mer.sources.Source, given the output of its kind's fetch checkpoint
    when its files are fetched (LVU without split_dir): asking for it then waits for that
    checkpoint. Its files are read once per DAG build."""
    ds = dataset_config(dataset)
    kind = source_class(ds["source"])
    fetched = None
    if kind.needs_fetch(ds):
        fetched = str(getattr(checkpoints, kind.fetch_checkpoint).get(dataset=dataset).output[0])
    return kind(dataset, ds, results=RESULTS, fetched=fetched)


@lru_cache(maxsize=None)
def shard_plan(dataset):
    """Which video ids each frames/features shard and each download shard of the dataset holds."""
    ds = dataset_config(dataset)
    download_size = (ds["download"]["shard_size"] or config["shard_size"]) if source_class(ds["source"]).downloads else None
    return ShardPlan.of(dataset, source(dataset).video_ids(), config["shard_size"], download_size)


def shard_ids(wildcards):
    """The video ids of the {shard} of the {dataset}."""
    return shard_plan(wildcards.dataset).shard(int(wildcards.shard))


def download_manifest(dataset, index):
    return f"{RESULTS}/{dataset}/downloads/shard_{index:04d}.json"


def download_manifests(dataset):
    return [download_manifest(dataset, index) for index in range(len(shard_plan(dataset).download_shards))]


@lru_cache(maxsize=None)
def checked_shard(path):
    """`path`, after removing it if it is a half-written or foreign HDF5 file.

    Shards are written to a temporary name and renamed when complete, so a file
    without the 'complete' attribute at a shard's path was copied or written by
    something else, mid-way; readers would refuse it (vis4mer.shards.open_shard).
    Removing it makes Snakemake rebuild it (and what depends on it) in this run,
    instead of trusting it by its mtime. Checked once per path per invocation; a dry
    run changes nothing: it only says so.
    """
    if os.path.exists(path) and not is_complete(path):
        if workflow.dryrun:
            logger.warning(f"{path} is an incomplete shard (no 'complete' attribute): a run removes and rebuilds it (a dry run leaves it)")
        else:
            logger.warning(f"{path} is an incomplete shard (no 'complete' attribute): removed, it will be rebuilt")
            os.remove(path)
    return path


def backbone_of(dataset):
    return dataset_config(dataset)["features"]["backbone"]


def check_backbone(wildcards):
    if wildcards.backbone != backbone_of(wildcards.dataset):
        raise WorkflowError(
            f"features of dataset {wildcards.dataset!r} are configured for backbone {backbone_of(wildcards.dataset)!r}, "
            f"not {wildcards.backbone!r} (datasets.{wildcards.dataset}.features.backbone)"
        )


# ------------------------------------------------------------------------ per-run settings


def task_config(dataset, task):
    """What train and evaluate need to read the task's split files (vis4mer.sources.Source.task_settings)."""
    return source(dataset).task_settings(task)


def model_config(wildcards):
    """The model section of the config with its defaults and what the dataset's recipe decides,
    as train.py's ModelSpec (the {model} wildcard may be name/seed_<n>), keys in one order (by_value)."""
    return by_value(model_settings(config, wildcards.model, wildcards.dataset))


def run_seed(wildcards):
    """The seed of the {model} run: its seed_<n>, or the config's seed."""
    seed = parse_run(wildcards.model)[1]
    return config["seed"] if seed is None else seed


def training_config(wildcards):
    """Result-affecting training settings (params: changing one re-trains): the top-level
    'training' with the dataset's overrides, what the dataset's recipe decides, and the run's seed;
    compared by value (by_value: re-ordering the keys re-trains nothing)."""
    training = {key: value for key, value in dataset_training(config, wildcards.dataset).items() if key not in LAUNCH_SETTINGS}
    recipe = dataset_recipe(config, wildcards.dataset).training_settings()
    return by_value({**training, **recipe, "seed": run_seed(wildcards)})


def run_report_labels(wildcards):
    """Labels of a run's figures in the Snakemake report (its category is the dataset).
    Strings, as the report sorts and shows them as text."""
    return {"task": wildcards.task, "model": parse_run(wildcards.model)[0], "seed": str(run_seed(wildcards))}


def run_recipe(wildcards):
    """The dataset's recipe as a run's checkpoints record it (vis4mer.recipe.Recipe.run_record)."""
    return dataset_recipe(config, wildcards.dataset).run_record(model_settings(config, wildcards.model)["arch"])


def evaluation_config(dataset):
    return dataset_evaluation(config, dataset)


def run_splits(wildcards):
    return {split: source(wildcards.dataset).split_file(wildcards.task, split) for split in SPLITS}


def model_results(wildcards):
    """The files that describe the model of a train job: its run's metrics.json and
    confusion.png, and the dataset's all.json and summary.md. The job removes them when it
    starts, so a re-train that fails leaves none describing a model that is gone, and the
    next run rebuilds them (Snakemake alone would keep them "up to date")."""
    run = f"{RESULTS}/{wildcards.dataset}/{wildcards.task}/{wildcards.model}"
    return [f"{run}/metrics.json", f"{run}/confusion.png", f"{RESULTS}/{wildcards.dataset}/all.json", f"{RESULTS}/{wildcards.dataset}/summary.md"]


def run_files(dataset, name):
    """One file of every (task, model[, seed]) run of a dataset, in config order."""
    ds = dataset_config(dataset)
    return [f"{RESULTS}/{dataset}/{task}/{run}/{name}" for task in ds["tasks"] for run in run_names(ds)]


# ------------------------------------------------------------------------ rules demo_videos, splits, download


def demo_settings(wildcards):
    """The generator's arguments (the params of demo_videos), compared by value (by_value), so
    re-ordering them regenerates nothing."""
    return by_value(dataset_config(wildcards.dataset)["demo"])


def splits_input(wildcards):
    return source(wildcards.dataset).split_inputs(wildcards.task)


def splits_params(wildcards):
    return source(wildcards.dataset).split_arguments(wildcards.task)


def download_params(wildcards):
    ds = dataset_config(wildcards.dataset)
    try:
        ids = shard_plan(wildcards.dataset).download_shard(int(wildcards.shard))
    except IndexError as error:
        raise WorkflowError(str(error)) from None
    sources = download_sources(ds["download"])
    return {
        "ids": list(ids),
        "video_dir": ds["download"]["video_dir"] or f"data/{wildcards.dataset}/videos",
        "local_dirs": list(ds["download"]["local_dirs"]) if "local" in sources else [],
        "network": "youtube" in sources,
        "url_template": ds["download"]["url_template"],
        "state": f"{RESULTS}/{wildcards.dataset}/downloads/.state/shard_{wildcards.shard}.json",
    }


# ------------------------------------------------------------------------ rules frames, features, features_swin


def _shard_videos(wildcards):
    """Inputs of a job reading the videos of a shard: its download manifests, or its video files."""
    dataset, index = wildcards.dataset, int(wildcards.shard)
    try:
        ids = shard_plan(dataset).shard(index)
    except IndexError as error:
        raise WorkflowError(str(error)) from None
    if source(dataset).downloads:
        return {"downloads": [download_manifest(dataset, j) for j in shard_plan(dataset).downloads_of(index)]}
    return {"videos": source(dataset).video_inputs(ids)}


def _planned_videos(wildcards):
    """Params of a job reading the videos of a shard: its ids, the files known now and why
    the others have none (downloaded datasets: read from the manifests by the job)."""
    src, ids = source(wildcards.dataset), shard_ids(wildcards)
    params = {"ids": list(ids)}
    if not src.downloads:
        params["videos"], params["missing"] = src.video_files(ids)
    if ranges := src.ranges(ids):
        params["ranges"] = ranges
    return params


def frames_input(wildcards):
    return {**_shard_videos(wildcards), **source(wildcards.dataset).frames_inputs()}


def frames_params(wildcards):
    ds = dataset_config(wildcards.dataset)
    params = {
        "shard_index": int(wildcards.shard),
        "n_shards": len(shard_plan(wildcards.dataset)),
        **_planned_videos(wildcards),
        "fps": ds["frames"]["fps"],
        "size": ds["frames"]["size"],
        "decoder": ds["frames"]["decoder"],
        "resize": dataset_recipe(config, wildcards.dataset).resize,
    }
    keep_last_s = source(wildcards.dataset).keep_last_s(shard_ids(wildcards))
    if keep_last_s is not None:
        params["keep_last_s"] = keep_last_s
    spread_seconds = source(wildcards.dataset).spread_seconds(shard_ids(wildcards))
    if spread_seconds is not None:
        params["spread_seconds"] = spread_seconds
    return params


def weights_record(dataset):
    """The fetch_weights rule's output for a dataset with pretrained weights."""
    return f"{RESULTS}/{dataset}/features/{backbone_of(dataset)}/weights.json"


def weights_input(dataset):
    """The features jobs' weights input: the fetch_weights record (pretrained: fetched once, on
    the machine that runs snakemake), the file itself (a changed file re-extracts the features),
    or none (random)."""
    setting = dataset_config(dataset)["features"]["weights"]
    if setting == RANDOM_WEIGHTS:
        return {}
    if setting == PRETRAINED_WEIGHTS:
        return {"weights": weights_record(dataset)}
    if not os.path.isfile(os.path.expanduser(setting)):
        raise WorkflowError(
            f"datasets.{dataset}.features.weights: the weights file {setting} does not exist; give an existing file, "
            f"or write '{PRETRAINED_WEIGHTS}' for the backbone's public weights"
        )
    return {"weights": os.path.expanduser(setting)}


def weights_params(dataset):
    """features.weights, and for random weights the seed: a random network must be the SAME
    in every shard's job, or features of two shards come from two different networks."""
    setting = dataset_config(dataset)["features"]["weights"]
    return {"weights": setting, **({"init_seed": config["seed"]} if setting == RANDOM_WEIGHTS else {})}


def fetch_weights_params(wildcards):
    ds = dataset_config(wildcards.dataset)
    return {
        "backbone": ds["features"]["backbone"],
        "url": pretrained_url(ds["features"]),
        "sha256": ds["features"]["weights_sha256"],
    }

# Checked for every dataset now: raised later, from the input function of a features job
# whose shard exists, Snakemake would drop the error and keep the shard.
for _dataset in config["datasets"]:
    weights_input(_dataset)


def features_input(wildcards):
    check_backbone(wildcards)
    inputs = {"frames": checked_shard(f"{RESULTS}/{wildcards.dataset}/frames/shard_{wildcards.shard}.h5")}
    return {**inputs, **weights_input(wildcards.dataset)}


def features_params(wildcards):
    ds = dataset_config(wildcards.dataset)
    return {
        "backbone": ds["features"]["backbone"],
        "img_size": ds["frames"]["size"],
        "normalise": dataset_recipe(config, wildcards.dataset).normalise,
        **weights_params(wildcards.dataset),
    }


def features_swin_input(wildcards):
    check_backbone(wildcards)
    return {**_shard_videos(wildcards), **weights_input(wildcards.dataset)}


def features_swin_params(wildcards):
    ds = dataset_config(wildcards.dataset)
    ids = shard_ids(wildcards)
    roles = source(wildcards.dataset).roles()
    limits = ds["features"]["max_segments"]
    recipe = dataset_recipe(config, wildcards.dataset)
    planned = _planned_videos(wildcards)
    params = {
        "backbone": ds["features"]["backbone"],
        "size": ds["frames"]["size"],
        "ids": planned.pop("ids"),
        "max_segments": {v: limits["train"] if roles[v] == "train" else limits["test"] for v in ids},
        "segment_rules": {v: recipe.segment_rule(roles[v]) for v in ids},
        "resize": recipe.resize,
        "normalise": recipe.normalise,
        **planned,
    }
    return {**params, **weights_params(wildcards.dataset)}


def feature_shards(wildcards):
    dataset = wildcards.dataset
    return [
        checked_shard(f"{RESULTS}/{dataset}/features/{backbone_of(dataset)}/shard_{name}.h5")
        for name in shard_plan(dataset).names()
    ]


# ------------------------------------------------------------------------ rule aggregate, all


def aggregate_input(wildcards):
    ds = dataset_config(wildcards.dataset)
    inputs = {
        "metrics": run_files(wildcards.dataset, "metrics.json"),
        "curves": run_files(wildcards.dataset, "train_curve.png"),
        "confusion": [
            f"{RESULTS}/{wildcards.dataset}/{task}/{run}/confusion.png"
            for task, spec in ds["tasks"].items()
            if spec["type"] == "classification"
            for run in run_names(ds)
        ],
    }
    if source_class(ds["source"]).downloads:
        inputs["downloads"] = download_manifests(wildcards.dataset)  # coverage in all.json
    return inputs


def aggregate_info(wildcards):
    """What all.json reports beside the metrics (vis4mer.sources.Source.summary_info) and the recipe."""
    return {**source(wildcards.dataset).summary_info(), "recipe": dataset_recipe(config, wildcards.dataset).as_record()}


def all_targets():
    """all.json and summary.md of every target dataset, and the best.pt of each of its runs:
    Snakemake re-runs a job whose output is missing only when a target needs it, and results
    must never describe a model that is not there (a train job that failed removed it)."""
    return [
        *(f"{RESULTS}/{dataset}/{name}" for dataset in config["targets"] for name in ("all.json", "summary.md")),
        *(path for dataset in config["targets"] for path in run_files(dataset, "best.pt")),
    ]
