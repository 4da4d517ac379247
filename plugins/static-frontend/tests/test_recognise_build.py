"""The static-frontend plugin recognises which editor dialect a build speaks from its scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfytavern_static_frontend.recognise import LATER, SEED, recognise_build
from comfytavern_testing import editor_build, seed_frontend_dist

SEED_DIST = seed_frontend_dist()


@pytest.mark.skipif(SEED_DIST is None, reason="no seed-era editor build (set CT_SEED_FRONTEND to its dist folder)")
def test_the_real_seed_build_is_recognised() -> None:
    assert SEED_DIST is not None and recognise_build(SEED_DIST) == SEED


def test_recognise_build_reads_the_auth_mode_names(tmp_path: Path) -> None:
    assert recognise_build(editor_build(tmp_path / "a", 'if(m==="LocalNoPassword")open()')) == SEED
    assert recognise_build(editor_build(tmp_path / "b", 'const modes=["SingleUser","MultiUser"]')) == LATER
    assert recognise_build(editor_build(tmp_path / "c", "console.log(1)")) is None
    # The marker may live in a lazily loaded chunk rather than the entry module.
    dist = editor_build(tmp_path / "d", "import('./chunk.js')")
    (dist / "assets" / "chunk.js").write_text('x="LocalNoPassword"', encoding="utf-8")
    assert recognise_build(dist) == SEED


def test_a_script_outside_the_build_is_never_read(tmp_path: Path) -> None:
    (tmp_path / "outside.js").write_text('"LocalNoPassword"', encoding="utf-8")
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text('<script src="../outside.js"></script>', encoding="utf-8")
    assert recognise_build(dist) is None
