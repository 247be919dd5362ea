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
