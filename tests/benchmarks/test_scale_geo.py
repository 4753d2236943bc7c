"""``bigearthnet-linear`` under torchrun (2 gloo processes) against one process, through the real CLI on
``vitbench data synth bigearthnet``. Marked ``geo`` only (it needs torchgeo): ``.ci/run`` runs ``-m geo`` after
installing the geo extra, so this is where the BigEarthNet DDP test lives (``-m scale`` runs before that)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.test_scale import _vitbench

pytestmark = pytest.mark.geo


def _cli(data: Path, out: Path) -> list[str]:
    run = ["run", "--method", "dino-mm", "--task", "bigearthnet-linear", "--data", str(data), "--weights", "random"]
    return [*run, "--smoke", "--out", str(out)]


def _record(out: Path) -> dict:
    return json.loads((out / "runs" / "bigearthnet-linear" / "dino-mm" / "vits8__seed0.json").read_text())


def test_torchrun_bigearthnet_linear_equals_one_process(tmp_path: Path) -> None:
    """Each rank extracts half of train, val and test (14 bands through DINO-MM's order and scaling); the BCE head
    trains under DDP with the multi-label loss weighted by the global count of known labels; rank 0 alone writes the
    record. Tolerance: 0.1 point on every val / test metric (micro / macro mAP, F1; on this data they are identical),
    ``world_size`` 2 against 1."""
    from benchmarks.synth import synth

    data = synth("bigearthnet", tmp_path / "data", seed=0)
    one, two = tmp_path / "one", tmp_path / "two"
    _vitbench(_cli(data, one), tmp_path / "cache1", threads=1)
    proc = _vitbench(_cli(data, two), tmp_path / "cache2", torchrun=2, threads=1)
    assert proc.stdout.count("record:") == 1, proc.stdout
    a, b = _record(one), _record(two)
    assert a["provenance"]["world_size"] == 1 and b["provenance"]["world_size"] == 2
    assert b["probe"] == a["probe"] and b["dataset"] == a["dataset"]
    assert list((two / "runs").rglob("*.json")) == [
        two / "runs" / "bigearthnet-linear" / "dino-mm" / "vits8__seed0.json"
    ]
    assert {"val_mAP_micro", "val_mAP_macro", "test_mAP_micro", "test_F1_macro"} <= set(a["metrics"])
    assert set(a["metrics"]) == set(b["metrics"])
    for name, value in a["metrics"].items():
        assert abs(b["metrics"][name] - value) <= 0.1, (name, value, b["metrics"][name])
    feats = sorted(p.name for p in (tmp_path / "cache2" / "features").iterdir())  # shards merged, none left
    assert feats == sorted(p.name for p in (tmp_path / "cache1" / "features").iterdir()) and len(feats) == 3
