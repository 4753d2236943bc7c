"""k-NN: the weighted vote against a hand-computed example, and the harness end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks.catalog import get_task
from benchmarks.classification.common import load_splits
from benchmarks.classification.knn import KnnHarness, KnnProtocol, knn_classify
from benchmarks.harness import RunContext
from benchmarks.probe.engine import as_tensor, global_features
from methods import build_encoder


def ctx(enc, data: Path, work: Path) -> RunContext:
    return RunContext(task=get_task("knn"), encoder=enc, data_root=data, work_dir=work, progress=False)


def test_weighted_vote_by_hand() -> None:
    # Train points on the unit circle; test point at angle 0. Similarities: cos(0)=1, cos(60°)=.5, cos(90°)=0,
    # cos(180°)=-1. Classes: A=0 at 0° and 180°, B=1 at 60° and 90°.
    ang = torch.tensor([0.0, 60.0, 90.0, 180.0]) * math.pi / 180
    train = torch.stack([ang.cos(), ang.sin()], 1)
    labels = torch.tensor([0, 1, 1, 0])
    test = torch.tensor([[1.0, 0.0]])
    # k=1: nearest is class 0.
    assert knn_classify(train, labels, test, torch.tensor([0]), k=1, temperature=0.07, num_classes=2)[0] == 100.0
    # k=3, T=1: votes A = e^1 = 2.718, B = e^.5 + e^0 = 2.649 -> A wins.
    assert knn_classify(train, labels, test, torch.tensor([0]), k=3, temperature=1.0, num_classes=2)[0] == 100.0
    # k=3, T=10: A = e^.1 = 1.105, B = e^.05 + e^0 = 2.051 -> B wins: the temperature matters.
    assert knn_classify(train, labels, test, torch.tensor([0]), k=3, temperature=10.0, num_classes=2)[0] == 0.0
    # top-5 with 2 classes always contains the label.
    assert knn_classify(train, labels, test, torch.tensor([0]), k=3, temperature=10.0, num_classes=2)[1] == 100.0


def test_k_larger_than_train_set_is_clipped() -> None:
    # Three train points at 0°, 120°, 240° (classes A, B, B); the test point at 0° is class A. Similarities 1, -.5,
    # -.5. k=200 must mean "all 3": at T=10, A = e^.1 = 1.105 < B = 2 e^-.05 = 1.902, so B wins (k=1 would say A).
    ang = torch.tensor([0.0, 120.0, 240.0]) * math.pi / 180
    train = torch.stack([ang.cos(), ang.sin()], 1)
    labels, test, target = torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    assert knn_classify(train, labels, test, target, k=200, temperature=10.0, num_classes=2) == (0.0, 100.0)
    assert knn_classify(train, labels, test, target, k=1, temperature=10.0, num_classes=2) == (100.0, 100.0)
    # and it equals k = N exactly on random data
    x = torch.nn.functional.normalize(torch.randn(7, 8), dim=1)
    y = torch.arange(7) % 3
    assert knn_classify(x, y, x, y, k=200, temperature=0.5, num_classes=3) == knn_classify(
        x, y, x, y, k=7, temperature=0.5, num_classes=3
    )


def _vote_by_loops(tx: torch.Tensor, ty: list[int], vx: torch.Tensor, vy: list[int], k: int, t: float) -> float:
    """DINO's weighted vote written out per sample, independently of :func:`knn_classify`: top-1 in %."""
    correct = 0
    for i in range(vx.shape[0]):
        sims = sorted(((float(tx[j] @ vx[i]), j) for j in range(tx.shape[0])), reverse=True)[: min(k, tx.shape[0])]
        votes: dict[int, float] = {}
        for sim, j in sims:
            votes[ty[j]] = votes.get(ty[j], 0.0) + math.exp(sim / t)
        correct += max(votes, key=lambda c: votes[c]) == vy[i]
    return 100.0 * correct / vx.shape[0]


def test_knn_harness_on_synthetic_data(imagefolder: Path, tmp_path: Path) -> None:
    enc = build_encoder("dino:vits16", weights="random")
    out = KnnHarness(get_task("knn")).run(ctx(enc, imagefolder, tmp_path), KnnProtocol.smoke())
    m = out.metrics
    assert set(m) >= {"top1", "top5", "top1_k10", "top1_k20", "top1_k100", "top1_k200"}
    assert m["top1"] == m["top1_k20"]
    assert out.dataset.n_samples == 48 and out.probe["effective_k"]["200"] == 96
    # The harness's numbers are the vote over the same encoder's L2-normalised features, k by k.
    train, val = load_splits(imagefolder)
    p = KnnProtocol.smoke()
    feats = [
        global_features(enc, s, progress=False, resolution=p.resolution, device="cpu", cache_dir=None)
        for s in (train, val)
    ]
    (tx, ty), (vx, vy) = [
        (
            torch.nn.functional.normalize(as_tensor(f["global"]).float(), dim=1),
            as_tensor(f["labels"]).tolist(),
        )
        for f in feats
    ]
    for k in p.ks:
        assert m[f"top1_k{k}"] == pytest.approx(_vote_by_loops(tx, ty, vx, vy, k, p.temperature), abs=1e-9), k
    assert m["top1"] > 100 / 6 + 20, "a random ViT's features still separate colour/shape classes"


@pytest.mark.parametrize("ks", [(10, 20), (20,)])
def test_protocol_hash_changes_with_config(ks: tuple[int, ...]) -> None:
    assert KnnProtocol(ks=ks).hash() != KnnProtocol().hash()
    assert KnnProtocol().hash() == KnnProtocol().hash()


def _reference_predictions(train: torch.Tensor, labels: torch.Tensor, test: torch.Tensor, k: int, c: int):
    """The vote as :func:`knn_classify` (DINO's ``knn_classifier``) casts it: all train rows at once, one k."""
    tx, vx = (torch.nn.functional.normalize(t.float(), dim=1) for t in (train, test))
    sim = vx @ tx.T
    top_sim, top_idx = sim.topk(min(k, len(tx)), dim=1)
    votes = torch.zeros(len(vx), c).scatter_add_(1, labels[top_idx], (top_sim / 0.07).exp())
    return votes.topk(min(5, c), dim=1).indices


def test_chunked_one_pass_predictions_equal_dinos_vote_for_every_k() -> None:
    """One similarity pass over train chunks (a running top-k(max k)) read from an fp16 memmap-like array gives the
    same top-5 predictions, for each k, as DINO's vote over the whole similarity matrix, and the same accuracies as
    :func:`knn_classify`."""
    import numpy as np

    from benchmarks.classification.knn import knn_accuracy, knn_predict

    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(7, 32, generator=gen)
    train_y, test_y = torch.randint(0, 7, (1000,), generator=gen), torch.randint(0, 7, (130,), generator=gen)
    train = (centres[train_y] + 1.5 * torch.randn(1000, 32, generator=gen)).half().numpy()  # as the cache stores it
    test = (centres[test_y] + 1.5 * torch.randn(130, 32, generator=gen)).half().numpy()
    ks = (1, 10, 20, 100, 200)
    preds = knn_predict(train, train_y, test, ks, 0.07, 7, test_chunk=48, train_chunk=96)  # 3 x 11 chunks
    tt, vt = torch.from_numpy(train.astype(np.float32)), torch.from_numpy(test.astype(np.float32))
    for k in ks:
        got = torch.cat([preds[k][c] for c in sorted(preds[k])])
        assert torch.equal(got, _reference_predictions(tt, train_y, vt, k, 7)), k
    accs = knn_accuracy(train, train_y, test, test_y, ks, 0.07, 7, test_chunk=48)
    for k in ks:
        nt, nv = (torch.nn.functional.normalize(t, dim=1) for t in (tt, vt))
        assert accs[k] == knn_classify(nt, train_y, nv, test_y, k, 0.07, 7), k
    # The chunks of one rank of two are every other test chunk: the two ranks together cover each test row once.
    halves = [knn_predict(train, train_y, test, (20,), 0.07, 7, test_chunk=48, chunks=range(r, 3, 2)) for r in (0, 1)]
    assert sorted(halves[0][20]) == [0, 2] and sorted(halves[1][20]) == [1]


@pytest.mark.parametrize("train_chunk", [1, 7, 96, 199, 200, 201, 1000, 5000])
def test_running_top_k_equals_the_whole_matrix_top_k(train_chunk: int) -> None:
    """The merge in the similarity buffer (the best so far in its first k columns, the chunk's similarities written
    after them by a strided matmul) gives the whole matrix's top-k: the same train rows in the same order, for
    chunks smaller than, equal to and larger than k. (Similarities agree to float32 rounding, not bit for bit: BLAS
    picks its kernel by matrix shape, and a 32-row block against a 7-row chunk is another shape than 70 x 1000.)"""
    import numpy as np

    from benchmarks.classification.knn import knn_neighbours

    gen = torch.Generator().manual_seed(1)
    train = torch.randn(1000, 24, generator=gen).half().numpy()
    test = torch.randn(70, 24, generator=gen).half().numpy()
    rows = [(0, 32), (32, 64), (64, 70)]
    got = knn_neighbours(train, test, 200, rows=rows, train_chunk=train_chunk)
    tx, vx = (torch.nn.functional.normalize(torch.from_numpy(a.astype(np.float32)), dim=1) for a in (train, test))
    want_sim, want_idx = (vx @ tx.T).topk(200, dim=1)
    for (start, stop), (sim, idx) in zip(rows, got):
        torch.testing.assert_close(sim, want_sim[start:stop], rtol=0, atol=1e-6)
        assert torch.equal(idx, want_idx[start:stop])  # random fp16 features: no near-ties
    assert knn_neighbours(train, test, 5000, rows=rows[:1], train_chunk=train_chunk)[0][0].shape == (32, 1000)
