"""Peak RSS of a real ``vitbench run --task linear`` at N vs 4N train images: the grid's recipes (CLS of the last 4
blocks concatenated, with and without the avg-pooled patches) are built per mini-batch from the fp16 memmap
(:mod:`benchmarks.probe.rows`), so memory must not grow with the data (goal <= 1.10x).

Run with ``pytest -m bench tests/benchmarks/bench_scale_linear.py --benchmark-only -s --benchmark-json out.json``.
``VITBENCH_BENCH_N`` (default 2000 train images) sets N; ``VITBENCH_BENCH_LINEAR_SET`` the ``--set`` overrides
(default ``epochs=2 batch_size=256``: the smoke protocol's 40 epochs at batch 32 would take long at 4N, and the
memory of the grid does not depend on the number of epochs). The README's "Scale" table has this file's row.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.benchmarks.bench_scale import _peak_rss_mib

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[2]


def test_peak_rss_of_linear_run_n_vs_4n(benchmark, tmp_path: Path) -> None:  # noqa: ANN001
    """Scan, content hash, extraction of 4 blocks (CLS + avg-pooled patches) into the fp16 memmap, the grid trained
    on batches gathered from it, hold-out and val scored a chunk at a time: at N and 4N train images."""
    from benchmarks.data.imagefolder import synth_imagefolder

    n = int(os.environ.get("VITBENCH_BENCH_N", "2000"))
    overrides = os.environ.get("VITBENCH_BENCH_LINEAR_SET", "epochs=2 batch_size=256").split()
    peaks: dict[int, float] = {}
    for images in (n, 4 * n):
        data = synth_imagefolder(tmp_path / f"data{images}", n_classes=6, n_train=images // 6, n_val=20, size=32)
        env = {**os.environ, "VITBENCH_CACHE": str(tmp_path / f"cache{images}"), "VITBENCH_WORKERS": "0"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "benchmarks.cli", "run", "--method", "dino", "--task", "linear"]
        cmd += ["--data", str(data), "--weights", "random", "--smoke", "--out", str(tmp_path / f"out{images}")]
        cmd += ["--no-progress", *(a for kv in overrides for a in ("--set", kv))]
        peaks[images] = _peak_rss_mib(cmd, env)
    ratio = peaks[4 * n] / peaks[n]
    info = {"n": n, "set": overrides, "peak_rss_mib_n": peaks[n], "peak_rss_mib_4n": peaks[4 * n], "ratio": ratio}
    benchmark.extra_info.update(info)
    benchmark.pedantic(lambda: None, rounds=1)
    print(
        f"\npeak RSS of vitbench run --task linear: {n} images {peaks[n]:.0f} MiB, {4 * n} {peaks[4 * n]:.0f} MiB: "
        f"ratio {ratio:.3f} (goal <= 1.10)"
    )
    assert ratio <= 1.10
