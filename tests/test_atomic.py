"""Atomic writes: all or nothing, no silent overwrite, ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from twin._util.atomic import atomic_path, write_text_atomic


def test_failed_write_leaves_target_untouched(tmp_path) -> None:
    target = write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_refuses_overwrite_unless_asked(tmp_path) -> None:
    target = write_text_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_text_atomic(target, "new")
    write_text_atomic(target, "new", overwrite=True)
    assert target.read_text() == "new"


def test_written_files_get_umask_permissions(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        target = write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
