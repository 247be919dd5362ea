"""Atomic output files: write to a temporary name next to the target, then rename.

A crash (or a killed Snakemake job) mid-write leaves either no target or the previous
one, never a truncated checkpoint, JSON or PNG that a later step would trust.
`os.replace` is atomic on POSIX when source and target are on the same file system,
which a sibling temporary file guarantees.

Temporary names end in ``.tmp-<pid>`` (before the suffix: ``best.tmp-4242.pt``; HDF5
shards, vis4mer.shards: ``shard_0001.h5.tmp-4242``). The large ones a killed process left
(a checkpoint's, a shard's) are removed by the next write of the same target
(:func:`remove_stale_temporaries`: their process no longer runs on this machine). Where the size of what is written is known (a checkpoint's
tensors, a shard's arrays), the free space is checked first (:func:`check_free_space`), so a
full disk stops the job with ``No space left on <dir>: need X, have Y`` rather than with
h5py's SIGSEGV or torch's ``unexpected pos``; the temporary file is removed either way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)
SPACE_MARGIN_BYTES = 16 * 2**20  # file-format overhead and the file system's own needs, beyond the payload


class NoSpaceError(OSError):
    """Not enough free space for a file; the message names the folder, the need and the free space."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def no_space(path, need_bytes: int) -> NoSpaceError:
    """The NoSpaceError for writing `need_bytes` to `path` (its folder's free space now)."""
    folder = Path(path).parent
    have = shutil.disk_usage(folder).free
    return NoSpaceError(
        errno.ENOSPC,
        f"No space left on {folder}: need {human_bytes(need_bytes)}, have {human_bytes(have)} (writing {Path(path).name}); "
        "free some space or point results/ to a larger disk",
    )


def check_free_space(path, need_bytes: int) -> None:
    """Raise NoSpaceError unless `path`'s folder has `need_bytes` + SPACE_MARGIN_BYTES free."""
    if shutil.disk_usage(Path(path).parent).free < need_bytes + SPACE_MARGIN_BYTES:
        raise no_space(path, need_bytes + SPACE_MARGIN_BYTES)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporary files of `path` (``<stem>.tmp-<pid><suffix>``, ``<name>.tmp-<pid>``)
    whose process no longer runs; returns them. Those of running processes are kept."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"(?:{re.escape(path.stem)}\.tmp-(\d+){re.escape(path.suffix)}|{re.escape(path.name)}\.tmp-(\d+))")
    removed = []
    for entry in path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and int(match.group(1) or match.group(2)) != os.getpid() and not _process_runs(int(match.group(1) or match.group(2))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        logger.warning("removed temporary files of processes that no longer run: %s", ", ".join(map(str, removed)))
    return removed


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


def tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in `obj` (nested dicts, lists, tuples): what torch.save writes, less its small overhead."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(value) for value in obj)
    return 0


def torch_save(obj: Any, path) -> None:
    """torch.save, atomically, after checking the free space for its tensors (NoSpaceError)."""
    import torch

    need = tensor_bytes(obj)
    with atomic_path(path) as tmp:
        remove_stale_temporaries(path)
        check_free_space(path, need)
        try:
            torch.save(obj, tmp)
        except (OSError, RuntimeError) as error:  # a full disk mid-write: torch's "unexpected pos", or ENOSPC
            if shutil.disk_usage(Path(path).parent).free < need + SPACE_MARGIN_BYTES:
                raise no_space(path, need + SPACE_MARGIN_BYTES) from error
            raise


def link_or_copy(source, target) -> None:
    """`target` becomes `source`'s content, atomically: a hard link where possible, else a
    copy (another file system, or no hard links there). An existing `target` is replaced."""
    with atomic_path(target) as tmp:
        tmp.unlink(missing_ok=True)  # left by a killed process of the same id
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
