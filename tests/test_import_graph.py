"""The packages' module-level import graph has no cycle (imports inside functions and under
TYPE_CHECKING are not run at import time and are not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

from support import REPO

PACKAGES = ("queueserver", "pipeline", "compute")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports at module level."""
    deps = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.parse(path.read_text()).body:
        body = node.body if isinstance(node, ast.Try) else [node]  # an If is TYPE_CHECKING or a guard
        for stmt in body:
            if isinstance(stmt, ast.Import):
                deps.update(a.name for a in stmt.names)
            elif isinstance(stmt, ast.ImportFrom):
                base = ".".join(package[:len(package) - stmt.level + 1] + ([stmt.module] if stmt.module else [])) \
                    if stmt.level else stmt.module
                for alias in stmt.names:
                    sub = f"{base}.{alias.name}"
                    deps.add(sub if sub in mods else base)
    return {d for d in deps if d in mods and d != name}


def test_no_module_level_import_cycles():
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
