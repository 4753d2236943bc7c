"""11: the site swap is recoverable, leaves no orphans, and the site is as readable as the umask allows."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from leaderboard import build
from leaderboard.build import MARKER, build_site
from tests.leaderboard.factory import small_results, small_tasks


def _build(results: Path, out: Path) -> Path:
    return build_site(results, out, task_lookup=small_tasks().get, registered=set()).out


def test_kill_between_the_renames_is_repaired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = small_results(tmp_path / "results")
    out = tmp_path / "site"
    _build(results, out)
    calls = []
    real = os.replace

    def killed(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append((src, dst))
        if len(calls) == 2:  # the old site has moved aside; the kill comes before the new one moves in
            raise KeyboardInterrupt("killed")
        real(src, dst)

    monkeypatch.setattr(build.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        _build(results, out)
    monkeypatch.setattr(build.os, "replace", real)
    assert not out.exists()  # what a kill leaves
    olds = list(tmp_path.glob(".site.old-*"))
    assert olds
    # a killed process leaves its folders behind under its own pid; make them a dead process's
    dead = 2**22 + 17
    for o in olds:
        o.rename(tmp_path / f".site.old-{dead}")
    (tmp_path / f".site.tmp-{dead}-abc").mkdir()
    build._recover(out)  # the next build's first step
    assert (out / MARKER).exists() and (out / "index.html").exists()  # the last complete site is back
    assert not list(tmp_path.glob(".site.*"))  # no orphans
    _build(results, out)
    assert not list(tmp_path.glob(".site.*"))


def test_a_running_build_s_folders_are_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "site"
    live = tmp_path / f".site.tmp-{os.getpid()}-xyz"
    live.mkdir()
    build._recover(out)
    assert live.exists()


def test_site_is_world_readable_as_umask_allows(tmp_path: Path) -> None:
    results = small_results(tmp_path / "results")
    old = os.umask(0o022)
    try:
        out = _build(results, tmp_path / "site")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode == 0o755, oct(mode)
    assert stat.S_IMODE((out / "index.html").stat().st_mode) & 0o004
