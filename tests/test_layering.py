"""The packages import one way, read from the source with `ast` (so imports inside functions and under
`TYPE_CHECKING` count too): `collector` and `storage` import nothing of ours, `rules` only `collector`,
`reports` no `ictwatch`; and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("collector", "rules", "storage", "reports", "ictwatch")
MAY_IMPORT = {
    "collector": set(),
    "storage": set(),
    "rules": {"collector"},
    "reports": {"collector", "rules", "storage"},
    "ictwatch": {"collector", "rules", "storage", "reports"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module of ours that `path` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import (the project's are absolute)"
            base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from collector.packet import dns`
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {_module(p): p for p in files}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


GRAPH = _graph()


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_packages_below_it(package):
    wrong = sorted(f"{module} imports {target}" for module, targets in GRAPH.items()
                   if module.split(".")[0] == package for target in targets
                   if target.split(".")[0] not in MAY_IMPORT[package] | {package})
    assert wrong == []


def test_no_module_imports_itself_back():
    """Tarjan's strongly connected components over the module graph: each must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_graph_is_read_from_the_source():
    """The reader sees the imports it must: checked by hand against the files."""
    assert "collector.packet.flows" in GRAPH["collector.packet.packets"]
    assert "rules.engine" in GRAPH["ictwatch.settings"]
    assert GRAPH["collector.observation"] == set()
