"""Linear probes: the grid beats chance, per-head learning rates are exact, selection is on held-out train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.catalog import get_task
from benchmarks.classification.linear import (
    LinearHarness,
    LinearProtocol,
    PerLayerLinearHarness,
    PerLayerProtocol,
    holdout_split,
    train_head_grid,
)
from benchmarks.harness import RunContext
from methods import build_encoder


def ctx(enc, data: Path, work: Path) -> RunContext:
    return RunContext(task=get_task("knn"), encoder=enc, data_root=data, work_dir=work, progress=False)


def test_linear_grid_beats_chance(imagefolder: Path, tmp_path: Path) -> None:
    enc = build_encoder("dino:vits16", weights="random")
    out = LinearHarness(get_task("linear")).run(ctx(enc, imagefolder, tmp_path), LinearProtocol.smoke())
    chance = 100 / 6
    assert out.metrics["top1"] > chance + 30
    grid = out.extra["grid"]
    assert len(grid) == 4 * 3  # {last1, last4} x {cls, +avg} x 3 lrs
    best = out.probe["selected_head"]
    assert grid[best]["holdout_top1"] == max(g["holdout_top1"] for g in grid.values())
    assert out.probe["blocks"] == [8, 9, 10, 11]


def test_per_head_learning_rates_match_separate_training() -> None:
    """One stacked matrix with loss scaled by lr == independent SGD heads with their own lr."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    lrs = (0.01, 0.5)
    torch.manual_seed(1)
    grid = train_head_grid(
        {"f": x},
        y,
        3,
        lrs,
        epochs=3,
        batch_size=16,
        momentum=0.9,
        weight_decay=0.0,
        seed=0,
        device="cpu",
        progress=False,
    )
    for h, lr in enumerate(lrs):
        torch.manual_seed(1)  # the same initial weights as the grid's stacked matrix
        stacked = torch.nn.Linear(5, len(lrs) * 3)
        torch.nn.init.normal_(stacked.weight, std=0.01)
        head = torch.nn.Linear(5, 3)
        head.weight.data = stacked.weight.data.view(2, 3, 5)[h].clone()
        head.bias.data.zero_()
        opt = torch.optim.SGD(head.parameters(), lr=lr * 16 / 256, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3 * 4)
        gen = torch.Generator().manual_seed(0)
        for _ in range(3):
            perm = torch.randperm(64, generator=gen)
            for s in range(0, 64, 16):
                idx = perm[s : s + 16]
                loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        torch.testing.assert_close(grid[f"f@lr={lr:g}"].weight, head.weight, atol=1e-5, rtol=1e-4)


def test_holdout_split_is_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(4), [10, 10, 3, 1])
    fit, hold = holdout_split(labels, 0.2, seed=0)
    assert set(fit).isdisjoint(hold) and len(fit) + len(hold) == len(labels)
    assert [int((labels[hold] == c).sum()) for c in range(4)] == [2, 2, 1, 0]  # singleton classes stay in train
    assert np.array_equal(holdout_split(labels, 0.2, seed=0)[1], hold)


def test_per_layer_probe_reads_every_block_from_one_cache(imagefolder: Path, tmp_path: Path) -> None:
    enc = build_encoder("dino:vits16", weights="random")
    out = PerLayerLinearHarness(get_task("linear-perlayer")).run(
        ctx(enc, imagefolder, tmp_path), PerLayerProtocol.smoke(blocks=(0, 5, 11))
    )
    assert {k for k in out.metrics if k.startswith("top1_b")} == {"top1_b0", "top1_b5", "top1_b11"}
    assert out.metrics["top1"] == out.metrics["top1_b11"]
    assert all(out.metrics[k] > 100 / 6 for k in out.metrics)


def test_probes_on_a_hierarchical_encoder(imagefolder: Path, tmp_path: Path) -> None:
    """ResNet stages differ in width: the linear grid probes the last stage, per-layer probes group by width."""
    enc = build_encoder("dino:rn50", weights="random")
    out = LinearHarness(get_task("linear")).run(ctx(enc, imagefolder, tmp_path), LinearProtocol.smoke())
    assert out.probe["blocks"] == [4] and out.probe["recipes"] == ["cls_last1", "cls_last1+avg"]
    assert out.metrics["top1"] > 100 / 6
    per = PerLayerLinearHarness(get_task("linear-perlayer")).run(
        ctx(enc, imagefolder, tmp_path), PerLayerProtocol.smoke(blocks=(2, 4))
    )
    assert set(per.metrics) == {"top1", "top1_b2", "top1_b4"}
