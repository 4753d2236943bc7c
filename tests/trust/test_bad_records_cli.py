"""Every bad record the trust checks handle, fed through ``vitbench validate`` in-process: exit 1, exactly one line
on stderr naming the file, no traceback, nothing written."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cli import main
from tests.trust._records import knn_record, write


def _set(rec: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    rec = copy.deepcopy(rec)
    *head, last = dotted.split(".")
    node = rec
    for k in head:
        node = node[k]
    node[last] = value
    return rec


def _raw(text: Callable[[dict[str, Any]], str]) -> Callable[[], tuple[dict[str, Any], str]]:
    return lambda: (knn_record(), text(knn_record()))


def _dup_key(rec: dict[str, Any]) -> str:
    body = json.dumps(rec)
    return body[:-1] + ', "metrics": {"top1": 99.9, "top5": 99.9}}'


def _deep(rec: dict[str, Any]) -> str:
    body = json.dumps(rec)
    return body[:-1] + ', "extra2": ' + "[" * 10_000 + "]" * 10_000 + "}"


def _deep_inside(rec: dict[str, Any]) -> str:  # deep, but shallow enough for json.loads: walked by nobody
    body = json.dumps({**rec, "extra": {}})
    return body.replace('"extra": {}', '"extra": ' + '{"a": ' * 900 + "1" + "}" * 900)


CASES: dict[str, Callable[[], tuple[dict[str, Any], str | None]]] = {
    # 7. JSON edge cases
    "duplicate key": _raw(_dup_key),
    "nesting depth 10000": _raw(_deep),
    "nesting depth 900": _raw(_deep_inside),
    "seed 10**30": lambda: (knn_record(), json.dumps(knn_record()).replace('"seed": 0', '"seed": ' + "1" + "0" * 30)),
    "git_sha not hex": lambda: (_set(knn_record(), "provenance.git_sha", "not-a-sha; rm -rf /"), None),
    "git_sha uppercase": lambda: (_set(knn_record(), "provenance.git_sha", "A" * 40), None),
    # 5. what the leaderboard used to ingest
    "forged protocol hash": lambda: (_set(knn_record(), "protocol.hash", "0" * 16), None),
    "paper without git_sha": lambda: (_set(knn_record(), "provenance.git_sha", None), None),
    "metric 1e308": lambda: (_set(knn_record(), "metrics.top1", 1e308), None),
    "control characters": lambda: (_set(knn_record(), "provenance.host", "evil\x1b[2J"), None),
    # 3. paper track on other data
    "paper on 48-image set": lambda: (knn_record(splits={"train": 48, "val": 24}, n_classes=4), None),
    "paper, other class count": lambda: (knn_record(n_classes=10), None),
    "paper, no dataset identity": lambda: (knn_record(splits=None, n_classes=None), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_record_is_one_line_exit_1(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec, raw = CASES[case]()
    path = write(tmp_path / "results", rec, raw)
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and "Traceback" not in err
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written


def test_the_good_twin_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "results", knn_record())
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_messages_name_the_field(tmp_path: Path) -> None:
    from benchmarks.validate import validate_file

    msg = validate_file(write(tmp_path / "r", knn_record(splits={"train": 48, "val": 24})))
    assert msg is not None and "dataset.splits.train: 48" in msg and "1281167" in msg
    dup = knn_record()
    msg = validate_file(write(tmp_path / "d", dup, _dup_key(dup)))
    assert msg is not None and "duplicate key 'metrics'" in msg
