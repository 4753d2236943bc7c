"""Linear probes on frozen, cached features: a dinov2-style grid of heads trained in one pass.

Features of the blocks a protocol needs are extracted once (``Encoder.forward_probe``: per block, the
normalised CLS token and the mean of the normalised patch tokens) and cached. Then every head of the grid —
learning rates x feature recipes (CLS of the last 1 / last 4 blocks, each with or without the avg-pooled patch
tokens, as DINO's ViT-S and ViT-B recipes) — trains on the same mini-batches
(:func:`benchmarks.probe.heads.train_head_grid`). The head with the best top-1 on a held-out part of train is
selected; its val top-1 is reported.

This is not DINO's ``eval_linear.py`` protocol (that is the ``linear-dino`` task); every difference is stated in
the probe card (:func:`differences_from_dino`): no augmentation (cached eval-transform features), a grid of lrs and
recipes instead of one lr and DINO's per-architecture recipe, 90 % of train for fitting (a per-class 10 % hold-out
selects the head, no refit), the last epoch's weights instead of the best epoch on val, a per-iteration cosine.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.checkpoint import Checkpoint
from benchmarks.classification.common import load_splits, require_per_class
from benchmarks.classification.protocols import LinearProtocol, PerLayerProtocol
from benchmarks.data.imagefolder import Split
from benchmarks.distributed import DistInfo, distributed
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.engine import (
    as_tensor,
    block_features,
    dataset_info,
    fit_grid,
    recipe_rows,
    transform_for,
)
from benchmarks.probe.heads import Target, accuracy, holdout_split, train_head_grid
from benchmarks.probe.rows import RecipeRows

__all__ = [
    "LinearHarness",
    "LinearProtocol",
    "PerLayerLinearHarness",
    "PerLayerProtocol",
    "accuracy",
    "holdout_split",
    "train_head_grid",
]


def recipes(tok: torch.Tensor, avg: torch.Tensor, n_last_blocks: tuple[int, ...], avgpool: tuple[bool, ...]):
    """``tok``/``avg``: ``[N, K, d]`` for the last K blocks -> ``{recipe: [N, D]}``. DINO's ViT-S recipe is
    ``cls_last4``, its ViT-B recipe ``cls_last1+avg``."""
    out = {}
    for n_last in n_last_blocks:
        cls = tok[:, -n_last:].flatten(1)
        for pool in avgpool:
            out[f"cls_last{n_last}" + ("+avg" if pool else "")] = torch.cat([cls, avg[:, -1]], 1) if pool else cls
    return out


def block_recipes(
    f: dict[str, np.ndarray], blocks: list[int], n_last_blocks: tuple[int, ...], avgpool: tuple[bool, ...]
) -> RecipeRows:
    """:func:`recipes` of the cached per-block features ``f`` (``tok{b}`` / ``avg{b}``), built a mini-batch at a time
    from the memory-mapped cache: the same fp16 values as ``recipes`` of the stacked arrays, without holding them."""
    need = [b for b in blocks if any(b in blocks[-n:] for n in n_last_blocks)]
    keys = [f"tok{b}" for b in need] + ([f"avg{blocks[-1]}"] if any(avgpool) else [])

    def build(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tok = torch.stack([t[f"tok{b}"] for b in need], dim=1)
        avg = t[f"avg{blocks[-1]}"][:, None] if any(avgpool) else tok[:, -1:]
        return recipes(tok, avg, n_last_blocks, avgpool)

    return recipe_rows(f, keys, build)


def _grid_kwargs(
    ctx: RunContext, protocol: LinearProtocol | PerLayerProtocol, info: DistInfo, train: Split, val: Split
) -> dict:
    """The grid's hyper-parameters, DDP group and per-epoch checkpoint (resumed by a rerun of the same run)."""
    ident = {
        "protocol": protocol.hash(),
        "weights": ctx.encoder.identity.weights_id,
        "data": f"{train.fingerprint()}:{val.fingerprint()}",
        "seed": str(ctx.seed),
        "world": str(info.world),
    }
    return {
        "dist": info,
        "checkpoint": Checkpoint(ctx.work_dir, "linear-grid", ident),
        "lrs": protocol.lrs,
        "epochs": protocol.epochs,
        "batch_size": protocol.batch_size,
        "momentum": protocol.momentum,
        "weight_decay": protocol.weight_decay,
        "holdout_fraction": protocol.holdout_fraction,
        "seed": ctx.seed,
        "device": info.device,
        "progress": ctx.progress,
    }


def _splits(ctx: RunContext) -> tuple[Split, Split]:
    train, val = load_splits(ctx.data_root)
    require_per_class(train, 2, "a class needs to be both fitted and held out for head selection")
    return train, val


def _features(
    ctx: RunContext,
    protocol: LinearProtocol | PerLayerProtocol,
    blocks: list[int],
    info: DistInfo,
    train: Split,
    val: Split,
):
    kw = {
        "resolution": protocol.resolution,
        "device": info.device,
        "cache_dir": ctx.cache_dir,
        "progress": ctx.progress,
        "dist": info,
    }
    tr, va = (block_features(ctx.encoder, s, blocks, **kw) for s in (train, val))
    return tr, va


def differences_from_dino(protocol: LinearProtocol | PerLayerProtocol) -> list[str]:
    """What this probe does differently from DINO's ``eval_linear.py`` (the ``linear-dino`` task), for the card."""
    fit = 1 - protocol.holdout_fraction
    return [
        "no augmentation: heads train on features cached from the eval transform (DINO: RandomResizedCrop + flip "
        "every epoch, features recomputed)",
        f"a grid of {len(protocol.lrs)} base lrs x feature recipes (DINO: one lr, 1e-3, and its per-architecture "
        "recipe)",
        f"heads fit on {fit:.0%} of train; the other {protocol.holdout_fraction:.0%} (per class) selects the head, "
        "with no refit on all of train (DINO: all of train)",
        "the selected head's last-epoch weights are reported (DINO: the best epoch's val top-1)",
        "cosine schedule per iteration (DINO: per epoch); features stored as fp16",
    ]


def _card(ctx: RunContext, protocol: LinearProtocol | PerLayerProtocol, blocks: list[int], pooling: str) -> dict:
    return {
        "blocks": blocks,
        "pooling": pooling,
        "resolution": transform_for(ctx.encoder, protocol.resolution).size,
        "normalisation": "final norm on every block",
        "augmentation": "none (features cached from the eval transform)",
        "differences_from_dino_eval_linear": differences_from_dino(protocol),
    }


class LinearHarness(Harness):
    """The ``linear`` task. Which blocks exist is the encoder's: a plain ViT offers its last
    ``max(n_last_blocks)`` blocks; a hierarchical encoder only its last stage (stages differ in width), so there
    ``cls_lastK`` recipes with K > 1 are not built. The probe card lists the recipes actually trained."""

    def run(self, ctx: RunContext, protocol: LinearProtocol) -> RunOutput:
        train, val = _splits(ctx)
        with distributed(ctx) as info:
            return self._run(ctx, protocol, info, train, val)

    def _run(self, ctx: RunContext, protocol: LinearProtocol, info: DistInfo, train: Split, val: Split) -> RunOutput:
        enc = ctx.encoder
        nb = enc.spec.num_blocks
        k = min(max(protocol.n_last_blocks), nb) if enc.spec.family == "vit" else 1
        blocks = list(range(nb - k, nb))
        n_last = tuple(n for n in protocol.n_last_blocks if n <= k) or (1,)
        tr, va = _features(ctx, protocol, blocks, info, train, val)
        y, vy = as_tensor(tr["labels"]).long(), as_tensor(va["labels"]).long()
        train_r = block_recipes(tr, blocks, n_last, protocol.avgpool)  # built per batch from the memmap
        val_r = block_recipes(va, blocks, n_last, protocol.avgpool)
        target = Target("single", len(train.classes))
        res = fit_grid(train_r, y, val_r, vy, target, **_grid_kwargs(ctx, protocol, info, train, val))
        probe = {
            "selected_head": res.best,
            **_card(ctx, protocol, blocks, f"{enc.spec.probe_pool} token per block"),
            "recipes": list(train_r.recipes),
            "selection": f"best holdout top-1 on {protocol.holdout_fraction:.0%} of train, last-epoch weights",
        }
        return RunOutput(
            metrics={"top1": res.metrics["top1"], "top5": res.metrics["top5"], "holdout_top1": res.holdout},
            dataset=dataset_info(ctx.data_root, train, val),
            probe=probe,
            extra={"grid": res.grid},
        )


class PerLayerLinearHarness(Harness):
    """The ``linear-perlayer`` task: one head per block (probe token and avg-pooled patches separately)."""

    def run(self, ctx: RunContext, protocol: PerLayerProtocol) -> RunOutput:
        train, val = _splits(ctx)
        with distributed(ctx) as info:
            return self._run(ctx, protocol, info, train, val)

    def _run(self, ctx: RunContext, protocol: PerLayerProtocol, info: DistInfo, train: Split, val: Split) -> RunOutput:
        enc = ctx.encoder
        blocks = list(protocol.blocks) if protocol.blocks is not None else list(range(enc.spec.num_blocks))
        tr, va = _features(ctx, protocol, blocks, info, train, val)
        y, vy = as_tensor(tr["labels"]).long(), as_tensor(va["labels"]).long()

        names = {f"b{b}": f"tok{b}" for b in blocks}
        if enc.spec.probe_pool == "token":  # otherwise the probe token already is the patch mean
            names.update({f"avg_b{b}": f"avg{b}" for b in blocks})

        def per_block(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {recipe: t[key] for recipe, key in names.items()}

        tr_r, va_r = (recipe_rows(f, list(names.values()), per_block) for f in (tr, va))  # read per batch
        target = Target("single", len(train.classes))
        res = fit_grid(tr_r, y, va_r, vy, target, **_grid_kwargs(ctx, protocol, info, train, val))
        metrics: dict[str, float] = {}
        selected = {}
        for recipe in names:
            selected[recipe] = best = res.best_of(recipe)
            metrics[f"top1_{recipe}"] = res.evaluation[best]["top1"]
        metrics["top1"] = metrics[f"top1_b{blocks[-1]}"]
        probe = _card(ctx, protocol, blocks, f"{enc.spec.probe_pool} token and avg-pooled patches per block")
        return RunOutput(
            metrics=metrics,
            dataset=dataset_info(ctx.data_root, train, val),
            probe=probe,
            extra={"selected_heads": selected},
        )
