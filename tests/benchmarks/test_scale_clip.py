"""DualCoOp prompt learning (``coco-zsl``) under torchrun (2 gloo processes) against one process, through the CLI on
``vitbench data synth coco-multilabel`` with the clip tests' tiny random CLIP. Marked ``clip`` only (it needs
open_clip): ``.ci/run`` runs ``-m clip`` after installing the clip extra (``-m scale`` runs before that)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.test_scale import ROOT, _env

pytestmark = pytest.mark.clip
pytest.importorskip("open_clip", reason="the clip extra (open_clip) is not installed")

SCRIPT = str(Path(__file__).with_name("_tiny_clip_cli.py"))


def _run(data: Path, out: Path, cache: Path, torchrun: int = 0) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torchrun)]
    args = ["run", "--method", "dualcoop:rn50", "--task", "coco-zsl", "--data", str(data), "--weights", "random"]
    cmd = [*(launch if torchrun else [sys.executable]), SCRIPT, *args, "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(cache, 1), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_torchrun_zero_shot_prompts_equal_one_process(tmp_path: Path) -> None:
    """Each rank extracts half of every split's region features; every rank draws the same batches (and class
    subsets), takes every other image of each, and the contexts' gradients are summed over ranks (DualCoOp's loss is
    a sum over known labels), so every epoch's contexts are the one process's up to float summation order.
    Tolerance: 0.1 point on every metric of every epoch, the same selected epoch; ``world_size`` 2 against 1."""
    from benchmarks.synth import synth

    data = synth("coco-multilabel", tmp_path / "data", seed=0)
    one, two = tmp_path / "one", tmp_path / "two"
    _run(data, one, tmp_path / "cache1")
    proc = _run(data, two, tmp_path / "cache2", torchrun=2)
    assert proc.stdout.count("record:") == 1, proc.stdout
    path = Path("runs/coco-zsl/dualcoop/rn50__seed0.json")
    assert [p.relative_to(two) for p in (two / "runs").rglob("*.json")] == [path]
    a, b = (json.loads((o / path).read_text()) for o in (one, two))
    assert a["provenance"]["world_size"] == 1 and b["provenance"]["world_size"] == 2
    assert b["probe"] == a["probe"] and b["dataset"] == a["dataset"]
    assert set(a["metrics"]) == set(b["metrics"]) and "zsl_mAP" in a["metrics"]
    for name, value in a["metrics"].items():
        assert abs(b["metrics"][name] - value) <= 0.1, (name, value, b["metrics"][name])
    history = a["extra"]["history"]
    assert len(history) == len(b["extra"]["history"]) >= 2
    for epoch, (x, y) in enumerate(zip(history, b["extra"]["history"], strict=True)):
        assert x.keys() == y.keys() and all(abs(x[k] - y[k]) <= 0.1 for k in x), (epoch, x, y)
