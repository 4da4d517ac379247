"""The kernel's import graph has no circles.

Every import counts, at module level or deferred inside a function (a deferred import only hides a
circle), except those under ``if TYPE_CHECKING:`` (never run). Importing ``a.b.c`` also imports the
package ``a.b``, so a subpackage's ``__init__`` is an edge too (the root package is not: every
module imports it first).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "comfytavern"


def _modules(src: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in (src / package).rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (outside ``TYPE_CHECKING``)."""
    modules = _modules(src, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    targets.append(sub if sub in modules else origin)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if not target:
                    continue
                deps.add(target)
                parent = target.rpartition(".")[0]
                while parent and parent != package:
                    if parent in modules and not name.startswith(parent + "."):
                        deps.add(parent)
                    parent = parent.rpartition(".")[0]
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_kernel_has_no_import_cycles() -> None:
    graph = import_graph(SRC, ROOT)
    assert len(graph) > 50 and "comfytavern.kernel" in graph
    assert cycles(graph) == []


def test_the_detector_finds_deferred_and_package_cycles(tmp_path: Path) -> None:
    pkg = tmp_path / "demo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "a.py").write_text("def f():\n    from demo import b\n", encoding="utf-8")
    (pkg / "b.py").write_text("from demo.a import f\n", encoding="utf-8")
    (pkg / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from demo import hinted\n", encoding="utf-8"
    )
    (pkg / "hinted.py").write_text("from . import typed\n", encoding="utf-8")
    (pkg / "sub" / "__init__.py").write_text("from demo.sub.x import X\n", encoding="utf-8")
    (pkg / "sub" / "x.py").write_text("X = 1\n", encoding="utf-8")
    (pkg / "user.py").write_text("from demo.sub.x import X\n", encoding="utf-8")
    (pkg / "sub" / "y.py").write_text("from demo import user\n", encoding="utf-8")
    (pkg / "sub" / "__init__.py").write_text("from demo.sub.x import X\nfrom demo.sub import y\n", encoding="utf-8")
    found = cycles(import_graph(tmp_path, "demo"))
    assert ["demo.a", "demo.b"] in found  # a deferred import is still a circle
    assert not any("demo.typed" in c for c in found)  # TYPE_CHECKING-only imports are not
    assert ["demo.sub", "demo.sub.y", "demo.user"] in found  # through a subpackage __init__
