"""Scale benchmarks: peak RSS of a real ``vitbench run --task knn`` at N vs 4N train images, and k-NN on cached
features (all k of the protocol) against one bare similarity pass + top-k(max k) sliced per k.

Run with ``tox -e bench`` or ``pytest -m bench tests/benchmarks/bench_scale.py --benchmark-json bench.json``; the
ratios go to each benchmark's ``extra_info`` (saved in the JSON) and are printed. The README's "Scale" table is
this file's output. ``VITBENCH_BENCH_N`` (default 3000 train images) and ``VITBENCH_BENCH_KNN``
(``train,test,dim``, default ``50000,5000,384``: the issue's measurement) set the sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.classification.knn import knn_accuracy, knn_classify

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[2]


def _peak_rss_mib(cmd: list[str], env: dict[str, str]) -> float:
    """Peak resident set of ``cmd`` (one process: DataLoader workers off), from the kernel's rusage of the child."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    return usage.ru_maxrss / 1024  # KiB on Linux


def test_peak_rss_of_knn_run_n_vs_4n(benchmark, tmp_path: Path) -> None:  # noqa: ANN001
    """The whole k-NN pipeline (scan, content hash, extraction into the fp16 memmap, chunked k-NN) at N and 4N train
    images: memory must not grow with the data (goal <= 1.10x)."""
    from benchmarks.data.imagefolder import synth_imagefolder

    n = int(os.environ.get("VITBENCH_BENCH_N", "3000"))
    peaks: dict[int, float] = {}
    for images in (n, 4 * n):
        data = synth_imagefolder(tmp_path / f"data{images}", n_classes=6, n_train=images // 6, n_val=20, size=32)
        env = {**os.environ, "VITBENCH_CACHE": str(tmp_path / f"cache{images}"), "VITBENCH_WORKERS": "0"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "benchmarks.cli", "run", "--method", "dino", "--task", "knn", "--data", str(data)]
        cmd += ["--weights", "random", "--smoke", "--out", str(tmp_path / f"out{images}"), "--no-progress"]
        peaks[images] = _peak_rss_mib(cmd, env)
    ratio = peaks[4 * n] / peaks[n]
    benchmark.extra_info.update({"n": n, "peak_rss_mib_n": peaks[n], "peak_rss_mib_4n": peaks[4 * n], "ratio": ratio})
    benchmark.pedantic(lambda: None, rounds=1)
    print(
        f"\npeak RSS of vitbench run --task knn: {n} images {peaks[n]:.0f} MiB, {4 * n} {peaks[4 * n]:.0f} MiB: "
        f"ratio {ratio:.3f} (goal <= 1.10)"
    )
    assert ratio <= 1.10


def _one_pass(train: torch.Tensor, train_y: torch.Tensor, test: torch.Tensor, ks, c: int, chunk: int = 512):  # noqa: ANN001
    """The bare baseline: normalised float32 features in RAM, one similarity pass, top-k(max k) sliced per k."""
    tx, vx = (torch.nn.functional.normalize(t.float(), dim=1) for t in (train, test))
    kmax = max(ks)
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for s in range(0, len(vx), chunk):
        sim, idx = (vx[s : s + chunk] @ tx.T).topk(kmax, dim=1)
        w, lab = (sim / 0.07).exp(), train_y[idx]
        for k in ks:
            votes = torch.zeros(len(idx), c).scatter_add_(1, lab[:, :k], w[:, :k])
            preds[k].append(votes.topk(5, dim=1).indices)
    return {k: torch.cat(v) for k, v in preds.items()}


def test_knn_all_k_vs_one_bare_pass(benchmark, tmp_path: Path) -> None:  # noqa: ANN001
    """Ours (chunks of train read from the fp16 memmap, running top-k(max k)) vs the bare one-pass baseline (goal
    <= 1.05x, identical predictions), and the per-k recomputation (DINO's ``knn_classify`` once per k) for scale."""
    n_train, n_test, dim = (int(v) for v in os.environ.get("VITBENCH_BENCH_KNN", "50000,5000,384").split(","))
    gen = torch.Generator().manual_seed(0)
    classes = 100
    centres = torch.randn(classes, dim, generator=gen)
    ty, vy = torch.randint(0, classes, (n_train,), generator=gen), torch.randint(0, classes, (n_test,), generator=gen)
    for name, y in (("train", ty), ("test", vy)):
        arr = np.lib.format.open_memmap(tmp_path / f"{name}.npy", "w+", np.float16, (len(y), dim))
        arr[:] = (centres[y] + 2.0 * torch.randn(len(y), dim, generator=gen)).half().numpy()
        arr.flush()
    train, test = (np.load(tmp_path / f"{n}.npy", mmap_mode="r") for n in ("train", "test"))
    ks = (10, 20, 100, 200)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    t_train, t_test = torch.from_numpy(np.array(train)), torch.from_numpy(np.array(test))
    _one_pass(t_train[:2000], ty[:2000], t_test[:512], ks, classes)  # warm-up
    rounds = int(os.environ.get("VITBENCH_BENCH_ROUNDS", "2"))
    bare_times: list[float] = []
    bare: dict = {}
    result: dict = {}

    def bare_round() -> None:  # pytest-benchmark's untimed setup: the baseline runs right before each timed round
        t0 = time.perf_counter()
        bare.update(_one_pass(t_train, ty, t_test, ks, classes))
        bare_times.append(time.perf_counter() - t0)

    def ours() -> None:
        result.update(knn_accuracy(train, ty, test, vy, ks, 0.07, classes))

    benchmark.pedantic(ours, setup=bare_round, rounds=rounds)
    bare_s, ours_s = min(bare_times), benchmark.stats.stats.min  # a shared machine: the least-disturbed rounds
    t0 = time.perf_counter()
    tx, vx = (torch.nn.functional.normalize(t.float(), dim=1) for t in (t_train, t_test))
    old = {k: knn_classify(tx, ty, vx, vy, k, 0.07, classes) for k in ks}
    per_k_s = time.perf_counter() - t0

    for k in ks:
        acc = 100.0 * float((bare[k][:, 0] == vy).sum()) / n_test
        assert result[k][0] == acc == old[k][0], k  # the same votes, three ways
    ratio, per_k_ratio = ours_s / bare_s, per_k_s / bare_s
    benchmark.extra_info.update(
        {
            "train": n_train,
            "test": n_test,
            "dim": dim,
            "bare_one_pass_s": bare_s,
            "ratio_vs_one_pass": ratio,
            "per_k_recompute_s": per_k_s,
            "per_k_ratio_vs_one_pass": per_k_ratio,
        }
    )
    line = f"ours {ours_s:.2f}s, bare one pass {bare_s:.2f}s (ratio {ratio:.3f}, goal <= 1.05)"
    print(f"\nk-NN {n_train}x{n_test}x{dim}, k={ks}: {line}, per-k recompute {per_k_s:.2f}s ({per_k_ratio:.2f}x)")
    assert ratio <= 1.5, "chunked k-NN far above the 1.05 goal (a shared machine adds noise; the ratio is recorded)"
