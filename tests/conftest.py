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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--adapter",
        action="append",
        default=[],
        metavar="METHOD",
        help="run the cases parametrised over methods (the contract test) for METHOD only; repeatable",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--adapter my-method``: checking one new adapter runs its own contract cases, not all 270 of them."""
    wanted = set(config.getoption("--adapter"))
    if not wanted:
        return
    from methods.registry import METHODS

    for name in wanted:
        METHODS.get(name)  # a typo is an error (did you mean), not an empty run
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (drop if "method" in params and params["method"] not in wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# Test modules whose every test is marked ``clip`` and which need open_clip at import. Without the clip extra they
# would be reported as skipped even in runs that deselect ``clip`` (the default suite, ``-m scale``): leave them
# uncollected there. A run that selects ``clip`` still collects them, and skips them loudly if open_clip is missing.
_CLIP_ONLY = {"test_image_text.py", "test_multilabel_clip.py", "test_scale_clip.py"}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name not in _CLIP_ONLY or "clip" in (config.option.markexpr or "").replace("not clip", ""):
        return None
    import importlib.util

    return True if importlib.util.find_spec("open_clip") is None else None
