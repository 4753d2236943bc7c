"""Scale benchmarks: peak RSS of a real ``vitbench run --task knn`` at N vs 4N train images, and k-NN on cached
features (all k of the protocol) against one bare similarity pass + top-k(max k) sliced per k.

Run with ``tox -e bench`` or ``pytest -m bench tests/benchmarks/bench_scale.py --benchmark-json bench.json``; the
ratios go to each benchmark's ``extra_info`` (saved in the JSON) and are printed. The README's "Scale" table is
this file's output. ``VITBENCH_BENCH_N`` (default 3000 train images) and ``VITBENCH_BENCH_KNN``
(``train,test,dim``, default ``50000,5000,384``: the issue's measurement) set the sizes.
"""

from __future__ import annotations

import json
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


def _plain_pass(train: torch.Tensor, train_y: torch.Tensor, test: torch.Tensor, ks, c: int, chunk: int = 512):  # noqa: ANN001
    """Baseline "plain": the whole train set as normalised float32 in RAM, ``test[s:s+512] @ train.T`` per block (a
    fresh similarity matrix each), top-k(max k), each k's vote sliced from it. The code one writes first."""
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


def _kernel_pass(train: torch.Tensor, train_y: torch.Tensor, test: torch.Tensor, ks, c: int, chunk: int = 512):  # noqa: ANN001
    """Baseline "same kernel": the plain pass with the matmul ours uses, so that only the chunking over the memmap
    differs: the whole train set normalised as float32 in RAM and transposed contiguous ``[D, N]`` once, one
    ``torch.mm`` per 512 test rows into one reused ``[512, N]`` buffer, top-k(max k), each k's vote sliced from it."""
    tx, vx = (torch.nn.functional.normalize(t.float(), dim=1) for t in (train, test))
    keys = tx.T.contiguous()
    buf = torch.empty(min(chunk, len(vx)), len(tx))
    kmax = max(ks)
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for s in range(0, len(vx), chunk):
        q = vx[s : s + chunk]
        sim, idx = torch.mm(q, keys, out=buf[: len(q)]).topk(kmax, dim=1)
        w, lab = (sim / 0.07).exp(), train_y[idx]
        for k in ks:
            votes = torch.zeros(len(idx), c).scatter_add_(1, lab[:, :k], w[:, :k])
            preds[k].append(votes.topk(5, dim=1).indices)
    return {k: torch.cat(v) for k, v in preds.items()}


def test_knn_all_k_vs_one_bare_pass(benchmark, tmp_path: Path) -> None:  # noqa: ANN001
    """Ours (``knn_accuracy``: train read from the fp16 memmap 65,536 rows at a time, running top-k(max k), all k)
    vs the two bare one-pass baselines above (goal <= 1.05x the stricter "same kernel" one, identical predictions),
    and the per-k recomputation (DINO's ``knn_classify`` once per k) for scale. Each round runs the three in turn
    (order rotated per round) in this one process; each side's best round is compared (a shared machine: the
    least-disturbed rounds). ``VITBENCH_BENCH_ROUNDS`` (default 3); ``VITBENCH_BENCH_SAVE=1`` writes the ratios to
    ``tests/benchmarks/measured/knn_ratio_<train>.json``."""
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
    for warm in (_plain_pass, _kernel_pass):
        warm(t_train[:2000], ty[:2000], t_test[:512], ks, classes)
    knn_accuracy(train[:2000], ty[:2000], test[:512], vy[:512], ks, 0.07, classes)
    rounds = max(3, int(os.environ.get("VITBENCH_BENCH_ROUNDS", "3")))
    times: dict[str, list[float]] = {"plain": [], "kernel": []}
    bare: dict[str, dict] = {}
    result: dict = {}
    order = ["plain", "kernel"]

    def bare_round() -> None:  # pytest-benchmark's untimed setup: both baselines run right before each timed round
        for name in order:
            t0 = time.perf_counter()
            bare[name] = (_plain_pass if name == "plain" else _kernel_pass)(t_train, ty, t_test, ks, classes)
            times[name].append(time.perf_counter() - t0)
        order.reverse()

    def ours() -> None:
        result.update(knn_accuracy(train, ty, test, vy, ks, 0.07, classes))

    benchmark.pedantic(ours, setup=bare_round, rounds=rounds)
    plain_s, kernel_s, ours_s = min(times["plain"]), min(times["kernel"]), benchmark.stats.stats.min
    t0 = time.perf_counter()
    tx, vx = (torch.nn.functional.normalize(t.float(), dim=1) for t in (t_train, t_test))
    old = {k: knn_classify(tx, ty, vx, vy, k, 0.07, classes) for k in ks}
    per_k_s = time.perf_counter() - t0

    for k in ks:
        assert torch.equal(bare["plain"][k], bare["kernel"][k]), k  # the two baselines: the same top-5, row by row
        acc = 100.0 * float((bare["plain"][k][:, 0] == vy).sum()) / n_test
        assert result[k][0] == acc == old[k][0], k  # the same votes, three ways
    ratio, plain_ratio, per_k_ratio = ours_s / kernel_s, ours_s / plain_s, per_k_s / kernel_s
    info = {
        "train": n_train,
        "test": n_test,
        "dim": dim,
        "ks": list(ks),
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "load_avg_1m": os.getloadavg()[0],
        "ours_s": ours_s,
        "ours_rounds_s": list(benchmark.stats.stats.data),
        "bare_same_kernel_s": kernel_s,
        "bare_same_kernel_rounds_s": times["kernel"],
        "bare_plain_s": plain_s,
        "bare_plain_rounds_s": times["plain"],
        "ratio_vs_one_pass": ratio,
        "ratio_vs_plain_pass": plain_ratio,
        "goal": 1.05,
        "goal_met": ratio <= 1.05,
        "per_k_recompute_s": per_k_s,
        "per_k_ratio_vs_one_pass": per_k_ratio,
        "predictions_identical": True,
    }
    benchmark.extra_info.update(info)
    if os.environ.get("VITBENCH_BENCH_SAVE"):
        out = ROOT / "tests" / "benchmarks" / "measured" / f"knn_ratio_{n_train // 1000}k.json"
        out.write_text(json.dumps(info, indent=2) + "\n")
    line = (
        f"ours {ours_s:.2f}s, bare one pass (same kernel) {kernel_s:.2f}s: ratio {ratio:.3f} (goal <= 1.05, "
        f"{'met' if ratio <= 1.05 else 'NOT met'}); plain pass {plain_s:.2f}s: ratio {plain_ratio:.3f}"
    )
    print(f"\nk-NN {n_train}x{n_test}x{dim}, k={ks}: {line}; per-k recompute {per_k_s:.2f}s ({per_k_ratio:.2f}x)")
    assert ratio <= 1.5, "chunked k-NN far above the 1.05 goal (a shared machine adds noise; the ratio is recorded)"
