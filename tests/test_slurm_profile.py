"""profiles/slurm: a dry run with the Slurm executor plugin, and the sbatch flags each job
would get (built by the plugin's own get_submit_command from the dry run's resources).

No cluster here: `snakemake -n --workflow-profile profiles/slurm` works without Slurm; a
real submission is not tested.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from _workflow import REPO, copy_workflow, snakemake

pytest.importorskip("snakemake_executor_plugin_slurm")
from snakemake_executor_plugin_slurm.submit_string import get_submit_command  # noqa: E402
from snakemake_executor_plugin_slurm.utils import set_gres_string  # noqa: E402

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
GPU_RULES = {"features", "features_swin", "train", "evaluate"}


class Resources(dict):
    """The plugin reads job.resources both as attributes and with .get()."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _value(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def dry_run_jobs(output: str) -> list[dict]:
    """Every job block of a dry run: rule, wildcards, threads, resources. (A dry run prints
    local rules as `rule` too: see local_rules for which ones stay on the submit host.)"""
    jobs = []
    for match in re.finditer(r"^(localrule|rule) (\w+):\n(.*?)(?=^\S|\Z)", output, re.M | re.S):
        kind, rule, body = match.groups()
        fields = dict(re.findall(r"^\s+(\w+): (.*)$", body, re.M))
        resources = Resources()
        for item in fields.get("resources", "").split(", "):
            if "=" in item:
                key, value = item.split("=", 1)
                resources[key] = _value(value)
        jobs.append({
            "rule": rule, "threads": int(fields.get("threads", 1)),
            "wildcards": fields.get("wildcards", ""), "resources": resources,
        })
    return jobs


def sbatch(job: dict) -> str:
    """The sbatch call the plugin builds for a job (as its run_job does: the generic part,
    then the GPU flags)."""
    fake = SimpleNamespace(resources=job["resources"], threads=job["threads"], wildcards={}, name=job["rule"])
    params = {"run_uuid": "uuid", "slurm_logfile": "log", "comment_str": job["rule"], "account": "", "partition": "",
              "workdir": "/work"}
    return get_submit_command(fake, params) + set_gres_string(fake)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    directory = copy_workflow(tmp_path_factory.mktemp("slurm"))
    shutil.copytree(REPO / "profiles", directory / "profiles")
    return directory


@pytest.fixture(scope="module")
def demo_jobs(workdir) -> list[dict]:
    result = snakemake(workdir, "-n", "--workflow-profile", "profiles/slurm", "--configfile=config/demo.yaml", "results/demo/all.json")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "Using workflow specific profile profiles/slurm" in result.stdout + result.stderr
    jobs = dry_run_jobs(result.stdout)
    assert jobs
    return jobs


def test_profile_is_a_slurm_profile_with_retries():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["jobs"] >= 1 and profile["retries"] >= 1
    assert profile["rerun-incomplete"] is True
    # `gpus` would be silently dropped by the plugin; only gpu / gpu_model / gres make GPU flags
    for rule, resources in profile.get("set-resources", {}).items():
        assert "gpus" not in resources, rule
        assert set(resources) <= {"gpu", "gpu_model", "gres", "cpus_per_gpu", "cpus_per_task", "mem_mb", "runtime",
                                  "slurm_partition", "slurm_account", "slurm_extra", "constraint", "qos"}, rule
    assert not ({rule for rule, r in profile.get("set-resources", {}).items() if "gpu" in r} - GPU_RULES)


def test_dry_run_requests_per_rule(demo_jobs):
    """What each submitted job would ask Slurm for (demo config: gpus_per_run 1)."""
    config = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    defaults = {rule: spec["default"] for rule, spec in config["properties"]["resources"]["properties"].items()}
    by_rule: dict[str, list[dict]] = {}
    for job in demo_jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert set(by_rule) == {"demo_videos", "frames", "features", "train", "evaluate", "confusion_plot", "aggregate"}
    local = local_rules()
    for rule, jobs in by_rule.items():
        for job in jobs:
            resources = job["resources"]
            if rule in ("confusion_plot", "aggregate"):
                assert rule in local, f"{rule} runs where snakemake runs"
                continue
            assert rule not in local, f"{rule} is submitted"
            if rule in defaults:
                assert resources["mem_mb"] == defaults[rule]["mem_mb"], rule
                assert resources["runtime"] == defaults[rule]["runtime"], rule
            assert resources.get("gpu", 0) == (1 if rule in GPU_RULES else 0), rule


def test_sbatch_flags_of_each_job(demo_jobs):
    commands = {job["rule"]: sbatch(job) for job in demo_jobs if job["rule"] not in local_rules()}
    train = commands["train"]
    assert "--gpus=1" in train and "--mem 32000" in train and "-t 1440" in train
    assert re.search(r"--cpus-per-task=\d+", train)
    assert "--gpus=1" in commands["features"] and "--mem 16000" in commands["features"]
    assert "--gpus=1" in commands["evaluate"]
    assert "--gpus" not in commands["frames"] and "--mem 8000" in commands["frames"] and "-t 120" in commands["frames"]
    assert "--gpus" not in commands["demo_videos"]


def test_cluster_overrides_reach_sbatch(workdir):
    """gpu_model and cpus_per_gpu from the command line (or the profile), a multi-GPU train."""
    result = snakemake(
        workdir, "-n", "--workflow-profile", "profiles/slurm", "--configfile=config/demo.yaml",
        "--set-resources", "train:gpu_model=a100", "train:cpus_per_gpu=8", "train:gpu=4", "--", "results/demo/all.json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    train = next(job for job in dry_run_jobs(result.stdout) if job["rule"] == "train")
    command = sbatch(train)
    assert "--gpus=a100:4" in command and "--cpus-per-gpu=8" in command


def test_training_gpus_per_run_sets_the_train_jobs_gpus(workdir, tmp_path):
    override = tmp_path / "two.yaml"
    override.write_text(yaml.safe_dump({"training": {"gpus_per_run": 2}}))
    result = snakemake(workdir, "-n", "--workflow-profile", "profiles/slurm", "--configfile", str(REPO / "config" / "demo.yaml"),
                       str(override), "--", "results/demo/all.json")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout)
    assert {job["resources"]["gpu"] for job in jobs if job["rule"] == "train"} == {2}
    assert {job["resources"]["gpu"] for job in jobs if job["rule"] == "features"} == {1}


def test_heavy_rules_scale_memory_and_time_with_the_attempt():
    """mem_mb and runtime of the heavy rules are attempt_scaled callables (common.smk)."""
    rules = "".join(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))
    for rule in ("frames", "features", "train", "evaluate"):
        block = re.search(rf"^rule {rule}:(.*?)(?=^rule |\Z)", rules, re.M | re.S).group(1)
        assert re.search(r'mem_mb=attempt_scaled\("\w+", "mem_mb"\)', block), rule
        assert re.search(r'runtime=attempt_scaled\("\w+", "runtime"\)', block), rule
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    source = re.search(r"^def attempt_scaled\(.*?(?=^\S)", common, re.M | re.S).group(0)
    namespace = {"config": {"resources": {"train": {"mem_mb": 32000, "runtime": 1440}}}}
    exec(source, namespace)  # noqa: S102 - the function from common.smk, as Snakemake runs it
    scaled = namespace["attempt_scaled"]("train", "mem_mb")
    assert [scaled(None, attempt) for attempt in (1, 2, 3)] == [32000, 64000, 96000]


def local_rules() -> set[str]:
    """Rules that run where snakemake runs: the Snakefile's localrules, and rules whose
    `localrule:` is True or the config's download_localrule (default true)."""
    snakefile = (REPO / "Snakefile").read_text()
    local = set(re.search(r"^localrules:\n((?:\s+\w+,\n)+)", snakefile, re.M).group(1).replace(",", " ").split())
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^(?:rule|checkpoint) (\w+):(.*?)(?=^(?:rule|checkpoint) |\Z)", path.read_text(), re.M | re.S):
            if re.search(r"^\s+localrule: (True|config\[\"download_localrule\"\])", body, re.M):
                local.add(name)
    return local


def test_download_and_split_rules_are_local():
    """Compute nodes often have no internet: those rules never become sbatch jobs."""
    rules = {name for path in (REPO / "workflow" / "rules").glob("*.smk")
             for name in re.findall(r"^(?:rule|checkpoint) (\w+):", path.read_text(), re.M)}
    local = local_rules()
    assert {"confusion_plot", "aggregate"} <= local
    assert not ({"frames", "features", "train", "evaluate"} & local)
    for name in rules:
        if name.startswith("download") or name.endswith("splits"):
            assert name in local, name
