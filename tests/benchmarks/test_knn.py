"""k-NN: the weighted vote against a hand-computed example, and the harness end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks.catalog import get_task
from benchmarks.classification.knn import KnnHarness, KnnProtocol, knn_classify
from benchmarks.harness import RunContext
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
    train = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    top1, _ = knn_classify(
        train, torch.arange(5) % 2, train, torch.arange(5) % 2, k=200, temperature=0.07, num_classes=2
    )
    assert 0.0 <= top1 <= 100.0


def test_knn_harness_on_synthetic_data(imagefolder: Path, tmp_path: Path) -> None:
    enc = build_encoder("dino:vits16", weights="random")
    out = KnnHarness(get_task("knn")).run(ctx(enc, imagefolder, tmp_path), KnnProtocol.smoke())
    m = out.metrics
    assert set(m) >= {"top1", "top5", "top1_k10", "top1_k20", "top1_k100", "top1_k200"}
    assert m["top1"] == m["top1_k20"]
    assert m["top1"] > 100 / 6 + 20, "a random ViT's features still separate colour/shape classes"
    assert out.dataset.n_samples == 48 and out.probe["effective_k"]["200"] == 96


@pytest.mark.parametrize("ks", [(10, 20), (20,)])
def test_protocol_hash_changes_with_config(ks: tuple[int, ...]) -> None:
    assert KnnProtocol(ks=ks).hash() != KnnProtocol().hash()
    assert KnnProtocol().hash() == KnnProtocol().hash()
