"""vis4mer.atomic.link_or_copy: the one hard-link-or-copy of the resume state and the download mirrors."""

from __future__ import annotations

import os

from vis4mer.atomic import link_or_copy


def test_link_where_possible_replacing_the_target(tmp_path):
    source, target = tmp_path / "source.pt", tmp_path / "deeper" / "target.pt"
    source.write_bytes(b"new")
    target.parent.mkdir()
    target.write_bytes(b"old")
    link_or_copy(source, target)
    assert target.read_bytes() == b"new" and target.stat().st_ino == source.stat().st_ino
    assert sorted(p.name for p in target.parent.iterdir()) == ["target.pt"]  # no temporary left


def test_copy_where_linking_fails(tmp_path, monkeypatch):
    def no_link(source, target):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    source, target = tmp_path / "source.mp4", tmp_path / "new" / "target.mp4"
    source.write_bytes(b"video")
    link_or_copy(source, target)  # the target's directory is made
    assert target.read_bytes() == b"video" and target.stat().st_ino != source.stat().st_ino
    assert sorted(p.name for p in target.parent.iterdir()) == ["target.mp4"]


def _free(monkeypatch, free_bytes):
    """shutil.disk_usage as on a disk with `free_bytes` free (no disk is filled)."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - free_bytes, free_bytes))


def test_a_checkpoint_that_does_not_fit_fails_before_writing_naming_the_space(tmp_path, monkeypatch):
    import pytest
    import torch

    from vis4mer.atomic import NoSpaceError, torch_save

    _free(monkeypatch, 5 * 10**6)
    target = tmp_path / "run" / "best.pt"
    with pytest.raises(NoSpaceError, match=rf"No space left on {tmp_path / 'run'}: need 20.78 MB, have 5.00 MB \(writing best.pt\)"):
        torch_save({"model": {"w": torch.zeros(1000, 1000)}}, target)  # 4 MB of tensors + the 16 MiB margin
    assert list(target.parent.iterdir()) == []  # nothing written, no temporary file


def test_a_full_disk_mid_write_is_reported_and_leaves_no_temporary(tmp_path, monkeypatch):
    import pytest
    import torch

    from vis4mer import atomic

    def full(obj, path):
        open(path, "wb").write(b"partial")
        _free(monkeypatch, 0)  # the disk filled up meanwhile
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(atomic.NoSpaceError, match="No space left on .*: need 16.78 MB, have 0 B") as error:
        atomic.torch_save({"w": torch.zeros(1)}, tmp_path / "last.pt")
    assert "unexpected pos" in str(error.value.__cause__)
    assert list(tmp_path.iterdir()) == []


def test_a_shard_array_that_does_not_fit_fails_and_removes_the_temporary(tmp_path, monkeypatch):
    import numpy as np
    import pytest

    from vis4mer.atomic import NoSpaceError
    from vis4mer.shards import ShardWriter

    _free(monkeypatch, 20 * 2**20)  # room for 4 MiB of frames, not for 8
    with pytest.raises(NoSpaceError, match=rf"No space left on {tmp_path}: need 25.17 MB, have 20.97 MB \(writing shard_0000.h5.tmp-{os.getpid()}\)"):
        with ShardWriter(tmp_path / "shard_0000.h5", "frames") as shard:
            shard.add("small", np.zeros((4, 1024, 1024), np.uint8))
            shard.add("large", np.zeros((8, 1024, 1024), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_processes_that_no_longer_run_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    import torch

    from vis4mer.atomic import torch_save
    from vis4mer.shards import ShardWriter

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    alive = os.getppid()  # this test's parent process: running
    for name in (f"last.tmp-{dead}.pt", f"last.tmp-{alive}.pt", f"shard_0001.h5.tmp-{dead}", f"best.tmp-{dead}.pt"):
        (tmp_path / name).write_bytes(b"left by a killed job")
    torch_save({"w": torch.zeros(2)}, tmp_path / "last.pt")
    with ShardWriter(tmp_path / "shard_0001.h5", "frames"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["last.pt", f"last.tmp-{alive}.pt", "shard_0001.h5", f"best.tmp-{dead}.pt"]  # a running process's and another target's stay
    )
