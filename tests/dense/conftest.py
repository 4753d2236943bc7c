"""Fixtures of the dense tests: a synthetic COCO set and a random-weight DINO ViT-S/16."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``vitbench data synth coco``: 16 train / 8 val images, two categories, polygons (read-only, shared)."""
    from benchmarks.synth import synth

    return synth("coco", tmp_path_factory.mktemp("coco"), seed=0)


@pytest.fixture(scope="session")
def vit_encoder():
    """DINO ViT-S/16 with seeded random weights (frozen, eval mode, as ``build_encoder`` returns it)."""
    from methods import build_encoder

    return build_encoder("dino", "vits16", weights="random", seed=0)


@pytest.fixture(autouse=True)
def _dense_stack(request: pytest.FixtureRequest) -> None:
    """``dense`` tests run only when asked for (``-m dense``): without the mm* stack they fail with the command
    that installs it, rather than skip (CI builds the stack first, in .ci/run)."""
    import importlib.util

    if request.node.get_closest_marker("dense") is None:
        return
    missing = [m for m in ("mmcv", "mmengine", "mmdet") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"mm* stack not installed ({', '.join(missing)} missing): python -m benchmarks.dense.build_mmcv")
