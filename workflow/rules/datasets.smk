# Functions (no rules) of the paper's benchmarks as pipeline datasets: LVU, Breakfast and
# COIN (config source lvu, breakfast, coin), with the download and Video Swin stages.
# Rules: splits.smk, download.smk, swin.smk.
#
# Each benchmark is read with its own loader through vis4mer.sources and written as split
# files in the common layout, results/<dataset>/splits/<task>/{train,val,test}.csv (rule
# splits, one job per task), so frames, features, train and evaluate treat it like any
# dataset. The video ids (hence the shards) come from the same loaders, read once when the
# DAG is built.
#
#   lvu        split files from split_dir (lvu_1.0 layout), or fetched into
#              results/<dataset>/lvu_1.0 by the checkpoint lvu_splits when split_dir is
#              null; videos through the download stage
#   breakfast  videos found in video_dir (vis4mer.sources.breakfast), split by ViS4mer's lists
#              (lists_dir) or by participant ranges; validation per `validation`
#   coin       COIN.json (annotations); videos through the download stage; features of the
#              annotated range only; validation per `validation`
#
# Also here: the config checks of these sources and of the swin family, seeds (runs
# <model>/seed_<n>), and what the aggregate rule reports beside the metrics (paper
# numbers, download coverage, the validation strategy).

import vis4mer.sources as vis4mer_sources
from vis4mer.sources import lvu

SOURCE_KINDS = ("lvu", "breakfast", "coin")
DOWNLOAD_KINDS = ("lvu", "coin")  # video ids are YouTube ids: videos come from the download stage


def _names_where(predicate):
    return [name for name, ds in config["datasets"].items() if predicate(ds)]


def features_family(dataset):
    return dataset_config(dataset)["features"].get("family", "vit")


SOURCE_DATASET_REGEX = _alternatives(_names_where(lambda ds: ds["source"] in SOURCE_KINDS))
LVU_DATASET_REGEX = _alternatives(_names_where(lambda ds: ds["source"] == "lvu"))
DOWNLOAD_DATASET_REGEX = _alternatives(_names_where(lambda ds: ds["source"] in DOWNLOAD_KINDS))
SWIN_DATASET_REGEX = _alternatives(_names_where(lambda ds: ds["features"].get("family", "vit") == "swin"))
VIT_DATASET_REGEX = _alternatives(_names_where(lambda ds: ds["features"].get("family", "vit") == "vit"))


def _download_sources(ds):
    source = ds.get("download", {}).get("source", "youtube")
    return [source] if isinstance(source, str) else list(source)


def _check_source_config():
    """Checks of the lvu/breakfast/coin sources and the swin family; each error names the key."""
    from vis4mer.swin import BACKBONES

    for name, ds in config["datasets"].items():
        key = f"config: datasets.{name}"
        source, family = ds["source"], ds["features"].get("family", "vit")
        if source in SOURCE_KINDS:
            for task, spec in ds["tasks"].items():
                for column in ("id_column", "label_column", "label_transform"):
                    if column in spec:
                        raise WorkflowError(
                            f"{key}.tasks.{task}.{column}: not used with source {source} (targets and ids come "
                            f"from vis4mer.{source}); remove it"
                        )
        if source == "lvu":
            for task, spec in ds["tasks"].items():
                if task not in lvu.TASKS:
                    raise WorkflowError(f"{key}.tasks.{task}: not an LVU task (LVU tasks: {', '.join(lvu.TASKS)})")
                if spec["type"] != lvu.TASKS[task].kind:
                    raise WorkflowError(f"{key}.tasks.{task}.type is {spec['type']}, but LVU's {task} is a {lvu.TASKS[task].kind} task")
            if ds.get("trim_preview") and family != "vit":
                raise WorkflowError(f"{key}.trim_preview needs features.family vit (the frames stage trims the videos)")
        elif source in ("breakfast", "coin"):
            if len(ds["tasks"]) != 1 or next(iter(ds["tasks"].values()))["type"] != "classification":
                raise WorkflowError(f"{key}.tasks: {source} has exactly one task, of type classification (got {sorted(ds['tasks'])})")
        if ds.get("trim_preview") and source != "lvu":
            raise WorkflowError(f"{key}.trim_preview is for source lvu only")
        if source in DOWNLOAD_KINDS:
            kinds = _download_sources(ds)
            if kinds == ["youtube", "local"]:
                raise WorkflowError(
                    f"{key}.download.source {kinds}: the local mirrors are always searched before downloading; "
                    "write [local, youtube]"
                )
            if "local" in kinds and not ds.get("download", {}).get("local_dirs"):
                raise WorkflowError(f"{key}.download.local_dirs is empty, but download.source includes local")
        if family == "swin":
            if ds["features"]["backbone"] not in BACKBONES:
                raise WorkflowError(
                    f"{key}.features.backbone {ds['features']['backbone']!r} is not a Video Swin backbone "
                    f"(features.family swin; known: {', '.join(BACKBONES)})"
                )
            if source not in ("local", *SOURCE_KINDS):
                raise WorkflowError(f"{key}.features.family swin needs source local, lvu, breakfast or coin (got {source})")
            if ds["frames"]["size"] % 32:
                raise WorkflowError(f"{key}.frames.size {ds['frames']['size']} must be a multiple of 32 for Video Swin features")


_check_source_config()


# ------------------------------------------------------------------------ per-dataset settings


SEED_PREFIX = "seed_"  # the run folder of one seed: <model>/seed_<n>


def run_model(model_wildcard):
    """The model name of a {model} wildcard 'name' or 'name/seed_<n>'."""
    return model_wildcard.partition("/")[0]


def run_seed(model_wildcard):
    """The seed of a {model} wildcard 'name/seed_<n>', or None for a plain model name."""
    _, _, run = model_wildcard.partition("/")
    return int(run.removeprefix(SEED_PREFIX)) if run else None


def run_names(dataset):
    """The {model} wildcard values of a dataset: each model, or model/seed_<n> per configured seed."""
    ds = dataset_config(dataset)
    seeds = ds.get("seeds")
    if not seeds:
        return list(ds["models"])
    return [f"{model}/{SEED_PREFIX}{seed}" for model in ds["models"] for seed in seeds]


# ------------------------------------------------------------------------ source data


def lvu_split_dir(dataset):
    """The lvu_1.0 directory of an LVU dataset: configured, or fetched by the checkpoint lvu_splits."""
    split_dir = dataset_config(dataset).get("split_dir")
    if split_dir:
        return split_dir
    return str(checkpoints.lvu_splits.get(dataset=dataset).output[0])


def _source_arguments(dataset):
    """vis4mer.sources.read_source's arguments for a dataset (also the params of its splits jobs)."""
    ds = dataset_config(dataset)
    source = ds["source"]
    if source == "lvu":
        return {"source": "lvu", "split_dir": lvu_split_dir(dataset), "tasks": list(ds["tasks"])}
    task = next(iter(ds["tasks"]))
    if source == "breakfast":
        return {
            "source": "breakfast",
            "video_dir": ds["video_dir"],
            "task": task,
            "lists_dir": ds["lists_dir"],
            "train_participants": list(ds["train_participants"]),
            "test_participants": list(ds["test_participants"]),
            "validation": dict(ds["validation"]),
        }
    return {"source": "coin", "annotations": ds["annotations"], "task": task, "validation": dict(ds["validation"])}


_SOURCE_FILE_KEYS = {"lvu": "split_dir", "breakfast": "video_dir (or lists_dir)", "coin": "annotations"}


@lru_cache(maxsize=None)
def source_data(dataset):
    """The dataset's SourceData, read once per DAG build."""
    arguments = _source_arguments(dataset)
    try:
        return vis4mer_sources.read_source(arguments)
    except (OSError, ValueError) as error:
        key = _SOURCE_FILE_KEYS[arguments["source"]]
        raise WorkflowError(f"dataset {dataset!r} ({arguments['source']}, see datasets.{dataset}.{key}): {error}") from error


def source_video_ids(dataset):
    return tuple(source_data(dataset).videos)


@lru_cache(maxsize=None)
def _shard_groups_of(dataset, shard_size):
    return shard_groups(local_video_ids(dataset), shard_size)


def shard_ids(dataset, index):
    """The video ids of frames/features shard `index`."""
    return _shard_groups_of(dataset, config["shard_size"])[index]


def download_shard_size(dataset):
    return dataset_config(dataset)["download"].get("shard_size") or config["shard_size"]


def n_download_shards(dataset):
    return len(_shard_groups_of(dataset, download_shard_size(dataset)))


def download_manifest(dataset, index):
    return f"{RESULTS}/{dataset}/downloads/shard_{index:04d}.json"


def download_manifests(dataset):
    return [download_manifest(dataset, index) for index in range(n_download_shards(dataset))]


def download_manifests_of_shard(dataset, index):
    """Manifests of the download shards holding the ids of frames/features shard `index`
    (both cut the same sorted ids, possibly into chunks of different sizes)."""
    size, download_size = config["shard_size"], download_shard_size(dataset)
    first = index * size
    last = first + len(shard_ids(dataset, index)) - 1
    return [download_manifest(dataset, j) for j in range(first // download_size, last // download_size + 1)]


def source_task_extras(dataset, task):
    """Task settings of an lvu/breakfast/coin dataset beyond its split files: the class names
    (the whole class-id space), and for LVU regression how the targets derive from the raw
    columns (vis4mer.sources.lvu.TARGETS, recorded in checkpoints for vis4mer predict)."""
    extras = {"label_names": list(source_data(dataset).tasks[task].label_names)}
    if dataset_config(dataset)["source"] == "lvu" and task in lvu.TARGETS:
        extras["target"] = lvu.TARGETS[task].as_config()
    return extras


def source_frames_input(dataset, index):
    """Inputs of a frames job of an lvu/breakfast/coin dataset besides the split files."""
    ds = dataset_config(dataset)
    if ds["source"] in DOWNLOAD_KINDS:
        inputs = {"downloads": download_manifests_of_shard(dataset, index)}
        if ds["source"] == "lvu" and ds.get("trim_preview"):
            inputs["durations"] = os.path.join(lvu_split_dir(dataset), "lvu_durations.csv")
        return inputs
    videos = source_data(dataset).videos
    return {"videos": [videos[v].path for v in shard_ids(dataset, index) if videos[v].path and os.path.exists(videos[v].path)]}


def source_frames_params(dataset, index):
    """What the frames script needs to find (and cut) the videos of an lvu/breakfast/coin shard."""
    ds = dataset_config(dataset)
    videos = source_data(dataset).videos
    ids = shard_ids(dataset, index)
    params = {"ids": list(ids)}
    if ds["source"] not in DOWNLOAD_KINDS:
        params["videos"] = {v: videos[v].path for v in ids if videos[v].path}
        params["missing"] = {v: f"no video file for {v} under {ds['video_dir']} (datasets.{dataset}.video_dir)" for v in ids if not videos[v].path}
    ranges = {v: [videos[v].start, videos[v].end] for v in ids if videos[v].start is not None or videos[v].end is not None}
    if ranges:
        params["ranges"] = ranges
    if ds["source"] == "lvu" and ds.get("trim_preview"):
        params["trim_preview"] = True
    return params


# ------------------------------------------------------------------------ aggregate


def aggregate_info(dataset):
    """What all.json reports beside the metrics: source, paper numbers, seeds, validation."""
    ds = dataset_config(dataset)
    info = {"source": ds["source"], "seeds": list(ds.get("seeds") or [])}
    info["paper"] = {
        task: reference for task in ds["tasks"] if (reference := vis4mer_sources.paper_result(ds["source"], task))
    }
    if ds["source"] in SOURCE_KINDS:
        info["notes"] = source_data(dataset).notes
    if features_family(dataset) == "swin":
        info["frame_unit"] = "segment of 32 frames (Video Swin); window_frames counts segments"
    return info


# ------------------------------------------------------------------------ rule splits


def splits_input(wildcards):
    ds = dataset_config(wildcards.dataset)
    if ds["source"] == "lvu":
        if not ds.get("split_dir"):
            return {"source": lvu_split_dir(wildcards.dataset)}  # the fetched directory
        return {"source": [os.path.join(ds["split_dir"], wildcards.task, f"{split}.csv") for split in SPLITS]}
    if ds["source"] == "breakfast":
        if ds["lists_dir"]:
            return {"source": [os.path.join(ds["lists_dir"], f"{split}.csv") for split in ("train", "test")]}
        return {"source": ds["video_dir"]}
    return {"source": ds["annotations"]}


def splits_params(wildcards):
    arguments = _source_arguments(wildcards.dataset)
    if arguments["source"] == "lvu":
        arguments["tasks"] = [wildcards.task]
    return arguments


# ------------------------------------------------------------------------ rule download


def download_video_dir(dataset):
    return dataset_config(dataset)["download"].get("video_dir") or f"data/{dataset}/videos"


def download_params(wildcards):
    index = int(wildcards.shard)
    if index >= n_download_shards(wildcards.dataset):
        raise WorkflowError(
            f"dataset {wildcards.dataset!r} has {n_download_shards(wildcards.dataset)} download shards, not shard {wildcards.shard}"
        )
    ds = dataset_config(wildcards.dataset)
    kinds = _download_sources(ds)
    return {
        "ids": list(_shard_groups_of(wildcards.dataset, download_shard_size(wildcards.dataset))[index]),
        "video_dir": download_video_dir(wildcards.dataset),
        "local_dirs": list(ds["download"]["local_dirs"]) if "local" in kinds else [],
        "network": "youtube" in kinds,
        "url_template": ds["download"]["url_template"],
        "state": f"{RESULTS}/{wildcards.dataset}/downloads/.state/shard_{wildcards.shard}.json",
    }



# ------------------------------------------------------------------------ rule features_swin


@lru_cache(maxsize=None)
def _video_roles(dataset):
    """{video id: "train" | "test"}: train for a video of some task's train split."""
    ds = dataset_config(dataset)
    if ds["source"] in SOURCE_KINDS:
        return {video_id: info.role for video_id, info in source_data(dataset).videos.items()}
    train = set()
    for task in ds["tasks"]:
        spec = task_config(dataset, task)
        rows = read_split_csv(split_file(dataset, task, "train"), spec["id_column"], spec["label_column"])
        train.update(row.video_id for row in rows)
    return {video_id: "train" if video_id in train else "test" for video_id in local_video_ids(dataset)}


def _swin_videos(dataset, index):
    """({id: path} of the shard's videos with a known file, {id: reason} of those without)
    for a dataset whose files are known when the DAG is built (breakfast, local)."""
    ds = dataset_config(dataset)
    ids = shard_ids(dataset, index)
    if ds["source"] == "local":
        files = _local_video_files(dataset)
        return {v: str(files[v]) for v in ids}, {}
    videos = source_data(dataset).videos
    found = {v: videos[v].path for v in ids if videos[v].path}
    missing = {v: f"no video file for {v} under {ds['video_dir']} (datasets.{dataset}.video_dir)" for v in ids if v not in found}
    return found, missing


def features_swin_input(wildcards):
    dataset, index = wildcards.dataset, int(wildcards.shard)
    if wildcards.backbone != backbone_of(dataset):
        raise WorkflowError(
            f"features of dataset {dataset!r} are configured for backbone {backbone_of(dataset)!r}, "
            f"not {wildcards.backbone!r} (datasets.{dataset}.features.backbone)"
        )
    if index >= n_shards(dataset):
        raise WorkflowError(f"dataset {dataset!r} has {n_shards(dataset)} shards, not shard {wildcards.shard}")
    inputs = {}
    if dataset_config(dataset)["source"] in DOWNLOAD_KINDS:
        inputs["downloads"] = download_manifests_of_shard(dataset, index)
    else:
        found, _ = _swin_videos(dataset, index)
        inputs["videos"] = [path for path in found.values() if os.path.exists(path)]
    weights_file = dataset_config(dataset)["features"]["checkpoint"]
    if weights_file:
        inputs["checkpoint"] = weights_file
    return inputs


def features_swin_params(wildcards):
    dataset, index = wildcards.dataset, int(wildcards.shard)
    ds = dataset_config(dataset)
    ids = shard_ids(dataset, index)
    roles = _video_roles(dataset)
    limits = ds["features"]["max_segments"]
    params = {
        "backbone": ds["features"]["backbone"],
        "checkpoint": ds["features"]["checkpoint"],
        "size": ds["frames"]["size"],
        "ids": list(ids),
        "max_segments": {v: limits["train"] if roles.get(v) == "train" else limits["test"] for v in ids},
    }
    if ds["source"] not in DOWNLOAD_KINDS:
        params["videos"], params["missing"] = _swin_videos(dataset, index)
    if ds["source"] in SOURCE_KINDS:
        videos = source_data(dataset).videos
        ranges = {v: [videos[v].start, videos[v].end] for v in ids if videos[v].start is not None}
        if ranges:
            params["ranges"] = ranges
    if not ds["features"]["checkpoint"]:
        params["init_seed"] = config["seed"]  # the same random network in every shard's job
    return params
