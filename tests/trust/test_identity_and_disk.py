"""3 for the COCO tasks (their records carry the dataset identity a paper-track record is checked against) and 10
beyond the feature cache and records (a full disk while building the site, or anywhere under the CLI, is one line)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
from pathlib import Path

import pytest

from benchmarks.catalog import DataIdentity, get_task
from benchmarks.data.coco import synth_coco, validate_coco_split
from benchmarks.dense.coco import coco_dataset_info
from benchmarks.records import parse_record
from benchmarks.validate import check_dataset
from methods.errors import VitbenchError
from tests.leaderboard.factory import make_record, small_results, small_tasks


def test_coco_records_carry_their_dataset_identity(tmp_path: Path) -> None:
    root = synth_coco(tmp_path / "coco", n_train=4, n_val=2)
    train, val = (validate_coco_split(root, s, train=s == "train2017") for s in ("train2017", "val2017"))
    info = coco_dataset_info(root, train, val, {})
    assert info.splits == {"train2017": 4, "val2017": 2} and info.n_classes == 2
    for name in ("instances_train2017.json", "instances_val2017.json"):
        want = hashlib.sha256((root / "annotations" / name).read_bytes()).hexdigest()
        assert info.annotations[name] == want
    spec = get_task("coco-maskrcnn-fpn-1x")
    rec = make_record("coco-maskrcnn-fpn-1x", "dino", "vits16", 0, {"bbox_AP": 40.0, "segm_AP": 37.0})
    rec["dataset"] = info.model_dump()
    record = parse_record(rec)
    problem = check_dataset(record, spec)  # a paper record on the 4-image set: refused, naming the split
    assert problem is not None and problem.startswith("dataset.splits.train2017: 4") and "118287" in problem
    ann = {n: info.annotations[n] for n in ("instances_val2017.json",)}
    same = dataclasses.replace(spec, data=DataIdentity("tiny-coco", dict(info.splits or {}), 2, annotations=ann))
    assert check_dataset(record, same) is None
    assert same.data is not None
    wrong_sha = dataclasses.replace(same.data, annotations={"instances_val2017.json": "0" * 64})
    other = dataclasses.replace(same, data=wrong_sha)
    assert "dataset.annotations.instances_val2017.json" in (check_dataset(record, other) or "")


def test_full_disk_while_building_the_site_is_one_line_and_keeps_the_old_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leaderboard import build

    results = small_results(tmp_path / "results")
    out = tmp_path / "site"
    build.build_site(results, out, task_lookup=small_tasks().get, registered=set())
    before = (out / "index.html").read_text()
    calls = []

    def full(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    monkeypatch.setattr(build, "_write", full)
    with pytest.raises(VitbenchError) as err:
        build.build_site(results, out, task_lookup=small_tasks().get, registered=set())
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path}: no space left on device") and "bytes written" in msg
    assert (out / "index.html").read_text() == before  # the last good site stays
    assert not list(tmp_path.glob(".site.*"))  # nothing half-written left


def test_full_disk_anywhere_under_the_cli_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import benchmarks.synth
    from benchmarks.cli import main

    def full(kind: str, out: Path, seed: int) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "train" / "x.JPEG"))

    monkeypatch.setattr(benchmarks.synth, "synth", full)
    assert main(["data", "synth", "imagefolder", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{tmp_path / 'd' / 'train'}: no space left on device" in err
