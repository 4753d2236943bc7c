"""``linear-dino`` (DINO's eval_linear.py: features of augmented images recomputed every epoch) vs ``linear`` (one
cached extraction, a grid of heads) on the same data: wall-time ratio and top-1 gap.

Run with ``pytest -m bench tests/benchmarks/bench_linear_dino.py --benchmark-only -s``. Both train 10 epochs at batch
32 on the synthetic ImageFolder (96 train / 48 val images at 64 px) with a randomly initialised DINO ViT-S/16, so the
numbers characterise the two pipelines, not a pretrained model; the ratio and the gap are in ``extra_info``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.catalog import get_task
from benchmarks.classification.linear import LinearHarness
from benchmarks.classification.linear_dino import LinearDinoHarness
from benchmarks.classification.protocols import LinearDinoProtocol, LinearProtocol
from benchmarks.harness import RunContext
from methods import build_encoder

pytestmark = pytest.mark.bench
SETTING = {"epochs": 10, "batch_size": 32, "resolution": 64}


def test_linear_dino_vs_cached_linear(benchmark, imagefolder: Path, tmp_path: Path) -> None:  # noqa: ANN001
    enc = build_encoder("dino:vits16", weights="random")

    def ctx(task: str, work: str) -> RunContext:
        return RunContext(get_task(task), enc, imagefolder, tmp_path / work, progress=False, cache_dir=tmp_path / work)

    t0 = time.perf_counter()
    cached = LinearHarness(get_task("linear")).run(ctx("linear", "lin"), LinearProtocol.smoke(**SETTING))
    linear_s = time.perf_counter() - t0
    runs = iter(range(10))
    out = {}

    def dino() -> None:
        out["r"] = LinearDinoHarness(get_task("linear-dino")).run(
            ctx("linear-dino", f"dino{next(runs)}"), LinearDinoProtocol.smoke(**SETTING)
        )

    benchmark.pedantic(dino, rounds=1, warmup_rounds=0)
    ratio = benchmark.stats.stats.mean / linear_s
    gap = out["r"].metrics["top1"] - cached.metrics["top1"]
    benchmark.extra_info.update(
        {
            "linear_s": linear_s,
            "ratio_vs_linear": ratio,
            "top1_linear_dino": out["r"].metrics["top1"],
            "top1_linear": cached.metrics["top1"],
            "top1_gap": gap,
        }
    )
    print(
        f"\nlinear-dino {benchmark.stats.stats.mean:.1f}s vs linear {linear_s:.1f}s: ratio {ratio:.2f}; "
        f"top-1 {out['r'].metrics['top1']:.1f} vs {cached.metrics['top1']:.1f} (gap {gap:+.1f})"
    )
    assert ratio > 1  # recomputing features every epoch costs more than one cached extraction
