"""Task presets: one registered task per cell of a paper's table (torch-free: the catalogue, the gate, the
leaderboard's grouping). BigEarthNet's cells {S1+S2, S2, S1} x {100 %, 1 %} are the real case; the runs themselves
are in ``test_bigearthnet.py`` (marker ``geo``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks.catalog import BIGEARTHNET_V1_19, TaskSpec, get_task, list_tasks, preset_task, task
from benchmarks.records import load_record
from benchmarks.validate import validate_record
from leaderboard.collect import find_task, group_records, load_records
from tests.leaderboard.factory import make_record, toy_task, write_records

CELLS = {
    "bigearthnet-linear": ("s1s2", 1.0),
    "bigearthnet-linear-s2": ("s2", 1.0),
    "bigearthnet-linear-s1": ("s1", 1.0),
    "bigearthnet-linear-1pct": ("s1s2", 0.01),
    "bigearthnet-linear-s2-1pct": ("s2", 0.01),
    "bigearthnet-linear-s1-1pct": ("s1", 0.01),
}
CELLS |= {t.replace("linear", "finetune"): cell for t, cell in CELLS.items()}


def test_every_cell_is_a_task_with_its_own_protocol() -> None:
    assert set(CELLS) <= set(list_tasks(runnable_only=True))
    hashes = set()
    for task_id, (modality, fraction) in CELLS.items():
        spec = get_task(task_id)
        for smoke in (False, True):
            p = spec.protocol_for(smoke)
            assert (p.modality, p.label_fraction) == (modality, fraction)  # type: ignore[attr-defined]
            hashes.add(p.hash())
        assert spec.data is BIGEARTHNET_V1_19  # every cell reads the same data
        assert spec.describe()["preset"] == {"modality": modality, "label_fraction": fraction}
    assert len(hashes) == 2 * len(CELLS)  # no two cells, tracks, or tasks share a registered protocol


def test_smoke_setting_applies_under_the_preset_and_set_wins_over_it() -> None:
    spec = get_task("bigearthnet-linear-s2-1pct")
    smoke = spec.protocol_for(True)
    assert smoke.resolution == 32 and smoke.modality == "s2"  # type: ignore[attr-defined]
    over = spec.protocol_for(False, {"modality": "s1", "epochs": "3"})
    assert (over.modality, over.label_fraction, over.epochs) == ("s1", 0.01, 3)  # type: ignore[attr-defined]
    # ... and that is another cell's registered protocol, which the runner points at.
    assert preset_task(spec, over.replace(epochs=100), smoke=False) == "bigearthnet-linear-s1-1pct"
    assert preset_task(spec, over, smoke=False) is None
    linear = get_task("bigearthnet-linear")
    assert preset_task(linear, linear.protocol_for(True, {"label_fraction": 0.01}), True) == "bigearthnet-linear-1pct"
    assert preset_task(linear, linear.protocol_for(True), True) is None  # itself


def test_preset_is_checked_when_registered() -> None:
    base = toy_task("toy-preset")
    with pytest.raises(ValueError, match="toy-preset: preset: --set kk: not a field of protocol toy-knn"):
        task(dataclasses.replace(base, preset={"kk": 3}))
    with pytest.raises(ValueError, match=r"toy-preset: preset: --set k='many': expected int"):
        task(dataclasses.replace(base, preset={"k": "many"}))
    with pytest.raises(ValueError, match="toy-preset: a preset needs a protocol"):
        task(TaskSpec("toy-preset", "t", "other", "top1", base.metrics, preset={"k": 3}))
    spec = dataclasses.replace(base, preset={"k": 5})
    assert spec.protocol_for(False).k == 5 and spec.protocol_for(False, {"k": 7}).k == 7  # type: ignore[attr-defined]


def _paper_record(task_id: str, **changes: object) -> dict:
    """A paper-track record of ``task_id`` as the harness writes it: the full split sizes whatever the fraction."""
    spec = get_task(task_id)
    rec = make_record(
        task=task_id,
        method="dino-mm",
        variant="vits8",
        metrics={"val_mAP_micro": 80.0, "val_mAP_micro_batchavg": 81.0, "test_mAP_macro": 60.0},
        protocol=spec.protocol_for(False).info().model_dump(),
    )
    ident = BIGEARTHNET_V1_19
    rec["dataset"] = {
        "name": "bigearthnet",
        "split": "train->val,test",
        "fingerprint": "0123456789abcdef",
        "n_samples": ident.splits["val"],
        "splits": dict(ident.splits),
        "n_classes": ident.n_classes,
        "classes_sha256": ident.classes_sha256,
    }
    return {**rec, **changes}


def test_each_cell_validates_and_is_its_own_leaderboard_row(tmp_path: Path) -> None:
    paths = write_records(tmp_path, [_paper_record(t) for t in CELLS])
    for path in paths:
        rel = path.relative_to(tmp_path)
        assert validate_record(load_record(path), rel) is None, rel
    assert len({p.parent for p in paths}) == len(CELLS)  # one record path per cell
    recs = load_records(tmp_path)
    assert not recs.rejected
    groups = group_records(recs, {t: find_task(t) for t in CELLS})
    assert sorted(g.task for g in groups) == sorted(CELLS)
    assert {g.status for g in groups} == {"current"}  # every cell is ranked, none shown apart as an override


def test_a_cell_filed_under_another_task_is_refused(tmp_path: Path) -> None:
    s2 = _paper_record("bigearthnet-linear-s2")
    (path,) = write_records(tmp_path, [{**s2, "task": "bigearthnet-linear"}])
    problem = validate_record(load_record(path), path.relative_to(tmp_path))
    assert problem is not None and problem.endswith("(config differs in: modality)")
    # Other data than the task's is refused for a 1 % cell as for the others.
    small = _paper_record("bigearthnet-linear-1pct")
    small["dataset"] = {**small["dataset"], "splits": {**small["dataset"]["splits"], "train": 2697}}
    (path,) = write_records(tmp_path / "other", [small])
    problem = validate_record(load_record(path), path.relative_to(tmp_path / "other"))
    assert problem is not None and "dataset.splits.train: 2697, but task bigearthnet-linear-1pct" in problem


def test_tasks_json_lists_the_presets(capsys: pytest.CaptureFixture) -> None:
    from benchmarks.cli import main

    assert main(["tasks", "--json"]) == 0
    tasks = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert tasks["bigearthnet-finetune-s1-1pct"]["preset"] == {"modality": "s1", "label_fraction": 0.01}
    assert tasks["knn"]["preset"] == {}
