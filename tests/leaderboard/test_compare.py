"""Grouping, aggregation and the reproduced-vs-reported comparison (what `vitbench compare` prints)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from benchmarks.cli import main
from leaderboard.collect import group_records, load_records
from leaderboard.compare import COLUMNS, assemble, comparison_rows, render
from leaderboard.reported import Tolerances
from leaderboard.table import OUTSIDE, WITHIN, judge
from tests.leaderboard.factory import make_record, small_tasks, toy_protocol, write_records


def _rows(results: Path, **kw) -> dict[tuple[str, str, str, str], dict]:
    lb = assemble(results, task_lookup=small_tasks().get, **kw)
    return {(r["task"], r["method"], r["variant"], r["metric"]): r for r in comparison_rows(lb.tables)}


def test_mean_std_n_over_seeds_and_delta(small: Path) -> None:
    rows = _rows(small)
    dino = rows[("toy-task", "dino", "vits16", "top1")]
    assert dino["n"] == 3 and dino["reproduced"] == pytest.approx(74.5) and dino["std"] == pytest.approx(0.2)
    assert dino["reported"] == 74.5 and dino["delta"] == pytest.approx(0.0) and dino["verdict"] == WITHIN
    sp = rows[("toy-task", "selfpatch", "vits16", "top1")]
    assert sp["delta"] == pytest.approx(74.0 - 76.0) and sp["verdict"] == OUTSIDE and sp["direction"] == "worse"
    assert rows[("toy-task", "mae", "vitb16", "top1")]["verdict"] == "not reproduced"
    assert rows[("toy-task", "dino", "vits16", "top5")]["verdict"] == "no reported"


def test_lower_is_better_metric_is_judged_the_right_way(small: Path) -> None:
    fid = _rows(small)[("toy-gen", "dino", "vits16", "FID")]
    assert fid["delta"] == pytest.approx(1.8) and fid["verdict"] == OUTSIDE and fid["direction"] == "worse"
    assert judge(-2.0, 1.0, higher_better=False) == (OUTSIDE, "better")
    assert judge(1.0, 1.0, higher_better=True) == (WITHIN, "")  # the boundary counts as within
    assert judge(-1.01, 1.0, higher_better=True) == (OUTSIDE, "worse")


def test_tolerance_is_configurable(small: Path) -> None:
    sp = _rows(small, tolerances=Tolerances(default=2.5))[("toy-task", "selfpatch", "vits16", "top1")]
    assert sp["verdict"] == WITHIN and sp["tolerance"] == 2.5


def test_protocol_versions_tracks_and_settings_never_mix(small: Path) -> None:
    lb = assemble(small, task_lookup=small_tasks().get)
    t = lb.tables["toy-task"]
    assert [g.protocol.version for g in t.other] == [1] and [g.method for g in t.other] == ["ibot"]
    assert [g.track for g in t.smoke] == ["smoke"]
    assert all(r.method != "ibot" for r in t.rows)  # neither the v1 nor the smoke group reaches the main table
    setting = next(r for r in t.rows if r.setting == "example-100ep")
    assert setting.group is None and setting.cells["top1"].verdict == "setting"
    assert ("toy-task", "dino", "vits16", "top1") in {
        (r["task"], r["method"], r["variant"], r["metric"]) for r in comparison_rows(lb.tables)
    }
    assert all(r["verdict"] != "setting" for r in comparison_rows(lb.tables))


def test_without_a_harness_the_newest_protocol_is_current(tmp_path: Path) -> None:
    recs = [
        make_record("free", "dino", "vits16", 0, {"top1": 70.0}, protocol=toy_protocol(version=1)),
        make_record("free", "dino", "vits16", 1, {"top1": 75.0}, protocol=toy_protocol(version=3)),
    ]
    write_records(tmp_path, recs)
    groups = group_records(load_records(tmp_path), {})
    status = {g.protocol.version: g.status for g in groups}
    assert status == {1: "other", 3: "current"}


def test_registered_protocol_beats_a_newer_unregistered_one(tmp_path: Path) -> None:
    recs = [
        make_record("toy-task", "dino", "vits16", 0, {"top1": 70.0}, protocol=toy_protocol(version=2)),
        make_record("toy-task", "dino", "vits16", 1, {"top1": 75.0}, protocol=toy_protocol(version=3)),
    ]
    write_records(tmp_path, recs)
    groups = group_records(load_records(tmp_path), small_tasks())
    assert {g.protocol.version: g.status for g in groups} == {2: "current", 3: "other"}


def test_bad_and_misplaced_records_are_rejected_with_a_reason(small: Path) -> None:
    (small / "runs" / "toy-task" / "dino" / "vitb16__seed0.json").write_text("{not json")
    recs = load_records(small)
    reasons = {str(p): msg for p, msg in recs.rejected}
    assert (
        "path: the record says it belongs at runs/toy-task/deit/deits16__seed0.json"
        in reasons["runs/toy-task/deit/wrong-name.json"]
    )
    assert "runs/toy-task/dino/vitb16__seed0.json" in reasons
    assert len(recs.records) == 8


def test_csv_json_md_formats(small: Path) -> None:
    lb = assemble(small, task_lookup=small_tasks().get)
    rows = comparison_rows(lb.tables, method="selfpatch")
    table = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert list(table[0]) == COLUMNS and {"reported", "reproduced", "delta"} <= set(table[0])
    assert [(r["method"], r["reported"], r["reproduced"], r["delta"], r["verdict"]) for r in table] == [
        ("selfpatch", "76.0", "74.0", "-2.0", "outside")
    ]
    assert json.loads(render(rows, "json"))[0]["verdict"] == "outside"
    md = render(rows, "md")
    assert "| OUTSIDE (worse) |" in md and md.count("\n") == 3
    with pytest.raises(ValueError):
        render(rows, "xml")


def test_cli_compare_exits_zero_even_with_rows_outside(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The real task catalogue does not know toy-task: its rows are compared under the newest protocol found.
    assert main(["compare", "--results", str(small), "--format", "csv", "--task", "toy-task"]) == 0
    out = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["verdict"] for r in out} >= {"within", "outside"}
    assert main(["compare", "--results", str(small), "--task", "toy-tsk"]) == 1
    assert "did you mean 'toy-task'" in capsys.readouterr().err
    assert main(["compare", "--results", str(small), "--tolerance", "toy-task:top1=5"]) == 0
    assert "OUTSIDE" not in capsys.readouterr().out.split("toy-gen")[0]


def test_mean_and_std_are_pandas_groupby_bit_for_bit() -> None:
    """The aggregation is plain Python (no pandas import on the leaderboard's path) but must print the same digits
    as the pandas groupby it replaced, ties in the last printed decimal included."""
    import random
    from types import SimpleNamespace

    pd = pytest.importorskip("pandas")
    from leaderboard.collect import Group, ProtocolKey, _aggregate

    rng = random.Random(0)
    groups = []
    for i in range(500):
        recs = [
            SimpleNamespace(metrics={m: round(rng.uniform(0, 100), rng.choice((1, 2, 3, 6))) for m in ("top1", "top5")})
            for _ in range(rng.randint(1, 12))
        ]
        groups.append(Group("t", ProtocolKey("p", 1, "h"), "paper", f"m{i}", "v", "a", recs, []))  # type: ignore[arg-type]
    _aggregate(groups)
    rows = [(i, name, v) for i, g in enumerate(groups) for r in g.records for name, v in r.metrics.items()]
    frame = pd.DataFrame(rows, columns=["g", "metric", "value"])
    agg = frame.groupby(["g", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
    for (i, name), mean, std, count in zip(agg.index, agg["mean"], agg["std"], agg["count"]):
        stat = groups[i].stats[name]
        assert stat.mean == mean and stat.n == count
        assert stat.std == (None if count < 2 else std)
