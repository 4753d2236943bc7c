"""Shared fixtures: tiny synthetic data in the real layouts, an isolated feature cache, quiet progress bars."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VITBENCH_NO_PROGRESS", "1")
os.environ.setdefault("VITBENCH_WORKERS", "0")  # DataLoader workers cost more than they save on tiny sets


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own feature cache, so no test sees another's features."""
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def imagefolder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic ImageFolder (6 classes x 16 train / 8 val, 64 px JPEG), shared read-only by the session."""
    from benchmarks.synth import synth

    return synth("imagefolder", tmp_path_factory.mktemp("imagefolder"), seed=0)
