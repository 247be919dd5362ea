"""The snakemake command lines that README.md and config/*.yaml tell users to type parse, and
their targets stay targets.

`--resources` takes any number of values, so `snakemake --cores 8 --resources gpu=4
results/lvu/all.json` reads the target as a resource and dies with a bare ValueError; every
documented command must put `--` before its targets (or the targets first).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from snakemake.cli import get_argument_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "config").glob("*.yaml"))]


def documented_commands() -> list[tuple[str, str]]:
    commands = []
    for path in DOCS:
        for line in path.read_text().splitlines():
            text = re.sub(r"^\s*#\s*", "", line) if path.suffix == ".yaml" else line
            text = text.split("  #")[0].strip().strip("`")
            if text.startswith("snakemake ") and "--resources" in text:
                commands.append((f"{path.name}: {text}", text))
    return commands


COMMANDS = documented_commands()


def test_commands_are_found():
    assert len(COMMANDS) >= 5, COMMANDS


@pytest.mark.parametrize("command", [c for _, c in COMMANDS], ids=[i for i, _ in COMMANDS])
def test_documented_command_parses_with_its_targets(command):
    words = shlex.split(command)[1:]
    targets = [w for w in words if w.startswith("results/")]
    args = get_argument_parser().parse_args(words)  # raises ValueError on a swallowed target
    assert list(args.targets) == targets
