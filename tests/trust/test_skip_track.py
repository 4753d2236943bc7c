"""6c: the skip compares track and protocol hash. A smoke record never blocks a paper-track run; a paper record is
never overwritten by a smoke run without --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.catalog import get_task
from benchmarks.records import existing_record, parse_record, write_record
from methods.errors import RecordError
from tests.trust._records import knn_record, write

PAPER = get_task("knn").protocol_for(smoke=False).hash()
SMOKE = get_task("knn").protocol_for(smoke=True).hash()


def _exists(results: Path, track: str, proto: str) -> Path | None:
    return existing_record(results, "knn", "dino", "vits16", 0, track=track, protocol_hash=proto)


def test_a_smoke_record_does_not_block_a_paper_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, knn_record("smoke"))
    assert _exists(tmp_path, "paper", PAPER) is None
    assert "smoke record" in capsys.readouterr().err
    path = write_record(parse_record(knn_record("paper")), tmp_path)  # no --force needed
    assert parse_record(__import__("json").loads(path.read_text())).track == "paper"


def test_a_paper_record_is_not_replaced_by_a_smoke_run(tmp_path: Path) -> None:
    path = write(tmp_path, knn_record("paper"))
    assert _exists(tmp_path, "smoke", SMOKE) == path  # the smoke run is skipped
    with pytest.raises(RecordError, match="exists"):
        write_record(parse_record(knn_record("smoke")), tmp_path)
    assert '"track": "paper"' in path.read_text()
    write_record(parse_record(knn_record("smoke")), tmp_path, force=True)
    assert '"track": "smoke"' in path.read_text()


def test_the_same_run_is_skipped_and_another_protocol_asks_for_force(tmp_path: Path) -> None:
    path = write(tmp_path, knn_record("paper"))
    assert _exists(tmp_path, "paper", PAPER) == path
    assert existing_record(tmp_path, "knn", "dino", "vits16", 0) == path  # no track given: as before
    with pytest.raises(RecordError, match="--force"):
        _exists(tmp_path, "paper", "f" * 16)


def test_sweep_plan_passes_the_track() -> None:
    import inspect

    from benchmarks import runner, sweep

    for mod in (sweep.plan, runner.run):
        assert "track=track" in inspect.getsource(mod)
