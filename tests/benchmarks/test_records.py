"""The record schema rejects broken records with a message naming the field; writes are atomic."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks.records import load_record, parse_record, write_record
from methods.errors import RecordError

GOOD = {
    "schema_version": 1,
    "method": "dino",
    "variant": "vits16",
    "arch": "vit_small_patch16_224",
    "weights": {"source": "/w/dino.pth", "sha256": "a" * 64},
    "task": "knn",
    "protocol": {"name": "dino-knn", "version": 1, "hash": "0123456789abcdef", "config": {"ks": [20]}},
    "dataset": {"name": "imagenet", "split": "train->val", "fingerprint": "deadbeefdeadbeef", "n_samples": 50000},
    "metrics": {"top1": 74.5},
    "metric_meta": {"top1": {"higher_is_better": True, "unit": "%", "lo": 0, "hi": 100}},
    "seed": 0,
    "track": "paper",
    "provenance": {
        "vitbench_version": "0.1.0",
        "versions": {"torch": "2.14.1"},
        "device": "cpu",
        "started_at": "2026-11-23T00:00:00Z",
        "wall_s": 1.0,
        "command": "vitbench run",
    },
}


def _broken(path: str, value: object) -> dict:
    rec = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = rec
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return rec


def test_good_record_parses() -> None:
    assert parse_record(GOOD).metrics["top1"] == 74.5


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("method", "<script>alert(1)</script>", "method"),
        ("variant", "vits16\x1b[31m", "variant"),
        ("metrics.top1", float("nan"), "metrics.top1"),
        ("metrics.top1", 101.0, "metrics.top1"),
        ("metric_meta", {}, "metric_meta.top1"),
        ("weights.sha256", "xyz", "weights.sha256"),
        ("weights.sha256", None, "weights.sha256"),
        ("track", "leaderboard", "track"),
        ("provenance", KeyError, "provenance"),
        ("provenance.command", "rm -rf /\x07", "provenance.command"),
        ("protocol.version", 0, "protocol.version"),
        ("seed", -1, "seed"),
        ("unexpected", 1, "unexpected"),
    ],
)
def test_broken_records_name_the_field(path: str, value: object, field: str, tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    f.write_text(json.dumps(_broken(path, value)))
    with pytest.raises(RecordError) as err:
        load_record(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: ") and field in msg and "\n" not in msg


def test_random_weights_are_smoke_only() -> None:
    rec = _broken("weights", {"source": "random", "sha256": None})
    with pytest.raises(RecordError, match="random weights"):
        parse_record(rec)
    rec["track"] = "smoke"
    assert parse_record(rec).track == "smoke"


def test_not_json_or_not_object(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{")
    with pytest.raises(RecordError, match=r"a\.json: not valid JSON"):
        load_record(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("[1]")
    with pytest.raises(RecordError, match="expected a JSON object"):
        load_record(tmp_path / "b.json")


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    rec = parse_record(GOOD)
    path = write_record(rec, tmp_path)
    assert path == tmp_path / "runs" / "knn" / "dino" / "vits16__seed0.json"
    assert load_record(path) == rec
    with pytest.raises(RecordError, match="exists"):
        write_record(rec, tmp_path)
    assert write_record(rec, tmp_path, force=True) == path
    assert [p.name for p in path.parent.iterdir()] == ["vits16__seed0.json"]  # no temp files left behind
