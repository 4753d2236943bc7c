"""Fixtures of the dense tests: synthetic COCO and ADE20K sets, a random-weight DINO ViT-S/16, a harness runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``vitbench data synth coco``: 16 train / 8 val images, two categories, polygons (read-only, shared)."""
    from benchmarks.synth import synth

    return synth("coco", tmp_path_factory.mktemp("coco"), seed=0)


@pytest.fixture(scope="session")
def ade20k_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``vitbench data synth ade20k``: its ADEChallengeData2016 folder, 8 training / 4 validation images (shared)."""
    from benchmarks.synth import synth

    return synth("ade20k", tmp_path_factory.mktemp("ade20k"), seed=0)


@pytest.fixture(scope="session")
def vit_encoder():
    """DINO ViT-S/16 with seeded random weights (frozen, eval mode, as ``build_encoder`` returns it)."""
    from methods import build_encoder

    return build_encoder("dino", "vits16", weights="random", seed=0)


@pytest.fixture
def run_task() -> Callable[..., Any]:
    """``run_task(task, encoder, data_root, work_dir, smoke=True, launcher="none", **overrides)``: the task's
    harness from the catalogue, run on CPU under the harness contract with its (smoke) protocol + overrides."""
    from benchmarks.catalog import get_task
    from benchmarks.harness import RunContext, load_harness

    def run(task: str, encoder, data_root: Path, work_dir: Path, smoke: bool = True, launcher: str = "none", **kw):
        spec = get_task(task)
        ctx = RunContext(
            task=spec,
            encoder=encoder,
            data_root=Path(data_root),
            work_dir=Path(work_dir),
            seed=0,
            device="cpu",
            launcher=launcher,
            progress=False,
            smoke=smoke,
        )
        return load_harness(task).run(ctx, spec.protocol_for(smoke, kw))

    return run


@pytest.fixture
def run_coco(run_task: Callable[..., Any]) -> Callable[..., Any]:
    """The COCO tests' name for :func:`run_task`."""
    return run_task


@pytest.fixture(autouse=True)
def _dense_stack(request: pytest.FixtureRequest) -> None:
    """``dense`` tests run only when asked for (``-m dense``): without the mm* stack they fail with the command
    that installs it, rather than skip (CI builds the stack first, in .ci/run)."""
    import importlib.util

    if request.node.get_closest_marker("dense") is None:
        return
    missing = [m for m in ("mmcv", "mmengine", "mmdet", "mmseg") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"mm* stack not installed ({', '.join(missing)} missing): python -m benchmarks.dense.build_mmcv")
