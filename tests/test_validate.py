"""`vitbench validate`: each class of broken submission is refused with a message naming the file and the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from benchmarks.catalog import TaskSpec
from benchmarks.cli import main
from benchmarks.protocol import Protocol
from benchmarks.records import MetricMeta, record_relpath
from benchmarks.validate import validate_file, validate_files
from methods.errors import UnknownNameError
from tests.leaderboard.factory import make_record


@dataclass(frozen=True)
class ToyProtocol(Protocol):
    NAME: ClassVar[str] = "toy-knn"
    VERSION: ClassVar[int] = 2
    SMOKE: ClassVar[dict[str, Any]] = {"resolution": 64}

    k: int = 20
    temperature: float = 0.07
    resolution: int | None = None


TOY = TaskSpec(
    id="toy-task",
    title="toy",
    group="classification",
    headline="top1",
    metrics={"top1": MetricMeta(), "top5": MetricMeta(), r"^top1_k\d+$": MetricMeta()},
    protocol=ToyProtocol,
    harness="tests.nowhere:NeverImported",  # validation reads the catalogue entry, never the harness
    synth_kind="imagefolder",
)
REPORTED_ONLY = TaskSpec("reported-only", "no harness", "dense", "mAP", {"mAP": MetricMeta()})


def lookup(task: str) -> TaskSpec:
    if task == "toy-task":
        return TOY
    if task == "reported-only":
        return REPORTED_ONLY
    raise UnknownNameError(f"unknown task '{task}' (did you mean 'toy-task'?)")


def good(track: str = "paper", **changes: Any) -> dict[str, Any]:
    proto = ToyProtocol.smoke() if track == "smoke" else ToyProtocol.paper()
    rec = make_record(
        "toy-task",
        "dino",
        "vits16",
        0,
        {"top1": 74.0, "top1_k10": 73.0},
        track=track,
        protocol=proto.info().model_dump(),
    )
    rec.update(changes)
    return rec


def write(tmp_path: Path, rec: dict[str, Any], raw: str | None = None, at: Path | None = None) -> Path:
    path = at or tmp_path / "results" / record_relpath(rec["task"], rec["method"], rec["variant"], rec["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw if raw is not None else json.dumps(rec), encoding="utf-8")
    return path


def check(tmp_path: Path, rec: dict[str, Any], **kw: Any) -> str | None:
    return validate_file(write(tmp_path, rec, **kw), lookup)


@pytest.mark.parametrize("track", ["paper", "smoke"])
def test_a_good_record_passes(tmp_path: Path, track: str) -> None:
    assert check(tmp_path, good(track)) is None


def _set(rec: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = rec
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return rec


_DELETE = object()

BROKEN = [
    # (what is broken, dotted field to change, new value, field the message must name)
    ("schema: missing field", "dataset", _DELETE, "dataset"),
    ("schema: markup in a name", "method", "<b>dino</b>", "method"),
    ("schema: metric not finite", "metrics.top1", float("nan"), "metrics.top1"),
    ("schema: metric out of range", "metrics.top1", 140.0, "metrics.top1"),
    ("schema: no sha256 for paper track", "weights.sha256", None, "weights.sha256"),
    ("schema: bad sha256", "weights.sha256", "xyz", "weights.sha256"),
    ("schema: control character", "provenance.command", "vitbench run\x1b[2J", "provenance.command"),
    ("schema: unknown field", "extra_field", 1, "extra_field"),
    ("provenance: no git sha on paper track", "provenance.git_sha", None, "provenance.git_sha"),
    ("provenance: empty command", "provenance.command", "  ", "provenance.command"),
    ("provenance: no versions", "provenance.versions", {}, "provenance.versions"),
    ("control character deep in the probe", "probe.pooling", "cls\x00", "probe.pooling"),
    ("unknown metric", "metrics.top2", 50.0, "metrics.top2"),
    ("protocol name", "protocol.name", "other-knn", "protocol"),
    ("protocol version", "protocol.version", 1, "protocol"),
]


@pytest.mark.parametrize(("what", "dotted", "value", "field"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_records_are_refused_naming_the_field(
    tmp_path: Path, what: str, dotted: str, value: Any, field: str
) -> None:
    rec = _set(good(), dotted, value)
    if dotted.startswith("metrics.") and value is not _DELETE:
        rec["metric_meta"].setdefault(dotted.split(".")[1], {})
    msg = check(tmp_path, rec)  # json.dumps writes NaN as the bare token NaN, as a careless writer would
    assert msg is not None, what
    assert msg.startswith(str(tmp_path)) and f": {field}" in msg, msg
    assert "\n" not in msg


def test_protocol_hash_against_own_config_and_registered_config(tmp_path: Path) -> None:
    rec = good()
    rec["protocol"]["config"]["k"] = 10  # edited after the run: the hash no longer matches the config
    assert "does not match the record's own protocol.config" in check(tmp_path, rec)
    rec = good()
    other = ToyProtocol.paper(k=10)  # a consistent record of a modified protocol
    rec["protocol"] = other.info().model_dump()
    msg = check(tmp_path, rec)
    assert "protocol.hash" in msg and "config differs in: k" in msg
    smoke_as_paper = good()
    smoke_as_paper["protocol"] = ToyProtocol.smoke().info().model_dump()
    assert "config differs in: resolution" in check(tmp_path, smoke_as_paper)


def test_unknown_or_unrunnable_task(tmp_path: Path) -> None:
    assert "task: unknown task 'toy-tsk'" in check(tmp_path, good(task="toy-tsk"))
    assert "task: reported-only has reported numbers only" in check(tmp_path, good(task="reported-only"))


def test_dense_records_validate_without_the_mm_stack(tmp_path: Path) -> None:
    """The catalogue is torch- and mm*-free: a COCO record is checked against the registered COCO protocol."""
    import subprocess
    import sys

    from benchmarks.catalog import get_task

    proto = get_task("coco-maskrcnn-fpn-1x").protocol_for(smoke=True)
    rec = make_record(
        "coco-maskrcnn-fpn-1x",
        "dino",
        "vits16",
        0,
        {"bbox_AP": 10.0},
        track="smoke",
        protocol=proto.info().model_dump(),
    )
    path = write(tmp_path, rec)
    code = (
        "import sys; from benchmarks.validate import validate_file; "
        f"print(validate_file({str(path)!r})); "
        "assert not {'torch', 'timm', 'mmcv', 'mmdet'} & set(sys.modules), sorted(sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None"


def test_direction_must_agree_with_the_task(tmp_path: Path) -> None:
    rec = good()
    rec["metric_meta"]["top1"] = {"higher_is_better": False}
    assert "metric_meta.top1.higher_is_better" in check(tmp_path, rec)


def test_misplaced_file_and_unparseable_files(tmp_path: Path) -> None:
    rec = good()
    wrong = tmp_path / "results" / "runs" / "toy-task" / "dino" / "vits16__seed7.json"
    assert "path: this record belongs at runs/toy-task/dino/vits16__seed0.json" in check(tmp_path, rec, at=wrong)
    assert check(tmp_path, rec, at=tmp_path / "submission.json") is None  # outside a runs/ tree: no layout rule
    assert "not valid JSON" in check(tmp_path, rec, raw="{", at=tmp_path / "broken.json")
    assert "expected a JSON object" in check(tmp_path, rec, raw="[1]", at=tmp_path / "list.json")
    assert "no such file" in validate_file(tmp_path / "missing.json", lookup)


def test_validate_files_keeps_order_and_cli_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = write(tmp_path, good())
    bad = write(tmp_path, good(), raw="{", at=tmp_path / "bad.json")
    assert [(p, m is None) for p, m in validate_files([ok, bad], lookup)] == [(ok, True), (bad, False)]
    # Through the real CLI and registry: toy-task is not a registered task, so the record is refused.
    assert main(["validate", str(ok)]) == 1
    assert "task: unknown task 'toy-task'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_record_from_the_real_runner_validates_and_renders(imagefolder: Path, tmp_path: Path) -> None:
    """End to end with the registered knn harness: run (smoke), validate, build; the run lands in the smoke
    section, under the harness's own smoke protocol, and never in the compared table."""
    from benchmarks.catalog import get_task
    from benchmarks.runner import RunRequest, run
    from leaderboard.build import build_site

    results = tmp_path / "results"
    path, rec = run(
        RunRequest(
            method="dino:vits16",
            task="knn",
            data=imagefolder,
            weights="random",
            seed=0,
            out=results,
            smoke=True,
            progress=False,
            command="pytest",
        )
    )
    assert rec is not None and rec.track == "smoke"
    assert validate_files([path]) == [(path, None)]  # real registry, real protocol
    tampered = json.loads(path.read_text())
    tampered["protocol"]["config"]["temperature"] = 0.1
    path.write_text(json.dumps(tampered))
    assert "does not match the record's own protocol.config" in validate_files([path])[0][1]
    path.write_text(rec.model_dump_json())

    site = build_site(results, tmp_path / "site", registered={"dino"}).out
    html = (site / "tasks" / "knn.html").read_text()
    smoke = get_task("knn").protocol_for(smoke=True)
    assert f"{smoke.NAME} v{smoke.VERSION} ({smoke.hash()[:8]})" in html.split('id="smoke"')[1]
    assert 'data-reproduced="yes"' not in html.split('id="main"')[1].split("</table>")[0]
    assert "Not yet reproduced" in html
