"""Atomic output files: write to a temporary name next to the target, then rename.

A crash (or a killed Snakemake job) mid-write leaves either no target or the previous
one, never a truncated checkpoint, JSON or PNG that a later step would trust.
`os.replace` is atomic on POSIX when source and target are on the same file system,
which a sibling temporary file guarantees.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds.

        with atomic_path("out/metrics.json") as tmp:
            tmp.write_text(...)

    The temporary name keeps the suffix (``name.tmp-<pid>.json``) so tools that pick a
    format from the extension (matplotlib, torch) still see the right one. On an
    exception the temporary file is removed and the target is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data: Any) -> None:
    """JSON with a trailing newline; NaN/inf are refused (they are not valid JSON)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def torch_save(obj: Any, path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def link_or_copy(source, target) -> None:
    """`target` becomes `source`'s content, atomically: a hard link where possible, else a
    copy (another file system, or no hard links there). An existing `target` is replaced."""
    with atomic_path(target) as tmp:
        tmp.unlink(missing_ok=True)  # left by a killed process of the same id
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
