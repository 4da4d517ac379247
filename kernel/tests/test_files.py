"""The one atomic file writer every plugin uses."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from comfytavern.files import TEMP_PREFIX, sweep_temp_files, write_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_write_atomic_modes(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    write_atomic(secret, b"s3cret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    shared = tmp_path / "shared"
    write_atomic(shared, b"x", mode=0o644)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    write_atomic(target, b"old")

    with pytest.raises(TypeError):
        write_atomic(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_sweep_removes_only_old_temp_files(tmp_path: Path) -> None:
    old = tmp_path / f"{TEMP_PREFIX}old.part"
    fresh = tmp_path / f"{TEMP_PREFIX}fresh.part"
    keep = tmp_path / "doc.json"
    for p in (old, fresh, keep):
        p.write_bytes(b"x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert sweep_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, keep.name])
