"""The microkernel's boundaries, read from the source: the kernel imports no plugin, library or
node pack; a plugin or node pack imports the kernel and libraries, never another plugin or pack."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _packages(group: str) -> dict[str, Path]:
    return {d.name: d for d in ROOT.glob(f"{group}/*/src/*") if d.is_dir() and (d / "__init__.py").exists()}


def _imported(folder: Path) -> set[tuple[str, str]]:
    """``(file, top-level module)`` for every import in ``folder``'s Python files."""
    found: set[tuple[str, str]] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update((str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


PLUGINS = {**_packages("plugins"), **_packages("node_packs")}
LIBRARIES = _packages("libs")


def test_the_kernel_imports_no_plugin_library_or_pack() -> None:
    outside = set(PLUGINS) | set(LIBRARIES)
    bad = sorted((f, m) for f, m in _imported(ROOT / "kernel" / "src") if m in outside)
    assert bad == []


def test_no_plugin_or_pack_imports_another() -> None:
    assert len(PLUGINS) > 10  # the layout is what this test expects
    bad = sorted(
        (f, m) for name, folder in PLUGINS.items() for f, m in _imported(folder) if m in PLUGINS and m != name
    )
    assert bad == []
