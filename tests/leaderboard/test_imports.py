"""What the leaderboard side may import: neither torch nor timm, and no module of ``leaderboard/`` in a cycle.

The read-only commands read the torch-free task catalogue (:mod:`benchmarks.catalog`), never a harness.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "torchvision", "timm"}


def _imported(stderr: str) -> set[str]:
    """Top-level names of every module ``python -X importtime`` reports (``import time: self | cumulative | name``)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "benchmarks.cli", "leaderboard", "--results", "results", "--out", "{tmp}/site", "--quiet"],
        ["-m", "benchmarks.cli", "compare", "--results", "results"],
        ["-m", "benchmarks.cli", "tasks", "--json"],
        ["-m", "benchmarks.cli", "validate", "results/runs/knn/dino/vits16__seed0.json"],
        ["-c", "import leaderboard.build, leaderboard.cli, leaderboard.compare"],
    ],
    ids=["leaderboard", "compare", "tasks", "validate", "package"],
)
def test_commands_import_neither_torch_nor_timm(argv: list[str], tmp_path: Path) -> None:
    cmd = [sys.executable, "-X", "importtime", *(a.format(tmp=tmp_path) for a in argv)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    errors = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))
    assert proc.returncode == 0, errors
    imported = _imported(proc.stderr)
    assert "leaderboard" in imported or "benchmarks" in imported  # the parse found the importtime lines
    assert not imported & HEAVY, f"{' '.join(argv)} imported {sorted(imported & HEAVY)}"


def _leaderboard_imports() -> dict[str, set[str]]:
    """module -> the ``leaderboard.*`` modules it imports, ``TYPE_CHECKING`` and function-level imports included."""
    graph = {}
    for path in sorted((REPO / "leaderboard").glob("*.py")):
        module = "leaderboard" if path.stem == "__init__" else f"leaderboard.{path.stem}"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "leaderboard":
                deps |= {f"leaderboard.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leaderboard."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names if alias.name.startswith("leaderboard.")}
        graph[module] = deps - {module}
    return graph


def test_leaderboard_modules_import_each_other_without_a_cycle() -> None:
    graph = _leaderboard_imports()
    assert "leaderboard.compare" in graph["leaderboard.build"]  # the scan sees imports at all

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        for dep in sorted(graph.get(module, ())):
            if dep in path:
                return [*path[path.index(dep) :], dep]
            found = cycle_from(dep, [*path, dep])
            if found:
                return found
        return None

    for module in graph:
        found = cycle_from(module, [module])
        assert found is None, " -> ".join(found)
