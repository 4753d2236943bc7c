"""Fixtures for the leaderboard tests: a small fixed results tree and the site built from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from leaderboard.build import SiteReport, build_site
from leaderboard.collect import HarnessInfo
from tests.leaderboard.factory import small_harnesses, small_results


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """``tmp_path/results`` holding :func:`small_results`."""
    return small_results(tmp_path / "results")


@pytest.fixture
def lookup() -> Callable[[str], HarnessInfo | None]:
    return small_harnesses().get


@pytest.fixture
def small_site(small: Path, lookup: Callable[[str], HarnessInfo | None]) -> SiteReport:
    return build_site(small, small.parent / "site", harness_lookup=lookup, registered={"dino", "selfpatch"})
