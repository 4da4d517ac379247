"""A writer killed with SIGKILL in the middle of saving leaves the old or the new workflow, never
a torn file, and never two files with the same id (real subprocess, real files)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from comfytavern_storage_files import FileProjectStore

SIZE = 1_500_000
WRITER = r"""
import sys
import anyio
from pathlib import Path
from comfytavern_storage_files import FileProjectStore

SIZE = int(sys.argv[2])
store = FileProjectStore(Path(sys.argv[1]))


async def main() -> None:
    n = 0
    while True:
        n += 1
        odd = n % 2 == 1
        change = lambda d, n=n, odd=odd: {**d, "round": n, "name": "w" if odd else "w renamed",
                                          "payload": ("A" if odd else "B") * SIZE}
        await store.update_workflow("u", "p", "wf", change)
        if n == 2:
            print("ready", flush=True)


anyio.run(main)
"""


def check_consistent(root: Path) -> dict:
    folder = root / "u" / "p" / "workflows"
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert len(files) == 1, files
    doc = json.loads((folder / files[0]).read_text("utf-8"))  # a torn file would not parse
    expected = ("A" if doc["round"] % 2 == 1 else "B") * SIZE
    assert doc["payload"] == expected, "payload and round come from one write"

    async def reopen() -> tuple[list, dict | None]:
        store = FileProjectStore(root)
        await store.open()
        return await store.list_workflows("u", "p"), await store.get_workflow("u", "p", "wf")

    listed, loaded = anyio.run(reopen)
    assert [s.id for s in listed] == ["wf"] and loaded == doc
    return doc


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_writer_leaves_old_or_new_file(tmp_path: Path) -> None:
    root = tmp_path / "projects"

    async def setup() -> None:
        store = FileProjectStore(root)
        await store.open()
        await store.create_project("u", "p", {"id": "p", "name": "p"})
        await store.create_workflow("u", "p", {"id": "wf", "name": "w", "round": 1, "payload": "A" * SIZE})

    anyio.run(setup)
    rng = random.Random(1234)
    rounds_seen = set()
    for _ in range(6):
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(SIZE)], stdout=subprocess.PIPE, text=True
        ) as proc:
            try:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
                time.sleep(rng.uniform(0.0, 0.15))
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        rounds_seen.add(check_consistent(root)["round"])
    assert len(rounds_seen) > 1, "the writer made progress between kills"
