"""Fixtures for the leaderboard tests: a small fixed results tree and the site built from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.catalog import TaskSpec
from leaderboard.build import SiteReport, build_site
from tests.leaderboard.factory import small_results, small_tasks


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """``tmp_path/results`` holding :func:`small_results`."""
    return small_results(tmp_path / "results")


@pytest.fixture
def lookup() -> Callable[[str], TaskSpec | None]:
    return small_tasks().get


@pytest.fixture
def small_site(small: Path, lookup: Callable[[str], TaskSpec | None]) -> SiteReport:
    return build_site(small, small.parent / "site", task_lookup=lookup, registered={"dino", "selfpatch"})
