"""``linear-dino``: DINO's ``eval_linear.py`` on a frozen encoder — augmented images every epoch, features
recomputed, all of train, best val top-1 over epochs (the protocol's docstring cites each value)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import transforms as T

from benchmarks.classification.common import load_splits
from benchmarks.classification.protocols import LinearDinoProtocol
from benchmarks.classification.training import (
    Checkpoint,
    DistInfo,
    ImageDataset,
    all_sum,
    best_epoch,
    distributed,
    evaluate,
    loader,
    require_rgb,
    seed_epoch,
    train_sampler,
    val_shard,
)
from benchmarks.features import require_finite
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.data import LabelledSplit
from benchmarks.probe.engine import dataset_info, transform_for
from benchmarks.progress import progress_bar
from methods import Encoder
from methods.errors import VitbenchError


def feature_recipe(enc: Encoder, protocol: LinearDinoProtocol) -> tuple[int, bool]:
    """``(n_last_blocks, avgpool)``: DINO's rule (ViT-S: last 4 CLS; ViT-B and wider: last CLS + avgpool) unless the
    protocol sets them. ``(0, False)`` = the encoder's global feature (hierarchical / CNN encoders)."""
    spec = enc.spec
    if spec.family != "vit":
        return 0, False
    n_last = protocol.n_last_blocks or (4 if spec.block_dim < 768 else 1)
    avgpool = protocol.avgpool if protocol.avgpool is not None else spec.block_dim >= 768
    if not 1 <= n_last <= spec.num_blocks:
        raise VitbenchError(f"--set n_last_blocks={n_last}: the encoder has {spec.num_blocks} blocks")
    if avgpool and n_last != 1:
        raise VitbenchError(f"--set avgpool=true needs n_last_blocks=1 (DINO's eval_linear.py), got {n_last}")
    return n_last, avgpool


@torch.no_grad()
def dino_features(enc: Encoder, x: torch.Tensor, n_last: int, avgpool: bool) -> torch.Tensor:
    """``[B, C, H, W] -> [B, D]`` as ``eval_linear.py`` builds them from ``get_intermediate_layers(x, n_last)``: the
    normalised CLS token of each of the last ``n_last`` blocks, concatenated, then (``avgpool``) the mean of the last
    block's normalised patch tokens. ``n_last`` 0: ``forward_global`` (DINO's ResNet path)."""
    what = f"{enc.identity.method}:{enc.identity.variant}'s features of a batch of {len(x)} images (linear-dino)"
    if n_last == 0:
        return require_finite(enc.forward_global(x), what)
    blocks = list(range(enc.spec.num_blocks - n_last, enc.spec.num_blocks))
    tok, avg = enc.forward_probe(x, blocks)  # [B, n_last, d] each
    return require_finite(torch.cat([tok.flatten(1), avg[:, -1]], 1) if avgpool else tok.flatten(1), what)


def train_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> T.Compose:
    """``eval_linear.py``'s train transform with the encoder's statistics: RandomResizedCrop (bilinear, scale
    0.08-1) + horizontal flip, drawn anew for every image of every epoch."""
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


class LinearClassifier(nn.Module):
    """DINO's ``LinearClassifier``: one ``nn.Linear(dim, classes)``, weights N(0, 0.01), bias 0."""

    def __init__(self, dim: int, num_labels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_labels)
        self.linear.weight.data.normal_(mean=0.0, std=0.01)
        self.linear.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class LinearDinoHarness(Harness):
    """Frozen encoder + one linear head; features of freshly augmented train images every epoch."""

    def run(self, ctx: RunContext, protocol: LinearDinoProtocol) -> RunOutput:
        enc = ctx.encoder
        train, val = load_splits(ctx.data_root)
        require_rgb(enc.data_config.band_order, str(train.root))
        n_last, avgpool = feature_recipe(enc, protocol)
        with distributed(ctx) as info:
            return self._run(ctx, protocol, info, train, val, n_last, avgpool)

    def _run(
        self,
        ctx: RunContext,
        protocol: LinearDinoProtocol,
        info: DistInfo,
        train: LabelledSplit,
        val: LabelledSplit,
        n_last: int,
        avgpool: bool,
    ) -> RunOutput:
        enc = ctx.encoder.to(info.device)
        if protocol.batch_size % info.world:
            raise VitbenchError(f"batch_size {protocol.batch_size} does not split over {info.world} processes")
        per_rank = protocol.batch_size // info.world
        evalt = transform_for(enc, protocol.resolution)
        size = evalt.size
        dc = enc.data_config
        train_t = train_transform(size, tuple(dc.mean), tuple(dc.std))
        blocks = list(range(enc.spec.num_blocks - n_last, enc.spec.num_blocks))

        def features(x: torch.Tensor) -> torch.Tensor:
            return dino_features(enc, x, n_last, avgpool)

        dim = enc.spec.block_dim * (n_last + int(avgpool)) if n_last else enc.spec.embed_dim
        torch.manual_seed(ctx.seed)
        head: nn.Module = LinearClassifier(dim, len(train.classes)).to(info.device)
        module = head
        if info.world > 1:
            head = nn.parallel.DistributedDataParallel(
                head, device_ids=[info.device] if "cuda" in info.device else None
            )
        lr = protocol.lr * protocol.batch_size / 256  # the linear scaling rule
        opt = torch.optim.SGD(head.parameters(), lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, protocol.epochs, eta_min=0)

        train_ds = ImageDataset(train, train_t)
        sampler = train_sampler(train_ds, info, ctx.seed)
        train_dl = loader(train_ds, per_rank, sampler=sampler, drop_last=False, device=info.device)
        val_dl = loader(
            val_shard(ImageDataset(val, evalt.image()), info), per_rank, drop_last=False, device=info.device
        )

        ident = {
            "protocol": protocol.hash(),
            "weights": enc.identity.weights_id,
            "data": f"{train.fingerprint()}:{val.fingerprint()}",
            "seed": str(ctx.seed),
            "world": str(info.world),
        }
        ckpt = Checkpoint(ctx.work_dir, "linear-dino", ident)
        start, history = 0, []
        if (state := ckpt.load(info.device)) is not None:
            module.load_state_dict(state["head"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start, history = int(state["epoch"]), list(state["history"])

        with progress_bar(
            total=protocol.epochs, desc="linear-dino", enabled=ctx.progress and info.main, initial=start, unit="epoch"
        ) as bar:
            for epoch in range(start, protocol.epochs):
                seed_epoch(ctx.seed, epoch, info.rank)
                sampler.set_epoch(epoch)
                head.train()
                loss_sum, n = 0.0, 0.0
                for images, target in train_dl:
                    images = images.to(info.device, non_blocking=True)
                    target = target.to(info.device, non_blocking=True)
                    loss = nn.functional.cross_entropy(head(features(images)), target)
                    require_finite(loss, f"the training loss at epoch {epoch + 1} (the head diverged)")
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    loss_sum, n = loss_sum + loss.item() * len(target), n + len(target)
                sched.step()
                head.eval()
                stats = evaluate(lambda x: head(features(x)), val_dl, info)
                loss_sum, n = all_sum([loss_sum, n], info)
                history.append({"epoch": epoch + 1, **stats, "train_loss": loss_sum / max(n, 1)})
                ckpt.save(
                    {
                        "epoch": epoch + 1,
                        "head": module.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "history": history,
                    },
                    info,
                )
                bar.update(1)

        best = best_epoch(history)
        recipe = (
            "global feature"
            if n_last == 0
            else f"CLS of the last {n_last} block(s)" + (" + avgpool" if avgpool else "")
        )
        probe = {
            "blocks": blocks,
            "pooling": recipe,
            "resolution": size,
            "normalisation": "final norm on every block" if n_last else "the encoder's global feature",
            "augmentation": f"RandomResizedCrop({size}) + horizontal flip every epoch; features recomputed (no cache)",
            "training_data": f"all of train ({len(train)} images)",
            "selection": f"best val top-1 over {protocol.epochs} epochs (epoch {best['epoch']}), as eval_linear.py",
            "lr": lr,
            "world_size": info.world,
            "batch_per_process": per_rank,
            "eval_transform": evalt.desc,
        }
        return RunOutput(
            metrics={"top1": best["top1"], "top5": best["top5"], "last_top1": history[-1]["top1"]},
            dataset=dataset_info(ctx.data_root, train, val),
            probe=probe,
            extra={"history": history},
        )
