"""The committed smoke records are reproduced exactly: the probe engine did not move a single-label number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.runner import RunRequest, run
from benchmarks.synth import synth

RUNS = Path(__file__).resolve().parents[2] / "results" / "runs"
COMMITTED = sorted(p for task in ("knn", "linear") for p in (RUNS / task).glob("*/*.json"))


@pytest.mark.slow
@pytest.mark.parametrize("path", COMMITTED, ids=[f"{p.parts[-3]}:{p.parts[-2]}" for p in COMMITTED])
def test_committed_record_is_reproduced(path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    old = json.loads(path.read_text())
    assert old["weights"]["source"] == "random" and old["track"] == "smoke"
    data = synth("imagefolder", tmp_path_factory.mktemp("synth-imagefolder"), seed=0)
    out = tmp_path_factory.mktemp("out")
    _, new = run(
        RunRequest(
            method=f"{old['method']}:{old['variant']}",
            task=old["task"],
            data=data,
            weights="random",
            seed=old["seed"],
            out=out,
            smoke=True,
            progress=False,
            command="pytest",
        )
    )
    assert new is not None
    assert new.dataset.fingerprint == old["dataset"]["fingerprint"], "the synthetic set itself changed"
    assert new.protocol.hash == old["protocol"]["hash"]
    assert new.metrics == old["metrics"]
    assert json.loads(new.model_dump_json())["probe"] == old["probe"]
