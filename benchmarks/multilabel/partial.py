"""Partial-label multi-label recognition (``voc-partial``, ``coco-partial``, ``nuswide-partial``).

The protocol (:mod:`benchmarks.multilabel.protocols`) keeps each training label with probability p for every p of
``proportions``; the masks come from the run's seed and are nested (:mod:`benchmarks.multilabel.masks`). Features
are extracted once through the cache, whatever the number of proportions: masks change the training targets only.
Then, per proportion,

- ``head="linear"``: the probe engine's grid of linear heads (the ``linear`` task's recipes x lrs) with ASL (or
  BCE) and unknown labels masked out of the loss, the best head on a held-out part of train selected;
- ``head="dualcoop"``: DualCoOp's prompts learned on the encoder's image-text towers over cached region
  features, the best epoch on the held-out part selected;

and the selected head or epoch is scored on the test set: ``mAP_p10`` ... ``mAP_p90`` and their mean ``mAP``. What
the official code's test-set selection would have reported is in ``extra.official_selection``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.classification.linear import block_recipes
from benchmarks.distributed import DistInfo, distributed
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.multilabel.data import dataset_info, load_partial
from benchmarks.multilabel.dualcoop import DualCoOp, EvalSet, PromptRecipe, predict, region_features, train_prompts
from benchmarks.multilabel.masks import label_draws, mask_stats, partial_targets
from benchmarks.multilabel.metrics import multilabel_ap
from benchmarks.multilabel.protocols import PartialLabelProtocol
from benchmarks.probe.data import LabelledSplit
from benchmarks.probe.engine import as_tensor, block_features, fit_grid, transform_for
from benchmarks.probe.heads import Target, holdout_split
from methods import Encoder
from methods.errors import DataError

DEVIATION = "none: region features cached once from the test transform (DualCoOp trains on RandAugment + Cutout)"


def pct(p: float) -> int:
    return round(100 * p)


def choose_head(head: str, encoder: Encoder) -> str:
    """The protocol's rule: ``auto`` is DualCoOp for an encoder with a text tower, a linear head otherwise."""
    if head == "auto":
        return "dualcoop" if encoder.has_image_text else "linear"
    if head == "dualcoop" and not encoder.has_image_text:
        encoder.image_text()  # raises the one-line "no text tower" error
    return head


def _check_train(train: LabelledSplit, holdout_fraction: float) -> None:
    if len(train) < 4:
        raise DataError(f"{train.root}: {len(train)} training images; a head needs some to fit and some held out")
    if not (train.targets == 1).any(axis=0).any():
        raise DataError(f"{train.root}: no positive label in split {train.name}")
    if holdout_fraction <= 0 or holdout_fraction >= 1:
        raise DataError(f"holdout_fraction={holdout_fraction}: must be in (0, 1)")


class PartialLabelHarness(Harness):
    """One harness for the three partial-label tasks; the layout comes from the catalogue's ``dataset_kind``."""

    def run(self, ctx: RunContext, protocol: PartialLabelProtocol) -> RunOutput:
        self.check_protocol(protocol)
        head = choose_head(protocol.head, ctx.encoder)
        train, test = load_partial(self.spec.dataset_kind, ctx.data_root, getattr(protocol, "difficult", "negative"))
        _check_train(train.split, protocol.holdout_fraction)
        full = train.split.targets
        draws = label_draws(full.shape[0], full.shape[1], ctx.seed)
        masked = {p: partial_targets(full, p, draws, protocol.min_known) for p in protocol.proportions}
        with distributed(ctx) as dist:  # torchrun: extraction sharded, heads / prompts over ranks; rank 0 writes
            if head == "linear":
                results, probe = self._linear(ctx, protocol, train.split, test.split, masked, dist)
            else:
                results, probe = self._dualcoop(ctx, protocol, train.split, test.split, masked, dist)
        metrics = {f"mAP_p{pct(p)}": results[p]["mAP"] for p in protocol.proportions}
        metrics["mAP"] = float(np.mean([results[p]["mAP"] for p in protocol.proportions]))
        official = {f"p{pct(p)}": results[p]["official"] for p in protocol.proportions}
        official_mean = float(np.mean([results[p]["official"]["mAP"] for p in protocol.proportions]))
        probe.update(
            {
                "head": head,
                "masks": {
                    f"p{pct(p)}": mask_stats(full, masked[p]) for p in protocol.proportions
                },  # kept fraction, images left without a known label
                "selection": f"best holdout mAP on {protocol.holdout_fraction:.0%} of train (its labels masked too)",
                "mAP_convention": "mean AP over test classes with a positive; classes without one are left out",
            }
        )
        extra: dict[str, Any] = {
            "official_selection": {
                "rule": "DualCoOp selects its best epoch on the test set (VAL_SPLIT == TEST_SPLIT)",
                "mAP": official_mean,
                "delta_mAP": official_mean - metrics["mAP"],
                **official,
            },
            "per_proportion": {f"p{pct(p)}": results[p]["detail"] for p in protocol.proportions},
        }
        parts = {train.split.name: train, test.split.name: test}
        info = dataset_info(ctx.data_root, train.split.classes, parts, evaluated=test.split.name)
        return RunOutput(metrics=metrics, dataset=info, probe=probe, extra=extra)

    # -- linear heads on frozen features -----------------------------------------------------------------------
    def _linear(
        self,
        ctx: RunContext,
        protocol: PartialLabelProtocol,
        train: LabelledSplit,
        test: LabelledSplit,
        masked: dict[float, np.ndarray],
        info: DistInfo,
    ) -> tuple[dict[float, dict[str, Any]], dict[str, Any]]:
        enc = ctx.encoder
        nb = enc.spec.num_blocks
        k = min(max(protocol.n_last_blocks), nb) if enc.spec.family == "vit" else 1
        blocks = list(range(nb - k, nb))
        n_last = tuple(n for n in protocol.n_last_blocks if n <= k) or (1,)
        kw = {"resolution": protocol.resolution, "device": info.device, "cache_dir": ctx.cache_dir, "dist": info}
        tr, te = (block_features(enc, s, blocks, progress=ctx.progress, **kw) for s in (train, test))
        train_r = block_recipes(tr, blocks, n_last, protocol.avgpool)  # built per batch from the memmap
        test_r = block_recipes(te, blocks, n_last, protocol.avgpool)
        vy = as_tensor(te["labels"]).long()
        target = Target(
            "multi",
            len(train.classes),
            loss=protocol.loss,
            gamma_neg=protocol.gamma_neg,
            gamma_pos=protocol.gamma_pos,
            clip=protocol.clip,
        )
        results: dict[float, dict[str, Any]] = {}
        for p, y in masked.items():
            res = fit_grid(
                train_r,
                torch.from_numpy(y).long(),
                test_r,
                vy,
                target,
                lrs=protocol.lrs,
                epochs=protocol.epochs,
                batch_size=protocol.batch_size,
                momentum=protocol.momentum,
                weight_decay=protocol.weight_decay,
                holdout_fraction=protocol.holdout_fraction,
                seed=ctx.seed,
                device=info.device,
                progress=ctx.progress,
                dist=info,
            )
            oracle = max(res.grid, key=lambda n: res.grid[n]["val_mAP"])
            results[p] = {
                "mAP": res.metrics["mAP"],
                "official": {"mAP": res.grid[oracle]["val_mAP"], "head": oracle},
                "detail": {"selected_head": res.best, "holdout_mAP": res.holdout, "micro_AP": res.metrics["micro_AP"]},
            }
        probe = {
            "features": "forward_probe per block (the linear task's recipes)",
            "blocks": blocks,
            "recipes": list(train_r.recipes),
            "loss": protocol.loss,
            "resolution": transform_for(enc, protocol.resolution).size,
            "augmentation": "none (features cached from the eval transform)",
        }
        return results, probe

    # -- DualCoOp --------------------------------------------------------------------------------------------------
    def _dualcoop(
        self,
        ctx: RunContext,
        protocol: PartialLabelProtocol,
        train: LabelledSplit,
        test: LabelledSplit,
        masked: dict[float, np.ndarray],
        info: DistInfo,
    ) -> tuple[dict[float, dict[str, Any]], dict[str, Any]]:
        enc = ctx.encoder
        towers = enc.image_text()
        kw: dict[str, Any] = {"device": info.device, "cache_dir": ctx.cache_dir, "progress": ctx.progress, "dist": info}
        tr_regions = region_features(enc, train, protocol.prompt_resolution, **kw)
        te_regions = region_features(enc, test, protocol.prompt_resolution, **kw)
        fit, hold = holdout_split(train.targets, protocol.holdout_fraction, ctx.seed)
        every = list(range(len(train.classes)))
        test_y = torch.from_numpy(test.targets).long()
        test_set = EvalSet(te_regions, test_y, every)
        results: dict[float, dict[str, Any]] = {}
        for p, y_np in masked.items():
            y = torch.from_numpy(y_np).long()
            recipe = PromptRecipe(
                n_ctx_pos=protocol.n_ctx_pos,
                n_ctx_neg=protocol.n_ctx_neg,
                csc=protocol.csc,
                lr=protocol.prompt_lr,
                epochs=protocol.prompt_epochs,
                batch_size=protocol.prompt_batch_size,
                momentum=protocol.prompt_momentum,
                weight_decay=protocol.prompt_weight_decay,
                warmup_epochs=protocol.warmup_epochs,
                warmup_lr=protocol.warmup_lr,
                loss_w=protocol.loss_weight(p),
                gamma_neg=protocol.gamma_neg,
                gamma_pos=protocol.gamma_pos,
                clip=protocol.clip,
            )
            model = DualCoOp(towers, train.classes, recipe.n_ctx_pos, recipe.n_ctx_neg, recipe.csc, seed=ctx.seed)
            hold_set = EvalSet(tr_regions, y[hold], every, rows=hold)

            def on_epoch(epoch: int, m: DualCoOp, hold_set: EvalSet = hold_set) -> dict[str, float]:
                return {
                    "holdout_mAP": multilabel_ap(predict(m, hold_set, ctx.device), hold_set.targets)["mAP"],
                    "test_mAP": multilabel_ap(predict(m, test_set, ctx.device), test_y)["mAP"],
                }

            history = train_prompts(
                model,
                tr_regions,
                y,
                fit,
                every,
                recipe,
                on_epoch=on_epoch,
                seed=ctx.seed,
                device=info.device,
                progress=ctx.progress,
                desc=f"DualCoOp p={p:g}",
                dist=info,
            )
            best = max(range(len(history)), key=lambda e: (history[e]["holdout_mAP"], -e))
            oracle = max(range(len(history)), key=lambda e: (history[e]["test_mAP"], -e))
            results[p] = {
                "mAP": history[best]["test_mAP"],
                "official": {"mAP": history[oracle]["test_mAP"], "epoch": oracle + 1},
                "detail": {"selected_epoch": best + 1, "loss_w": recipe.loss_w, "history": history},
            }
        probe = {
            "features": f"region features of {towers.name} (attention pool as per-region projections, mean first)",
            "image_text": towers.name,
            "image_text_load_report": towers.load_report.to_dict() if towers.load_report else None,
            "prompts": f"{protocol.n_ctx_pos}+{protocol.n_ctx_neg} context tokens, "
            + ("class-specific" if protocol.csc else "shared by all classes"),
            "resolution": protocol.prompt_resolution,
            "transform": "square resize, no crop (DualCoOp's test transform)",
            "augmentation": DEVIATION,
        }
        return results, probe
