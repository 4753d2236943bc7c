"""CLI conventions: every option has help and shows its default, listing commands speak JSON, `vitbench tasks`
reads at 80 columns, and shell completion works when argcomplete is installed."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.catalog import TASKS
from benchmarks.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _parsers(parser: argparse.ArgumentParser, name: str = "vitbench") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _parsers(sub, f"{name} {sub_name}")
    return out


def test_every_option_has_help_and_shows_its_default() -> None:
    missing, no_default = [], []
    for name, parser in _parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            flag = action.option_strings[-1]
            if not action.help:
                missing.append(f"{name} {flag}")
            trivial = action.default is None or action.default is False or action.default == []
            shown = formatter._expand_help(action) if action.help else ""  # what --help prints for it
            if not trivial and "default" not in shown:
                no_default.append(f"{name} {flag}")
    assert missing == [], f"options without help: {missing}"
    assert no_default == [], f"defaults not shown: {no_default}"
    assert len(_parsers(build_parser())) >= 11  # run, sweep, data synth, leaderboard, compare, ... all walked


def test_run_help_names_the_real_cache_folder_and_defaults() -> None:
    text = " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())  # type: ignore[union-attr]
    assert "$VITBENCH_CACHE/features" in text and "~/.cache/vitbench/features" in text
    assert "(default: 0)" in text and "(default: cpu)" in text and "(default: results)" in text


def _cli(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.mark.parametrize("extra", [[], ["--all"]])
def test_tasks_reads_at_80_columns(extra: list[str]) -> None:
    proc = _cli("tasks", *extra, COLUMNS="80")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    ids = {ln.split()[0] for ln in lines if ln.strip()}
    want = {t for t, spec in TASKS.items() if spec.runnable or extra}
    assert want <= ids, sorted(want - ids)  # every id whole on its own line, never folded


def test_tasks_wide_has_protocols_and_smoke_data() -> None:
    proc = _cli("tasks", "--wide", COLUMNS="160")
    assert proc.returncode == 0 and "dino-knn v1" in proc.stdout and "imagefolder" in proc.stdout


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["methods", "--json"], "variants"),
        (["tasks", "--json"], "protocol_version"),
        (["tasks", "--all", "--json"], "runnable"),
    ],
)
def test_listing_commands_speak_json(argv: list[str], key: str) -> None:
    proc = _cli(*argv)
    items = json.loads(proc.stdout)
    assert proc.returncode == 0 and items and all(key in d for d in items)


def test_compare_speaks_json() -> None:
    proc = _cli("compare", "--format", "json")
    rows = json.loads(proc.stdout)
    assert proc.returncode == 0 and rows and {"task", "method", "verdict"} <= set(rows[0])


def test_shell_completion(tmp_path: Path) -> None:
    pytest.importorskip("argcomplete", reason="the optional completion extra")
    out = tmp_path / "completions"
    proc = _cli(_ARGCOMPLETE="1", COMP_LINE="vitbench ru", COMP_POINT="11", _ARGCOMPLETE_STDOUT_FILENAME=str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().split() == ["run"]
