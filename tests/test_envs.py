"""Conda environments of the workflow (envs/*.yaml) against the rules and requirements/base.txt.

No conda channel is reachable where the tests run, so the environments are checked by
structure, not by creating them: every rule names an environment file that exists; every
pip pin of an environment is the pin of requirements/base.txt; and every environment has
the third-party packages its rules' scripts import (directly, or through the vis4mer
modules they import; in the library only module-level imports of third-party packages
count, since those inside functions are optional back-ends, e.g. decord or torchcodec).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules"
SCRIPTS = REPO / "workflow" / "scripts"
LIB = REPO / "lib"

# import name -> distribution name, where they differ
DISTRIBUTIONS = {
    "yt_dlp": "yt-dlp",
    "mmaction": "mmaction2",
    "mmcv": "mmcv-lite",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "importlib_metadata": "importlib-metadata",
    "torchvision": "torchvision",
}
# provided by another distribution of the environment
PROVIDED_BY = {"keopscore": "pykeops"}


def base_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "base.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def rule_blocks() -> dict[str, dict]:
    """{rule name: {"file", "conda", "script"}} of every rule/checkpoint in workflow/rules."""
    rules = {}
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(2)) for m in re.finditer(r"^(rule|checkpoint)\s+(\w+)\s*:", text, re.M)]
        for index, (start, name) in enumerate(starts):
            end = starts[index + 1][0] if index + 1 < len(starts) else len(text)
            block = text[start:end]
            conda = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", block, re.M)
            script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", block, re.M)
            rules[name] = {
                "file": smk.name,
                "conda": conda and (smk.parent / conda.group(1)).resolve(),
                "script": script and (smk.parent / script.group(1)).resolve(),
                "has_run_or_shell": bool(re.search(r"^\s+(run|shell):", block, re.M)),
            }
    return rules


def environment(path: Path) -> tuple[dict[str, str | None], dict]:
    """({package: pinned version or None}, the parsed file) of a conda environment file."""
    env = yaml.safe_load(path.read_text())
    packages: dict[str, str | None] = {}
    for item in env["dependencies"]:
        if isinstance(item, dict):
            for requirement in item.get("pip", []):
                name, _, version = requirement.partition("==")
                packages[name.strip().lower()] = version.strip() or None
        else:
            name = re.split(r"[=<>! ]", item, maxsplit=1)[0]
            packages.setdefault(name.lower(), None)
    return packages, env


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Imported module names; with `top_level_only`, third-party ones only at module level
    (vis4mer modules are always followed: a lazy import of one is still part of the rule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = tree.body
    top = [n for stmt in top for n in ([stmt] + (stmt.body + [h for x in stmt.handlers for h in x.body] if isinstance(stmt, ast.Try) else []))]
    top_ids = {id(node) for node in top}
    names = set()
    for node in ast.walk(tree):
        if top_level_only and id(node) not in top_ids and not _is_vis4mer_import(node):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "vis4mer":  # from vis4mer import atomic, ...
                names.update(f"vis4mer.{alias.name}" for alias in node.names)
    return names


def _is_vis4mer_import(node) -> bool:
    if isinstance(node, ast.Import):
        return all(alias.name.split(".")[0] == "vis4mer" for alias in node.names)
    return isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "vis4mer"


def _vis4mer_file(module: str) -> Path | None:
    parts = module.split(".")
    for candidate in (LIB.joinpath(*parts).with_suffix(".py"), LIB.joinpath(*parts) / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def third_party_imports(script: Path) -> set[str]:
    """Top-level names of the non-stdlib modules a rule script needs."""
    seen: set[Path] = set()
    found: set[str] = set()
    pending = [(script, False)]
    local = {p.stem for p in SCRIPTS.glob("*.py")}
    while pending:
        path, top_only = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path, top_only):
            root = name.split(".")[0]
            if root == "vis4mer":
                for depth in range(1, len(name.split(".")) + 1):  # the package and every parent
                    target = _vis4mer_file(".".join(name.split(".")[:depth]))
                    if target:
                        pending.append((target, True))
            elif root in local:
                pending.append((SCRIPTS / f"{root}.py", False))
            elif root not in sys.stdlib_module_names and root not in {"snakemake", "__future__"}:
                found.add(root)
    return found


RULE_BLOCKS = rule_blocks()


def test_rules_are_found():
    assert {"frames", "features", "train", "evaluate", "aggregate"} <= set(RULE_BLOCKS)


@pytest.mark.parametrize("rule", sorted(RULE_BLOCKS))
def test_every_rule_names_an_environment_that_exists(rule):
    block = RULE_BLOCKS[rule]
    assert block["conda"] is not None, f"rule {rule} ({block['file']}) has no conda: environment"
    assert block["conda"].exists(), f"rule {rule}: {block['conda']} does not exist"
    assert block["conda"].parent == REPO / "envs"


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_environment_pins_match_requirements(path):
    pins = base_pins()
    packages, env = environment(path)
    assert env.get("name", "").startswith("vis4mer-"), "name: vis4mer-<group>"
    assert env["channels"] and "nodefaults" in env["channels"]
    assert "python=3.11" in env["dependencies"]
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    for requirement in pip:
        assert "==" in requirement, f"{path.name}: {requirement} is not pinned"
        name, version = requirement.split("==")
        assert name.lower() in pins, f"{path.name}: {name} is not in requirements/base.txt"
        assert pins[name.lower()] == version, f"{path.name}: {requirement} differs from requirements/base.txt ({pins[name.lower()]})"
    assert len({r.split("==")[0].lower() for r in pip}) == len(pip), f"{path.name}: a package is listed twice"


def test_every_environment_is_used():
    used = {block["conda"] for block in RULE_BLOCKS.values()}
    assert {p.resolve() for p in ENV_FILES} == used


def test_one_environment_per_group_of_rules():
    """download, decoding + ViT features, Video Swin features, and the model rules."""
    groups = {
        "download.yaml": {"download"},
        "video.yaml": {"demo_videos", "frames", "features"},
        "swin.yaml": {"features_swin"},
        "train.yaml": {"train", "evaluate", "confusion_plot", "aggregate"},
    }
    for env_file, rules in groups.items():
        for rule in rules & set(RULE_BLOCKS):
            assert RULE_BLOCKS[rule]["conda"].name == env_file, f"rule {rule} should use envs/{env_file}"


@pytest.mark.parametrize("rule", sorted(r for r, b in RULE_BLOCKS.items() if b["script"]))
def test_environment_has_what_the_rule_script_imports(rule):
    block = RULE_BLOCKS[rule]
    packages, _ = environment(block["conda"])
    needed = {DISTRIBUTIONS.get(name, name).lower().replace("_", "-") for name in third_party_imports(block["script"])}
    needed = {PROVIDED_BY.get(name, name) for name in needed}
    missing = sorted(needed - set(packages))
    assert not missing, f"rule {rule}: {block['conda'].name} lacks {missing} (imported by {block['script'].name} or vis4mer)"


def test_import_scan_sees_library_imports():
    """The scan follows vis4mer modules: the train script needs torch, h5py and matplotlib."""
    needed = third_party_imports(SCRIPTS / "train.py")
    assert {"torch", "h5py", "matplotlib", "numpy", "scipy", "tqdm"} <= needed
