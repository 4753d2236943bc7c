"""Progress that fits where it goes: tqdm on a terminal, periodic plain lines in a log, nothing when disabled."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.progress import PlainProgress, Progress, progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _progress_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VITBENCH_NO_PROGRESS", raising=False)  # conftest silences progress for the other tests
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_plain_lines_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITBENCH_PROGRESS_INTERVAL", "0")  # a line per update
    log = io.StringIO()
    with progress_bar(total=4, desc="extract", unit="img", stream=log) as bar:
        assert isinstance(bar, PlainProgress)
        for _ in range(4):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "extract: 0/4 img (0%)"
    assert re.fullmatch(r"extract: 2/4 img \(50%\), [\d.e+]+ img/s, ETA \d+:\d\d", lines[2]), lines[2]
    assert lines[-1].startswith("extract: 4/4 img (100%), done in ") and len(lines) == 5


def test_plain_lines_are_periodic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITBENCH_PROGRESS_INTERVAL", "3600")
    log = io.StringIO()
    with progress_bar(total=100, desc="train heads", unit="epoch", initial=10, stream=log) as bar:
        for _ in range(90):
            bar.update(1)
            bar.set_postfix(loss="0.12")
    lines = log.getvalue().splitlines()
    # the start and the end only: 89 updates inside the interval print nothing
    assert lines[0] == "train heads: 10/100 epoch (10%)" and len(lines) == 2
    assert lines[1].startswith("train heads: 100/100 epoch (100%), done in ") and lines[1].endswith("loss=0.12")


def test_no_line_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITBENCH_PROGRESS_INTERVAL", "3600")
    log = io.StringIO()
    with pytest.raises(RuntimeError), progress_bar(total=10, desc="x", stream=log) as bar:
        bar.update(3)
        raise RuntimeError("boom")
    assert log.getvalue().splitlines() == ["x: 0/10 img (0%)"]


def test_tqdm_on_a_terminal_ascii_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    with progress_bar(total=8, desc="extract", stream=tty) as bar:
        assert type(bar).__module__.startswith("tqdm")
        bar.update(4)
    assert "\r" in tty.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = _Tty()
    with progress_bar(total=8, desc="extract", stream=tty) as bar:
        bar.update(4)
        bar.refresh()
    out = tty.getvalue()
    assert "extract" in out and out.isascii() and "\x1b[3" not in out  # no colour codes, no unicode blocks


@pytest.mark.parametrize("how", ["disabled", "env"])
def test_silent(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "env":
        monkeypatch.setenv("VITBENCH_NO_PROGRESS", "1")
    for stream in (io.StringIO(), _Tty()):
        with progress_bar(total=3, desc="x", enabled=how != "disabled", stream=stream) as bar:
            assert type(bar) is Progress
            bar.update(3)
        assert stream.getvalue() == ""


def test_cli_progress_lines_and_no_progress(
    imagefolder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--method", "dino", "--task", "knn", "--data", str(imagefolder), "--weights", "random", "--smoke"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and re.search(r"^features train: 96/96 img \(100%\), done in ", err, re.M), err
    assert main([*argv, "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
