"""Package links point one way (methods -> benchmarks -> leaderboard) and no two modules import each other.

Read from the source with ``ast`` (every import counts: module level, inside functions, under TYPE_CHECKING), so a
new back-link fails here before anyone has to find it in a picture.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("methods", "benchmarks", "leaderboard")  # each may import only the ones before it


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            mod = _module_name(path)
            is_pkg = path.name == "__init__.py"
            found: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                        base = base[: len(base) - node.level + 1]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    found.add(target)
                    found.update(f"{target}.{a.name}" for a in node.names)  # "from pkg import module"
            graph[mod] = {m for m in found if m.split(".")[0] in LAYERS}
    modules = set(graph)
    # Keep only edges to modules that exist (an imported name that is not a module maps to its module).
    return {m: {t if t in modules else t.rpartition(".")[0] for t in ts} & modules - {m} for m, ts in graph.items()}


def test_packages_import_only_downwards() -> None:
    bad = [
        f"{m} -> {t}"
        for m, targets in _imports().items()
        for t in targets
        if LAYERS.index(t.split(".")[0]) > LAYERS.index(m.split(".")[0])
    ]
    assert not bad, "imports pointing up the layers methods -> benchmarks -> leaderboard: " + ", ".join(bad)


def test_no_import_cycles_between_modules() -> None:
    graph = _imports()
    # A package's __init__ re-exporting its own submodules is not a cycle worth breaking.
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    "module",
    ["benchmarks.catalog", "benchmarks.validate", "benchmarks.cli", "benchmarks.runner", "leaderboard.build"],
)
def test_metadata_side_imports_neither_torch_nor_timm(module: str) -> None:
    code = f"import sys, {module}; bad = {{'torch', 'timm'}} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
