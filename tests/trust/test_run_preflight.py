"""3: ``vitbench run`` without --smoke on data that is not the task's declared data says so before computing (one
line on stderr) and refuses; with --smoke it says the result is a smoke record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchmarks.catalog import DataIdentity, get_task
from benchmarks.cli import main
from benchmarks.data.imagefolder import synth_imagefolder
from benchmarks.runner import preflight_track
from methods.errors import VitbenchError


def test_paper_run_on_synthetic_data_is_refused_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = synth_imagefolder(tmp_path / "data")
    out = tmp_path / "results"
    rc = main(["run", "--method", "dino:vits16", "--task", "knn", "--data", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "imagenet-1k" in err and "--smoke" in err
    assert not out.exists()


def test_preflight_lines(tmp_path: Path) -> None:
    data = synth_imagefolder(tmp_path / "data", n_classes=3, n_train=2, n_val=1)
    spec = get_task("knn")
    assert preflight_track(spec, data, smoke=True) is None
    with pytest.raises(VitbenchError, match="3 classes"):
        preflight_track(spec, data, smoke=False)
    tiny = dataclasses.replace(spec, data=DataIdentity("tiny", {"train": 6, "val": 3}, n_classes=3))
    assert "track: paper" in (preflight_track(tiny, data, smoke=False) or "")
    wrong = dataclasses.replace(spec, data=DataIdentity("tiny", {"train": 7, "val": 3}, n_classes=3))
    with pytest.raises(VitbenchError, match="6 images"):
        preflight_track(wrong, data, smoke=False)
