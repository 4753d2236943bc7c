"""5 + 3: the leaderboard and ``vitbench validate`` share one gate. What validate refuses never reaches a table (it
is listed as rejected with validate's reason); a record of another protocol version is still shown apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.catalog import get_task
from benchmarks.records import iter_record_files
from benchmarks.validate import validate_file, validate_files
from leaderboard.collect import load_records
from tests.trust._records import knn_record, write

# case -> (how to spoil a good paper record, the field the shared reason must name)
BAD = {
    "forged protocol hash": (lambda r: r["protocol"].update(hash="0" * 16), "protocol.hash: 0000000000000000"),
    "missing git_sha": (lambda r: r["provenance"].update(git_sha=None), "provenance.git_sha: required"),
    "metric outside range": (lambda r: r["metrics"].update(top1=1e308), "metrics.top1: value 1e+308 outside"),
    "control characters": (
        lambda r: r["provenance"].update(command="vitbench run\x1b[31m"),
        "provenance.command: contains control characters",
    ),
    "other data (48 images)": (
        lambda r: r["dataset"].update(splits={"train": 48, "val": 24}, n_classes=4),
        "dataset.splits.train: 48",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_leaderboard_refuses_what_validate_refuses(case: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    rec = knn_record()
    spoil, field = BAD[case]
    spoil(rec)
    path = write(results, rec)
    reason = validate_file(path)
    assert reason is not None and field in reason, reason
    recs = load_records(results)
    assert recs.records == [] and len(recs.rejected) == 1
    rel, msg = recs.rejected[0]
    assert rel == Path("runs/knn/dino/vits16__seed0.json")
    # the same reason, with the path as the leaderboard names it
    assert msg.split(": ", 1)[1] == reason.split(": ", 1)[1]


def test_a_good_record_and_an_older_protocol_version_are_kept(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write(results, knn_record())
    old = knn_record(method="selfpatch")
    proto = get_task("knn").protocol_for(smoke=False)
    old["protocol"] = type("KnnV0", (proto.__class__,), {"VERSION": proto.VERSION + 7})().info().model_dump()
    write(results, old)
    assert validate_file(results / "runs/knn/selfpatch/vits16__seed0.json") is not None  # validate: not current
    recs = load_records(results)
    assert not recs.rejected and len(recs.records) == 2  # the leaderboard shows it apart (status "other")


def test_smoke_records_on_synthetic_data_are_not_held_to_the_paper_identity(tmp_path: Path) -> None:
    rec = knn_record("smoke", splits={"train": 48, "val": 24}, n_classes=4)
    assert validate_file(write(tmp_path / "results", rec)) is None


def test_committed_records_keep_validating() -> None:
    root = Path(__file__).resolve().parents[2] / "results"
    files = iter_record_files(root)
    assert files
    assert [msg for _, msg in validate_files(files) if msg] == []
    assert not load_records(root).rejected
