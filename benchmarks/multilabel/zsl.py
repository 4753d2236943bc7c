"""Zero-shot multi-label recognition (``coco-zsl``, ``nuswide-zsl``) with DualCoOp prompts, for encoders with a
text tower.

Shared (class-agnostic) positive and negative contexts are learned on the seen classes over cached region features
(:mod:`benchmarks.multilabel.dualcoop`), then put in front of the class names at test time: ZSL ranks the unseen
classes of the ZSL test images, GZSL the seen and unseen classes of the GZSL test images. Metrics per setting:
overall precision / recall / F1 of the top-k labels (k in ``top_k``) and mAP. The epoch is selected on the seen
classes' mAP on a held-out part of train; DualCoOp's own selection (the best test F1 at top 3, per setting) is
recorded in ``extra.official_selection``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from benchmarks.distributed import DistInfo, distributed
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.multilabel.data import ZeroShotSplits, dataset_info, load_zero_shot
from benchmarks.multilabel.dualcoop import DualCoOp, EvalSet, PromptRecipe, predict, region_features, train_prompts
from benchmarks.multilabel.metrics import multilabel_ap, topk_prf
from benchmarks.multilabel.partial import DEVIATION
from benchmarks.multilabel.protocols import ZeroShotProtocol
from benchmarks.probe.heads import holdout_split
from methods.errors import DataError
from methods.image_text import ImageText


def zero_shot_metrics(scores: torch.Tensor, y: torch.Tensor, top_k: tuple[int, ...], prefix: str) -> dict[str, float]:
    """``{prefix}_P_k{k}``, ``_R_k{k}``, ``_F1_k{k}`` for each k, and ``{prefix}_mAP`` (all %)."""
    out: dict[str, float] = {}
    for k in top_k:
        out[f"{prefix}_P_k{k}"], out[f"{prefix}_R_k{k}"], out[f"{prefix}_F1_k{k}"] = topk_prf(scores, y, k)
    out[f"{prefix}_mAP"] = multilabel_ap(scores, y)["mAP"]
    return out


def _rank(history: list[dict[str, float]], key: str, epoch: int) -> tuple[float, int]:
    """Best ``key`` first; the earlier epoch on ties."""
    return history[epoch][key], -epoch


class ZeroShotHarness(Harness):
    """One harness for the zero-shot tasks; the layout comes from the catalogue's ``dataset_kind``."""

    def run(self, ctx: RunContext, protocol: ZeroShotProtocol) -> RunOutput:
        self.check_protocol(protocol)
        enc = ctx.encoder
        towers = enc.image_text()  # before reading any data: the one-line error for an encoder without a text tower
        z = load_zero_shot(self.spec.dataset_kind, ctx.data_root)
        if len(z.train.split) < 4:
            raise DataError(f"{z.train.split.root}: {len(z.train.split)} training images; too few to hold some out")
        with distributed(ctx) as dist:  # torchrun: extraction sharded, prompt gradients summed; rank 0 writes
            return self._run(ctx, protocol, z, towers, dist)

    def _run(
        self, ctx: RunContext, protocol: ZeroShotProtocol, z: ZeroShotSplits, towers: ImageText, dist: DistInfo
    ) -> RunOutput:
        seen, unseen, every = list(z.seen), list(z.unseen), sorted(z.seen + z.unseen)
        enc = ctx.encoder
        kw: dict[str, Any] = {"device": dist.device, "cache_dir": ctx.cache_dir, "progress": ctx.progress, "dist": dist}
        regions = {
            name: region_features(enc, part.split, protocol.resolution, **kw)
            for name, part in (("train", z.train), ("zsl", z.zsl), ("gzsl", z.gzsl))
        }
        y_train = torch.from_numpy(z.train.split.targets).long()
        fit, hold = holdout_split(z.train.split.targets[:, seen], protocol.holdout_fraction, ctx.seed)
        sets = {
            "holdout": EvalSet(regions["train"], y_train[hold][:, seen], seen, rows=hold),
            "zsl": EvalSet(regions["zsl"], torch.from_numpy(z.zsl.split.targets[:, unseen]).long(), unseen),
            "gzsl": EvalSet(regions["gzsl"], torch.from_numpy(z.gzsl.split.targets[:, every]).long(), every),
        }
        recipe = PromptRecipe(
            n_ctx_pos=protocol.n_ctx_pos,
            n_ctx_neg=protocol.n_ctx_neg,
            csc=False,
            lr=protocol.lr,
            epochs=protocol.epochs,
            batch_size=protocol.batch_size,
            momentum=protocol.momentum,
            weight_decay=protocol.weight_decay,
            warmup_epochs=protocol.warmup_epochs,
            warmup_lr=protocol.warmup_lr,
            loss_w=protocol.loss_w,
            gamma_neg=protocol.gamma_neg,
            gamma_pos=protocol.gamma_pos,
            clip=protocol.clip,
            num_train_cls=protocol.num_train_cls,
        )
        model = DualCoOp(towers, z.classes, recipe.n_ctx_pos, recipe.n_ctx_neg, csc=False, seed=ctx.seed)

        def on_epoch(epoch: int, m: DualCoOp) -> dict[str, float]:
            out = {
                "holdout_mAP": multilabel_ap(predict(m, sets["holdout"], ctx.device), sets["holdout"].targets)["mAP"]
            }
            for name in ("zsl", "gzsl"):
                scores = predict(m, sets[name], ctx.device)
                out.update(zero_shot_metrics(scores, sets[name].targets, protocol.top_k, name))
            return out

        history = train_prompts(
            model,
            regions["train"],
            y_train,
            fit,
            seen,
            recipe,
            on_epoch=on_epoch,
            seed=ctx.seed,
            device=dist.device,
            progress=ctx.progress,
            desc="DualCoOp zero-shot",
            dist=dist,
        )
        best = max(range(len(history)), key=lambda e: (history[e]["holdout_mAP"], -e))
        metrics = {k: v for k, v in history[best].items() if k != "holdout_mAP"}
        k0 = protocol.top_k[0]
        official: dict[str, Any] = {"rule": f"DualCoOp keeps the epoch of the best test F1 at top {k0}, per setting"}
        for name in ("zsl", "gzsl"):
            key = f"{name}_F1_k{k0}"
            e = max(range(len(history)), key=partial(_rank, history, key))
            official[name] = {"epoch": e + 1, **{k: v for k, v in history[e].items() if k.startswith(name)}}
            official[f"delta_{key}"] = history[e][key] - metrics[key]
        parts = {z.train.split.name: z.train, z.zsl.split.name: z.zsl, z.gzsl.split.name: z.gzsl}
        probe = {
            "head": "dualcoop",
            "features": f"region features of {towers.name} (attention pool as per-region projections, mean first)",
            "image_text": towers.name,
            "image_text_load_report": towers.load_report.to_dict() if towers.load_report else None,
            "prompts": f"{protocol.n_ctx_pos}+{protocol.n_ctx_neg} context tokens shared by all classes",
            "classes": {"seen": len(seen), "unseen": len(unseen)},
            "resolution": protocol.resolution,
            "transform": "square resize, no crop (DualCoOp's test transform)",
            "augmentation": DEVIATION,
            "selection": f"epoch {best + 1}: best seen-class holdout mAP on {protocol.holdout_fraction:.0%} of train",
        }
        info = dataset_info(ctx.data_root, z.classes, parts, evaluated=z.zsl.split.name)
        return RunOutput(
            metrics=metrics, dataset=info, probe=probe, extra={"official_selection": official, "history": history}
        )
