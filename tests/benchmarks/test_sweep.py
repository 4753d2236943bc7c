"""``vitbench sweep`` plans the grid, skips finished cells, and runs the rest through submitit's local executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.runner import RunRequest
from benchmarks.sweep import plan
from methods.errors import UnknownNameError


def test_plan_skips_existing_records(tmp_path: Path) -> None:
    base = RunRequest(method="", task="", data=tmp_path, out=tmp_path, smoke=True)
    cells = plan(base, ["dino", "selfpatch"], ["knn", "linear"], [0, 1])
    assert len(cells) == 8 and cells[0].method == "dino:vits16"
    done = tmp_path / "runs" / "knn" / "dino" / "vits16__seed1.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")  # not a record: the cell is still to run
    assert len(plan(base, ["dino", "selfpatch"], ["knn", "linear"], [0, 1])) == 8
    done.write_text(
        (Path(__file__).parents[2] / "results/runs/knn/dino/vits16__seed0.json")
        .read_text()
        .replace('"seed": 0', '"seed": 1')
    )
    assert len(plan(base, ["dino", "selfpatch"], ["knn", "linear"], [0, 1])) == 7
    with pytest.raises(UnknownNameError):
        plan(base, ["dino:vit99"], ["knn"], [0])


@pytest.mark.slow
def test_sweep_runs_through_submitit_local(imagefolder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [
        "sweep",
        "--methods",
        "dino",
        "--tasks",
        "knn",
        "--seeds",
        "0",
        "1",
        "--data",
        str(imagefolder),
        "--weights",
        "random",
        "--smoke",
        "--out",
        str(tmp_path),
        "--executor",
        "local",
    ]
    assert main(argv) == 0
    records = sorted((tmp_path / "runs" / "knn" / "dino").glob("*.json"))
    assert [r.name for r in records] == ["vits16__seed0.json", "vits16__seed1.json"]
    assert {json.loads(r.read_text())["seed"] for r in records} == {0, 1}
    assert main(argv) == 0 and "0 of 2 cells to run" in capsys.readouterr().out
