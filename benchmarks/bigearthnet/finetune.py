"""``bigearthnet-finetune``: the encoder and a new linear head trained end to end (DINO-MM's supervised schedule).

Training reads the labelled subset through the same dataset as the probe (encoder band order and scaling, or the RGB
adaptation; a left-out sensor as zeros) with RandomResizedCrop + flip; AdamW with a per-epoch cosine; BCE with
logits. After every epoch the model, optimiser and epoch are saved in the run's work folder, and a rerun with the
same protocol resumes from there. The final model is scored on val and test with the eval transform.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.bigearthnet.common import (
    card,
    channel_map,
    dataset_info,
    eval_transform,
    load_splits,
    missing_policy,
    norm_stats,
    report,
)
from benchmarks.bigearthnet.protocols import BigEarthNetFinetuneProtocol
from benchmarks.features import default_workers, require_finite
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.data import ChannelMap, EvalTransform, LabelledSplit, TrainTransform
from benchmarks.probe.engine import probe_dataset
from benchmarks.progress import progress_bar
from methods import Encoder

__all__ = ["BigEarthNetFinetuneHarness", "BigEarthNetFinetuneProtocol"]

CHECKPOINT = "finetune_last.pt"


class Classifier(nn.Module):
    """``forward_global`` of the encoder, then a linear head: ``[B, C, H, W] -> [B, num_classes]`` logits."""

    def __init__(self, encoder: Encoder, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.spec.embed_dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)  # DINO's LinearClassifier init, as the linear task
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_global(x))


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """``sup_rn_B14.py``'s ``adjust_learning_rate`` with ``--cos``: ``base * 0.5 * (1 + cos(pi * epoch / epochs))``."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def _loader(ds: torch.utils.data.Dataset, batch: int, shuffle: bool, seed: int, drop_last: bool) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds, batch_size=batch, shuffle=shuffle, generator=gen, num_workers=default_workers(), drop_last=drop_last
    )


@torch.no_grad()
def logits_of(
    model: Classifier,
    encoder: Encoder,
    split: LabelledSplit,
    transform: EvalTransform,
    missing: str,
    cmap: ChannelMap | None,
    batch: int,
    device: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N, C] logits, [N, C] labels)`` of ``split`` in its order, eval transform."""
    model.eval()
    out, ys = [], []
    loader = _loader(probe_dataset(encoder, split, transform, missing, cmap), batch, False, 0, False)
    for i, (x, y) in enumerate(loader):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            logits = model(x.to(device)).float()
        what = f"the {split.name} logits of images {i * batch}-{i * batch + len(x) - 1} (batch {i})"
        out.append(require_finite(logits, what).cpu())
        ys.append(y.long())
    return torch.cat(out), torch.cat(ys)


class BigEarthNetFinetuneHarness(Harness):
    """End-to-end fine-tuning; the protocol's hash keys the resumable checkpoint in ``ctx.work_dir``."""

    def run(self, ctx: RunContext, protocol: BigEarthNetFinetuneProtocol) -> RunOutput:
        p = protocol
        splits = load_splits(ctx, p)
        enc = ctx.encoder
        bands = splits.train.bands or ()
        cmap = channel_map(enc, p, bands)
        missing = missing_policy(enc, p, bands)
        mean, std = norm_stats(enc, cmap)
        train_t = TrainTransform(p.train_crop, mean, std, scale=p.crop_scale, hflip=p.hflip)
        eval_t = eval_transform(enc, p, cmap)
        torch.manual_seed(ctx.seed)
        model = Classifier(enc, p.num_classes).to(ctx.device)
        enc.requires_grad_(True)
        opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        start = self._resume(ctx, p, model, opt)
        train_ds = probe_dataset(enc, splits.train, train_t, missing, cmap)
        loss_fn = nn.BCEWithLogitsLoss()  # = MultiLabelSoftMarginLoss: mean over classes and samples
        amp = ctx.device.startswith("cuda")
        last_loss = float("nan")
        with progress_bar(total=p.epochs, desc="fine-tune", enabled=ctx.progress, unit="epoch", initial=start) as bar:
            for epoch in range(start, p.epochs):
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(p.lr, epoch, p.epochs)
                model.train()
                loader = _loader(train_ds, p.batch_size, True, ctx.seed + epoch, len(train_ds) > p.batch_size)
                for x, y in loader:
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                        loss = loss_fn(model(x.to(ctx.device)).float(), y.to(ctx.device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    last_loss = float(require_finite(loss.detach(), f"the training loss at epoch {epoch + 1}"))
                self._save(ctx, p, model, opt, epoch + 1)
                bar.update(1)
        enc.requires_grad_(False)
        val_logits, val_y = logits_of(model, enc, splits.val, eval_t, missing, cmap, p.eval_batch_size, ctx.device)
        test_logits, test_y = logits_of(model, enc, splits.test, eval_t, missing, cmap, p.eval_batch_size, ctx.device)
        enc.eval()
        metrics = report(val_logits, val_y, test_logits, test_y, p)
        probe = {
            **card(enc, p, splits, cmap, missing),
            "features": f"forward_global ({enc.spec.global_pool}) + linear head, trained end to end",
            "train_transform": f"random resized crop {p.train_crop} (scale {list(p.crop_scale)}), flip {p.hflip}",
            "optimiser": f"AdamW lr {p.lr} wd {p.weight_decay}, cosine per epoch, batch {p.batch_size}",
            "final_train_loss": last_loss,
            "resumed_from_epoch": start,
            "deviations": ["last epoch reported (DINO-MM: best val epoch)", "one process"],
        }
        return RunOutput(metrics=metrics, dataset=dataset_info(ctx, splits), probe=probe)

    @staticmethod
    def _path(ctx: RunContext) -> Path:
        return Path(ctx.work_dir) / CHECKPOINT

    def _resume(
        self, ctx: RunContext, p: BigEarthNetFinetuneProtocol, model: Classifier, opt: torch.optim.Optimizer
    ) -> int:
        """The epoch to start from: that of a checkpoint of this protocol and seed in the work folder, else 0."""
        path = self._path(ctx)
        if not path.is_file():
            return 0
        state = torch.load(path, map_location=ctx.device, weights_only=True)
        if state.get("protocol") != p.hash() or state.get("seed") != ctx.seed:
            return 0
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        return int(state["epoch"])

    def _save(
        self, ctx: RunContext, p: BigEarthNetFinetuneProtocol, model: Classifier, opt: torch.optim.Optimizer, epoch: int
    ) -> None:
        path = self._path(ctx)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch}
        torch.save({**state, "protocol": p.hash(), "seed": ctx.seed}, tmp)
        os.replace(tmp, path)
