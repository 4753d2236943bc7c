"""The CLI contract: stable exit codes (0 ok, 1 user error in one line, 2 usage) and valid records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("task", ["knn", "linear"])
def test_smoke_run_writes_a_valid_record(
    task: str, imagefolder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, _ = _run(
        capsys,
        "run",
        "--method",
        "dino",
        "--task",
        task,
        "--data",
        str(imagefolder),
        "--weights",
        "random",
        "--smoke",
        "--out",
        str(tmp_path),
    )
    assert code == 0, out
    record = tmp_path / "runs" / task / "dino" / "vits16__seed0.json"
    data = json.loads(record.read_text())
    assert data["track"] == "smoke" and data["weights"]["source"] == "random" and data["metrics"]["top1"] > 30
    assert data["protocol"]["config"]["resolution"] == 64
    assert data["provenance"]["versions"]["torch"] and data["provenance"]["command"].startswith("vitbench run")
    assert data["provenance"]["world_size"] == 1  # no launcher: one process
    assert _run(capsys, "validate", str(record))[0] == 0
    # Re-running skips the existing record; --force runs again.
    code, out, _ = _run(
        capsys,
        "run",
        "--method",
        "dino",
        "--task",
        task,
        "--data",
        str(imagefolder),
        "--weights",
        "random",
        "--smoke",
        "--out",
        str(tmp_path),
    )
    assert code == 0 and "skipped" in out


def test_methods_and_tasks_json(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "methods", "--json")
    methods = {m["name"]: m for m in json.loads(out)}
    assert code == 0 and {"dino", "selfpatch"} <= set(methods)
    v = methods["dino"]["variants"][0]
    assert set(v) >= {"name", "arch", "weights_url", "sha256", "license"} and methods["dino"]["paper"]["arxiv"]
    code, out, _ = _run(capsys, "tasks", "--json")
    tasks = {t["name"]: t for t in json.loads(out)}
    assert code == 0 and tasks["knn"]["protocol_version"] == 1 and "top1" in tasks["linear"]["metrics"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--method", "dino:vitz", "--task", "knn", "--data", "."], "unknown variant 'vitz'"),
        (["run", "--method", "dinoo", "--task", "knn", "--data", "."], "did you mean 'dino'"),
        (["run", "--method", "dino", "--task", "knnn", "--data", "."], "did you mean 'knn'"),
        (
            ["run", "--method", "dino", "--task", "knn", "--data", "/nonexistent/x", "--weights", "random", "--smoke"],
            "/nonexistent/x: data folder does not exist",
        ),
        (
            [
                "run",
                "--method",
                "dino",
                "--task",
                "knn",
                "--data",
                ".",
                "--weights",
                "random",
                "--smoke",
                "--device",
                "tpu",
            ],
            "--device tpu",
        ),
        (["data", "synth", "nope", "--out", "x"], "unknown synthetic dataset kind"),
        (["inspect-weights", "--method", "dino", "--weights", "/nonexistent.pth"], "no such checkpoint file"),
    ],
)
def test_user_errors_exit_1_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 1
    assert needle in err and err.strip().count("\n") == 0 and "Traceback" not in err


@pytest.mark.parametrize("argv", [[], ["run"], ["run", "--method", "dino"], ["frobnicate"], ["methods", "--bogus"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert _run(capsys, *argv)[0] == 2


def test_unknown_protocol_override(imagefolder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _run(
        capsys,
        "run",
        "--method",
        "dino",
        "--task",
        "knn",
        "--data",
        str(imagefolder),
        "--weights",
        "random",
        "--smoke",
        "--out",
        str(tmp_path),
        "--set",
        "kk=3",
    )
    assert code == 1 and "--set" in err and not (tmp_path / "runs").exists()
    assert "not a field of protocol dino-knn" in err and "temperature (float, default 0.07)" in err


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("temperature=abc", "--set temperature='abc': expected float"),
        ("ks=[10,oops]", "expected tuple[int, ...]"),
        ("resolution=1.5", "--set resolution=1.5: expected int | None"),
        ("tempreature=0.1", "did you mean 'temperature'"),
        ("noequals", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_are_refused_before_any_model_work(setting: str, needle: str, imagefolder: Path) -> None:
    """Checked against the protocol's field types at the edge: one line, exit 1, torch never imported."""
    argv = ["run", "--method", "dino", "--task", "knn", "--data", str(imagefolder), "--smoke", "--set", setting]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "benchmarks.cli", *argv], capture_output=True, text=True
    )
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
    assert proc.returncode == 1 and len(lines) == 1 and needle in lines[0], proc.stderr[-500:]
    assert not {"torch", "timm"} & imported


def test_good_overrides_are_typed_into_the_record(imagefolder: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    argv = ["run", "--method", "dino", "--task", "knn", "--data", str(imagefolder), "--weights", "random"]
    code, _, err = _run(capsys, *argv, "--smoke", "--out", str(tmp_path), "--set", "ks=[5,10]", "--set", "headline_k=5")
    assert code == 0, err
    data = json.loads((tmp_path / "runs" / "knn" / "dino" / "vits16__seed0.json").read_text())
    assert data["protocol"]["config"]["ks"] == [5, 10] and set(data["metrics"]) >= {"top1_k5", "top1_k10"}


def test_console_script_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("vitbench ")


def test_inspect_weights_prints_the_load_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import argparse

    import timm
    import torch

    sd = timm.create_model("vit_small_patch16_224", num_classes=0).state_dict()
    torch.save(
        {"teacher": {f"backbone.{k}": v for k, v in sd.items()}, "args": argparse.Namespace(a=1)}, tmp_path / "full.pth"
    )
    code, out, _ = _run(capsys, "inspect-weights", "--method", "dino:vits16", "--weights", str(tmp_path / "full.pth"))
    assert code == 0 and f"matched            {len(sd)}" in out and "stripped ['backbone.']" in out
    code, out, _ = _run(
        capsys, "inspect-weights", "--method", "dino", "--weights", str(tmp_path / "full.pth"), "--json"
    )
    info = json.loads(out)
    assert code == 0 and len(info["sha256"]) == 64 and info["load_report"]["checkpoint_key"] == "teacher"
