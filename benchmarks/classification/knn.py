"""Weighted k-NN on L2-normalised global features: DINO's ``eval_knn.py`` protocol.

For each val image the k most cosine-similar train images vote for their class with weight
``exp(similarity / T)``; top-1/top-5 are read off the summed votes. k = 20 is the headline.

:func:`knn_predict` is what the harness runs: one similarity pass for all k of the protocol, in chunks of train rows
(read once, straight from the memory-mapped fp16 cache) x blocks of test rows (never the whole train x test
similarity matrix, nor the train features as float32, in memory), a running top-k(max k) per test row, then each
k's vote from the first k neighbours.
Its predictions are those of :func:`knn_classify` (DINO's ``knn_classifier``, one k and all train rows at once;
the reference the tests compare with). Under torchrun the test chunks are dealt out over ranks and the correct
counts summed (integers: the metrics are those of one process).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.classification.common import load_splits, require_train_size
from benchmarks.classification.protocols import KnnProtocol
from benchmarks.data.imagefolder import Split
from benchmarks.distributed import DistInfo, all_sum, distributed
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.engine import as_tensor, dataset_info, global_features, transform_for

__all__ = ["KnnHarness", "KnnProtocol", "knn_classify", "knn_predict"]

Features = np.ndarray | torch.Tensor  # [N, D]: a (memory-mapped) fp16 array or a tensor, not yet normalised


@torch.no_grad()
def knn_classify(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int,
    temperature: float,
    num_classes: int,
    chunk: int = 256,
) -> tuple[float, float]:
    """Top-1/top-5 (%) of the weighted vote. Features ``[N, D]`` must already be L2-normalised."""
    k = min(k, train_x.shape[0])
    correct1 = correct5 = 0.0
    for s in range(0, test_x.shape[0], chunk):
        sim = test_x[s : s + chunk] @ train_x.T  # [b, N_train] cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, dtype=sim.dtype, device=sim.device)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
        pred = votes.topk(min(5, num_classes), dim=1).indices
        target = test_y[s : s + chunk, None]
        correct1 += (pred[:, :1] == target).sum().item()
        correct5 += (pred == target).any(dim=1).sum().item()
    n = test_x.shape[0]
    return 100.0 * correct1 / n, 100.0 * correct5 / n


def _rows(x: Features, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` as L2-normalised float32 (row-wise: the same values as normalising all rows at once)."""
    block = x[start:stop]
    t = torch.from_numpy(np.array(block)) if isinstance(block, np.ndarray) else block  # a copy: memmaps are read-only
    return F.normalize(t.float(), dim=1)


class _TrainChunks:
    """Train rows ``chunk`` at a time as the transposed, L2-normalised float32 keys ``[D, rows]`` of the similarity
    matmul, in buffers allocated once and reused for every chunk: a staging copy of the memmap rows (the cache's
    dtype), their float32 normalised values (``F.normalize``'s own ops, in place: the same bits), and their
    contiguous transpose (``q @ keys`` with contiguous keys is the faster GEMM layout here, with the same bits as
    ``q @ rows.T``)."""

    def __init__(self, x: Features, chunk: int) -> None:
        self.x, self.n, self.d = x, len(x), int(x.shape[1])
        self.chunk = max(1, min(chunk, self.n))
        self.stage = np.empty((self.chunk, self.d), x.dtype) if isinstance(x, np.ndarray) else None
        self.rows = torch.empty(self.chunk, self.d)
        self.keys = torch.empty(self.chunk * self.d)

    def __call__(self, start: int) -> torch.Tensor:
        m = min(self.chunk, self.n - start)
        rows = self.rows[:m]
        if isinstance(self.x, torch.Tensor):
            rows.copy_(self.x[start : start + m])
        else:
            assert self.stage is not None
            stage = self.stage[:m]
            np.copyto(stage, self.x[start : start + m])
            rows.copy_(torch.from_numpy(stage))
        rows.div_(rows.norm(2, 1, keepdim=True).clamp_min_(1e-12))  # F.normalize(dim=1), in place
        keys = self.keys[: m * self.d].view(self.d, m)
        keys.copy_(rows.T)
        return keys


@torch.no_grad()
def knn_neighbours(
    train_x: Features,
    test_x: Features,
    k: int,
    *,
    rows: Sequence[tuple[int, int]],
    train_chunk: int = 65536,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``k`` most cosine-similar train rows of each test block ``(start, stop)`` in ``rows``: (similarities,
    train indices), each ``[stop - start, k]``, in descending similarity. Train rows are read (and normalised) once,
    ``train_chunk`` at a time, each chunk against every test block. After the first chunk the block's running top-k
    sits in the first ``k`` columns of the similarity buffer and the chunk's similarities are written after it, so
    one top-k over ``[block, k + chunk]`` is the merge: its heap starts from the best so far, so few of the chunk's
    values enter it (a separate top-k of each chunk cost a fixed ~45 ms per 512 rows and chunk, 1.29x the one-pass
    time at two chunks). Memory is ``[block, k + train_chunk]`` (one reused buffer) plus ``[test rows, k]``, whatever
    the train-set size."""
    n = len(train_x)
    queries = [_rows(test_x, start, stop) for start, stop in rows]
    chunks = _TrainChunks(train_x, train_chunk)
    kmax = min(k, n)
    sim_buf = torch.empty(max((len(q) for q in queries), default=0) * (kmax + chunks.chunk))
    best: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(queries)
    for t in range(0, n, chunks.chunk):
        keys = chunks(t)  # [D, m]
        m = keys.shape[1]
        for i, q in enumerate(queries):
            prev = best[i]
            if prev is None:  # the first chunk: its own top-k
                sim = sim_buf[: len(q) * m].view(len(q), m)
                torch.mm(q, keys, out=sim)
                top_sim, top_idx = sim.topk(min(kmax, m), dim=1)
                best[i] = (top_sim, top_idx + t if t else top_idx)
                continue
            kk = prev[0].shape[1]
            sim = sim_buf[: len(q) * (kk + m)].view(len(q), kk + m)
            sim[:, :kk].copy_(prev[0])
            torch.mm(q, keys, out=sim[:, kk:])  # row stride kk + m: BLAS writes in place, the same values
            top_sim, pos = sim.topk(min(kmax, kk + m), dim=1)
            from_prev = pos < kk
            idx = torch.where(from_prev, prev[1].gather(1, pos.clamp(max=kk - 1)), pos + (t - kk))
            best[i] = (top_sim, idx)
    # None only without train rows
    none = [(torch.empty(len(q), 0), torch.empty(len(q), 0, dtype=torch.long)) for q in queries]
    return [e if b is None else b for b, e in zip(best, none)]


@torch.no_grad()
def knn_predict(
    train_x: Features,
    train_y: torch.Tensor,
    test_x: Features,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    *,
    test_chunk: int = 512,
    train_chunk: int = 65536,
    chunks: Iterable[int] | None = None,
) -> dict[int, dict[int, torch.Tensor]]:
    """Top-5 predicted classes of the weighted vote, for every k at once: ``{k: {chunk: [rows, min(5, C)]}}``
    where chunk ``c`` holds test rows ``c * test_chunk ...``; ``chunks`` picks which (default: all). k is capped at
    the train-set size; one similarity pass and one top-k(max k) serve all k."""
    n_train, n_test = len(train_x), len(test_x)
    kmax = min(max(ks), n_train)
    mine = list(range((n_test + test_chunk - 1) // test_chunk) if chunks is None else chunks)
    rows = [(c * test_chunk, min((c + 1) * test_chunk, n_test)) for c in mine]
    out: dict[int, dict[int, torch.Tensor]] = {k: {} for k in ks}
    for c, (sims, idx) in zip(mine, knn_neighbours(train_x, test_x, kmax, rows=rows, train_chunk=train_chunk)):
        labels = train_y[idx]
        weight = (sims / temperature).exp()
        for k in ks:
            kk = min(k, n_train)
            votes = torch.zeros(len(idx), num_classes, dtype=weight.dtype)
            votes.scatter_add_(1, labels[:, :kk], weight[:, :kk])
            out[k][c] = votes.topk(min(5, num_classes), dim=1).indices
    return out


def knn_accuracy(
    train_x: Features,
    train_y: torch.Tensor,
    test_x: Features,
    test_y: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    dist: DistInfo | None = None,
    test_chunk: int = 512,
) -> dict[int, tuple[float, float]]:
    """``{k: (top-1, top-5)}`` (%) of :func:`knn_predict`; with ``dist`` each rank votes for every world-th test
    chunk and the counts are summed over ranks."""
    n_chunks = (len(test_x) + test_chunk - 1) // test_chunk
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    preds = knn_predict(
        train_x,
        train_y,
        test_x,
        ks,
        temperature,
        num_classes,
        test_chunk=test_chunk,
        chunks=range(rank, n_chunks, world),
    )
    counts: list[float] = []
    for k in ks:
        c1 = c5 = 0
        for c, pred in preds[k].items():
            target = test_y[c * test_chunk : c * test_chunk + len(pred), None]
            c1 += int((pred[:, :1] == target).sum())
            c5 += int((pred == target).any(dim=1).sum())
        counts += [c1, c5]
    if dist is not None:
        counts = all_sum(counts, dist)
    n = len(test_x)
    return {k: (100.0 * counts[2 * i] / n, 100.0 * counts[2 * i + 1] / n) for i, k in enumerate(ks)}


class KnnHarness(Harness):
    """The ``knn`` task: features from ``forward_global``, extracted once per split through the cache."""

    def run(self, ctx: RunContext, protocol: KnnProtocol) -> RunOutput:
        train, val = load_splits(ctx.data_root)
        require_train_size(train, protocol.headline_k, f"the headline k={protocol.headline_k} of the k-NN vote needs")
        with distributed(ctx) as info:
            return self._run(ctx, protocol, info, train, val)

    def _run(self, ctx: RunContext, protocol: KnnProtocol, info: DistInfo, train: Split, val: Split) -> RunOutput:
        encoder = ctx.encoder
        kw = {"resolution": protocol.resolution, "device": info.device, "cache_dir": ctx.cache_dir, "dist": info}
        tr, va = (global_features(encoder, s, progress=ctx.progress, **kw) for s in (train, val))
        ks = sorted(set(protocol.ks) | {protocol.headline_k})
        accs = knn_accuracy(
            tr["global"],
            as_tensor(tr["labels"]).long(),
            va["global"],
            as_tensor(va["labels"]).long(),
            ks,
            protocol.temperature,
            len(train.classes),
            info,
        )
        metrics: dict[str, float] = {}
        for k in ks:
            metrics[f"top1_k{k}"], metrics[f"top5_k{k}"] = accs[k]
        metrics["top1"] = metrics[f"top1_k{protocol.headline_k}"]
        metrics["top5"] = metrics[f"top5_k{protocol.headline_k}"]
        probe = {
            "features": f"forward_global ({encoder.spec.global_pool})",
            "normalisation": "L2",
            "resolution": transform_for(encoder, protocol.resolution).size,
            "n_train": len(train),
            "n_classes": len(train.classes),
            "effective_k": {str(k): min(k, len(train)) for k in protocol.ks},
        }
        return RunOutput(metrics=metrics, dataset=dataset_info(ctx.data_root, train, val), probe=probe)
