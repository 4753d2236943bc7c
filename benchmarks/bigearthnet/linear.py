"""``bigearthnet-linear``: DINO-MM's linear probe on frozen features, through the shared probe engine.

Features of the last ``n_last_blocks`` blocks are extracted once per split into the feature cache (the encoder's
band order and scaling, or the protocol's RGB adaptation; a sensor the modality leaves out fed as zeros); the CLS
tokens are concatenated (``cls_last4``, :func:`benchmarks.classification.linear.recipes`) and one BCE head per lr
trains in one pass (:func:`benchmarks.probe.engine.fit_grid`, multi-label target). The head is scored on val and
test (:func:`benchmarks.bigearthnet.common.report`).
"""

from __future__ import annotations

from benchmarks.bigearthnet.common import (
    Splits,
    card,
    channel_map,
    dataset_info,
    eval_transform,
    load_splits,
    missing_policy,
    report,
)
from benchmarks.bigearthnet.protocols import BigEarthNetLinearProtocol
from benchmarks.classification.linear import block_recipes
from benchmarks.distributed import DistInfo, distributed
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.engine import as_tensor, block_features, fit_grid
from benchmarks.probe.heads import Target
from benchmarks.probe.rows import head_logits

__all__ = ["BigEarthNetLinearHarness", "BigEarthNetLinearProtocol"]

DEVIATIONS = (
    "head trains on features of the eval transform (no RandomResizedCrop 128 + flip)",
    "cosine per iteration, not per epoch",
    "last-epoch head reported (DINO-MM: best val epoch)",
    "label subset = prefix of a seeded permutation (nested), not rng.choice with replacement",
    "torchgeo's official BigEarthNet-MM 19-class splits, not SeCo's lists",
    "bands resampled bilinearly to 120 px before the stretch (torchgeo), not stretched at native size",
)


def _finite(grid: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The grid without NaN entries (no hold-out when a single head trains on all of train)."""
    return {n: {k: v for k, v in g.items() if v == v} for n, g in grid.items()}


class BigEarthNetLinearHarness(Harness):
    """Frozen encoder, CLS of the last blocks, multi-label linear head(s). Which blocks exist is the encoder's (as
    the ``linear`` task): a plain ViT offers its last ``n_last_blocks``, a hierarchical encoder its last stage."""

    def run(self, ctx: RunContext, protocol: BigEarthNetLinearProtocol) -> RunOutput:
        splits = load_splits(ctx, protocol)
        with distributed(ctx) as info:  # torchrun: extraction sharded, heads under DDP; rank 0 writes the record
            return self._run(ctx, protocol, splits, info)

    def _run(self, ctx: RunContext, p: BigEarthNetLinearProtocol, splits: Splits, info: DistInfo) -> RunOutput:
        enc = ctx.encoder
        bands = splits.train.bands or ()
        cmap = channel_map(enc, p, bands)
        missing = missing_policy(enc, p, bands)
        nb = enc.spec.num_blocks
        k = min(p.n_last_blocks, nb) if enc.spec.family == "vit" else 1
        blocks = list(range(nb - k, nb))
        kw = {
            "resolution": None,
            "device": info.device,
            "dist": info,
            "cache_dir": ctx.cache_dir,
            "progress": ctx.progress,
            "missing_bands": missing,
            "transform": eval_transform(enc, p, cmap),
            "channel_map": cmap,
        }
        named = {"train": splits.train, "val": splits.val, "test": splits.test}
        feats = {n: block_features(enc, split, blocks, **kw) for n, split in named.items()}
        x = {n: block_recipes(f, blocks, (k,), (False,)) for n, f in feats.items()}  # read per batch
        y = {n: as_tensor(f["labels"]).long() for n, f in feats.items()}
        res = fit_grid(
            x["train"],
            y["train"],
            x["val"],
            y["val"],
            Target("multi", p.num_classes, loss="bce"),
            lrs=p.lrs,
            epochs=p.epochs,
            batch_size=p.batch_size,
            momentum=p.momentum,
            weight_decay=p.weight_decay,
            holdout_fraction=p.holdout_fraction,
            seed=ctx.seed,
            device=info.device,
            progress=ctx.progress,
            dist=info,
        )
        recipe = res.best.split("@")[0]
        head = res.heads[res.best]
        val_logits, test_logits = (head_logits(head, x[n], recipe) for n in ("val", "test"))
        metrics = report(val_logits, y["val"], test_logits, y["test"], p)
        probe = {
            **card(enc, p, splits, cmap, missing),
            "selected_head": res.best,
            "blocks": blocks,
            "features": f"{enc.spec.probe_pool} token of blocks {blocks}, concatenated ({recipe})",
            "selection": "single head" if p.holdout_fraction == 0 else f"best hold-out mAP on {p.holdout_fraction:.0%}",
            "loss": "BCE with logits (= MultiLabelSoftMarginLoss)",
            "deviations": list(DEVIATIONS),
        }
        return RunOutput(
            metrics=metrics, dataset=dataset_info(ctx, splits), probe=probe, extra={"grid": _finite(res.grid)}
        )
