"""The light install: without torch, timm, numpy, PIL, tqdm (the ``run`` extra), the leaderboard side works and
``vitbench run`` says which extra to install.

The CLI runs in a fresh interpreter whose import system refuses every module of the ``run`` extra, as a venv made
by ``pip install -e .`` would (the README measures that venv for real)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_LIGHT = """
import importlib.abc, sys
HEAVY = {"torch", "torchvision", "timm", "safetensors", "numpy", "PIL", "tqdm", "torchmetrics", "pandas"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from benchmarks.cli import main
rc = main(sys.argv[1:])
assert not HEAVY & set(sys.modules), sorted(HEAVY & set(sys.modules))
sys.exit(rc)
"""


def _light(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _LIGHT, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_listing_commands_run_without_torch() -> None:
    tasks = _light("tasks", "--json")
    assert tasks.returncode == 0, tasks.stderr[-800:]
    assert "knn" in {t["name"] for t in json.loads(tasks.stdout)}
    methods = _light("methods", "--json")
    assert methods.returncode == 0, methods.stderr[-800:]
    assert {"dino", "mae"} <= {m["name"] for m in json.loads(methods.stdout)}


def test_leaderboard_validate_compare_run_without_torch(tmp_path: Path) -> None:
    site = _light("leaderboard", "--results", str(ROOT / "results"), "--out", str(tmp_path / "site"), "--quiet")
    assert site.returncode == 0, site.stderr[-800:]
    assert (tmp_path / "site" / "index.html").is_file()
    records = sorted(str(p) for p in (ROOT / "results" / "runs").rglob("*.json"))[:3]
    assert records, "no committed records to validate"
    valid = _light("validate", *records)
    assert valid.returncode == 0 and valid.stdout.count("ok: ") == len(records), valid.stderr[-800:]
    compare = _light("compare", "--results", str(ROOT / "results"), "--format", "csv")
    assert compare.returncode == 0 and compare.stdout.startswith("task,"), compare.stderr[-800:]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--method", "dino", "--task", "knn", "--data", ".", "--weights", "random", "--smoke"],
        ["data", "synth", "imagefolder", "--out", "unused"],
        ["inspect-weights", "--method", "dino", "--weights", "x.pth"],
    ],
)
def test_model_commands_name_the_extra(argv: list[str]) -> None:
    proc = _light(*argv)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-800:]
    assert "needs the 'run' extra" in lines[0] and "pip install -e '.[run]'" in lines[0] and "torch" in lines[0]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```bash\n")[1:3]
    return [b.split("\n```", 1)[0].strip() for b in blocks]


def test_readme_first_command_is_the_light_install_and_ci_runs_the_second_verbatim() -> None:
    first, second = _readme_commands()
    assert "pip install -q -e . " in first and "torch" not in first and first.endswith("vitbench leaderboard")
    assert '".[test]"' in second and "pytest" in second
    assert second in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
