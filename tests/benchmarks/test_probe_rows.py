"""The linear grid streamed from the memory-mapped cache (:mod:`benchmarks.probe.rows`) trains and scores exactly as
the recipes held in memory, and the multi-label loss weighting under DDP gives the one-process gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.classification.linear import block_recipes, recipes
from benchmarks.probe import rows as rows_mod
from benchmarks.probe.engine import fit_grid, stack_blocks
from benchmarks.probe.heads import Target, train_head_grid
from benchmarks.probe.rows import RecipeRows, TensorRows, head_logits

BLOCKS = [8, 9, 10, 11]


def _cache(tmp_path: Path, name: str, n: int, seed: int, d: int = 24) -> dict[str, np.ndarray]:
    """Per-block fp16 arrays saved as ``.npy`` and read back memory-mapped, as the feature cache returns them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d))
    labels = rng.integers(0, 3, n)
    folder = tmp_path / name
    folder.mkdir()
    out: dict[str, np.ndarray] = {}
    for b in BLOCKS:
        for kind in ("tok", "avg"):
            x = (centres[labels] + rng.normal(size=(n, d))).astype(np.float16)
            np.save(folder / f"{kind}{b}.npy", x)
            out[f"{kind}{b}"] = np.load(folder / f"{kind}{b}.npy", mmap_mode="r")
    out["labels"] = labels
    return out


def _in_memory(f: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """What the harnesses built before streaming: every recipe for all rows, in memory."""
    return recipes(stack_blocks(f, "tok", BLOCKS), stack_blocks(f, "avg", BLOCKS), (1, 4), (False, True))


def test_take_gathers_sorted_and_returns_the_batch_order(tmp_path: Path) -> None:
    f = _cache(tmp_path, "c", 50, 0)
    streamed, memory = block_recipes(f, BLOCKS, (1, 4), (False, True)), _in_memory(f)
    assert streamed.dims == {r: x.shape[1] for r, x in memory.items()} and len(streamed) == 50
    idx = np.array([41, 3, 17, 3, 0, 49])
    got = streamed.take(idx)
    assert all(torch.equal(got[r], memory[r][idx]) for r in memory)
    sub = streamed.subset(np.array([10, 20, 30, 40]))
    assert len(sub) == 4 and torch.equal(sub.take(np.array([3, 0]))["cls_last4+avg"], memory["cls_last4+avg"][[40, 10]])
    assert all(m._mm is not None for m in streamed._mapped.values())  # read through the mapping it can release


def test_a_view_of_part_of_a_file_is_read_as_it_is() -> None:
    """Only a whole-file memmap is remapped (its offset names the file's data); a slice of one is read directly."""
    arr = np.arange(40, dtype=np.float16).reshape(10, 4)
    view = RecipeRows({"a": arr[2:]}, ["a"], lambda t: {"a": t["a"]})
    assert torch.equal(view.take(np.array([1, 0]))["a"], torch.from_numpy(arr[[3, 2]]))


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_streamed_grid_equals_the_in_memory_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Same seed: identical head weights, hold-out and val metrics and selected head, with the mapped pages released
    many times per epoch (a 4 KiB release threshold)."""
    monkeypatch.setattr(rows_mod, "RELEASE_BYTES", 4096)
    monkeypatch.setattr(rows_mod, "EVAL_ROWS", 37)  # scoring in several chunks, the last one short
    tr, va = _cache(tmp_path, "tr", 300, 1), _cache(tmp_path, "va", 90, 2)
    if kind == "single":
        target, y, vy = Target("single", 3), torch.from_numpy(tr["labels"]), torch.from_numpy(va["labels"])
    else:
        target = Target("multi", 3, loss="asl")
        y, vy = (torch.nn.functional.one_hot(torch.from_numpy(f["labels"]), 3) for f in (tr, va))
        y = torch.where(torch.rand(y.shape, generator=torch.Generator().manual_seed(0)) < 0.3, -1, y)  # partial
    kw: dict[str, Any] = dict(lrs=(0.1, 1.0), epochs=3, batch_size=32, momentum=0.9, weight_decay=1e-4)
    kw |= dict(holdout_fraction=0.2, seed=0, device="cpu", progress=False)
    streamed = fit_grid(
        block_recipes(tr, BLOCKS, (1, 4), (False, True)), y, block_recipes(va, BLOCKS, (1, 4), (False, True)), vy,
        target, **kw,
    )  # fmt: skip
    memory = fit_grid(_in_memory(tr), y, _in_memory(va), vy, target, **kw)
    assert streamed.best == memory.best and streamed.grid == memory.grid and streamed.metrics == memory.metrics
    assert len(streamed.grid) == 8
    for name, head in memory.heads.items():
        assert torch.equal(streamed.heads[name].weight, head.weight) and torch.equal(
            streamed.heads[name].bias, head.bias
        )
    recipe = memory.best.split("@")[0]
    logits = head_logits(memory.heads[memory.best], block_recipes(va, BLOCKS, (1, 4), (False, True)), recipe)
    assert torch.equal(logits, memory.heads[memory.best](_in_memory(va)[recipe].float()))


def test_train_head_grid_takes_rows_or_tensors_alike() -> None:
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0)).half()
    y = torch.arange(64) % 4
    args = ((0.5,), 2, 16, 0.9, 0.0, 3, "cpu", False)
    torch.manual_seed(3)
    a = train_head_grid({"g": x}, y, 4, *args)
    torch.manual_seed(3)
    b = train_head_grid(TensorRows({"g": x}), y, 4, *args)
    assert torch.equal(a["g@lr=0.5"].weight, b["g@lr=0.5"].weight)
    with pytest.raises(ValueError, match="64 feature rows but 10 targets"):
        train_head_grid({"g": x}, y[:10], 4, *args)


@pytest.mark.parametrize("loss", ["bce", "asl"])
def test_multilabel_ddp_weighting_gives_the_one_process_gradient(loss: str) -> None:
    """Two ranks each take every other sample of the batch. Each rank's masked loss *sum*, times the world, over the
    global count of known labels: DDP's average of the two gradients is the one-process gradient. Averaging each
    rank's own masked mean (the weighting before) is not, when the ranks know different numbers of labels."""
    gen = torch.Generator().manual_seed(0)
    b, h, c, d = 12, 2, 5, 7
    x = torch.randn(b, d, generator=gen)
    y = (torch.rand(b, c, generator=gen) < 0.4).long()
    y[0::2] = torch.where(torch.rand(b // 2, c, generator=gen) < 0.6, -1, y[0::2])  # rank 0 knows fewer labels
    target = Target("multi", c, loss=loss)
    w0 = torch.randn(d, h * c, generator=gen)

    def grad(rows: slice, weight: str) -> torch.Tensor:
        w = w0.clone().requires_grad_(True)
        logits, yr = (x[rows] @ w).view(-1, h, c), y[rows]
        if weight == "one":
            out = target.head_losses(logits, yr).sum()
        elif weight == "global":
            out = target.head_loss_sums(logits, yr).sum() * 2 / float((y >= 0).sum())
        else:  # the rank's own mean, weighted by its share of the batch
            out = target.head_losses(logits, yr).sum()
        out.backward()
        assert w.grad is not None
        return w.grad

    one = grad(slice(None), "one")
    ddp = (grad(slice(0, None, 2), "global") + grad(slice(1, None, 2), "global")) / 2
    torch.testing.assert_close(ddp, one, rtol=1e-5, atol=1e-7)
    before = (grad(slice(0, None, 2), "rank") + grad(slice(1, None, 2), "rank")) / 2
    assert not torch.allclose(before, one, rtol=1e-3, atol=1e-5)
