"""``imagenet-finetune``: end-to-end fine-tuning with the pretraining paper's recipe, from timm's own parts.

The encoder gives a trainable timm classifier (``Encoder.finetune_model``: fresh head, the recipe's pooling and
drop path); ``timm.data.create_transform`` (RandAugment, random erasing), ``timm.data.Mixup`` (+ label smoothing,
``SoftTargetCrossEntropy``), ``timm.optim.create_optimizer_v2`` (AdamW; layer-wise lr decay from the model's
``group_matcher``), ``timm.scheduler.CosineLRScheduler`` and ``timm.utils.ModelEmaV3`` do the rest. DDP under
torchrun; a checkpoint after every epoch; a killed run resumes from its last epoch.

``VITBENCH_ACCUM_STEPS`` (default 1) splits each optimizer step into that many micro-batches (MAE's
``accum_iter``): the recipe's global batch and every number stay the same, only memory per GPU changes, so it is
not a protocol field; the probe card records it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import torch
from torch import nn

from benchmarks.classification.common import load_splits
from benchmarks.classification.protocols import DEFAULT_FINETUNE_FAMILY, FinetuneProtocol, FinetuneRecipe
from benchmarks.classification.training import (
    Checkpoint,
    DistInfo,
    ImageDataset,
    all_sum,
    best_epoch,
    distributed,
    evaluate,
    loader,
    no_sync,
    require_rgb,
    seed_epoch,
    train_sampler,
    val_shard,
)
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.data import LabelledSplit
from benchmarks.probe.engine import dataset_info, transform_for
from benchmarks.progress import progress_bar
from methods.errors import DataError, VitbenchError


def accum_steps() -> int:
    value = os.environ.get("VITBENCH_ACCUM_STEPS", "1")
    if not value.isdigit() or int(value) < 1:
        raise VitbenchError(f"VITBENCH_ACCUM_STEPS={value!r}: expected a positive integer")
    return int(value)


def train_transform(recipe: FinetuneRecipe, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """timm's ImageNet train transform as MAE/BEiT/DeiT build it: RandomResizedCrop + flip, RandAugment, erasing."""
    from timm.data import create_transform

    jitter: dict[str, Any] = {"color_jitter": recipe.color_jitter}  # None (MAE): none; timm skips it under RandAugment
    return create_transform(
        input_size=size,
        is_training=True,
        **jitter,
        auto_augment=recipe.auto_augment,
        interpolation=recipe.interpolation,
        re_prob=recipe.reprob,
        re_mode=recipe.remode,
        re_count=recipe.recount,
        mean=mean,
        std=std,
    )


def lr_scheduler(recipe: FinetuneRecipe, opt: torch.optim.Optimizer, steps: int) -> Any:
    """The recipe's schedule as a timm ``CosineLRScheduler`` over ``opt``'s lrs (``steps`` optimizer steps per
    epoch); timm multiplies each group's value by its ``lr_scale`` (layer decay)."""
    from timm.scheduler import CosineLRScheduler

    scale = recipe.batch_size / recipe.lr_batch if recipe.scale_min_lr else 1.0
    kw: dict[str, Any] = {"lr_min": recipe.min_lr * scale, "warmup_lr_init": recipe.warmup_lr * scale, "cycle_limit": 1}
    if recipe.schedule == "step":  # MAE lr_sched / BEiT cosine_scheduler: the cosine starts after the warmup
        w = recipe.warmup_epochs * steps
        return CosineLRScheduler(
            opt, t_initial=recipe.epochs * steps - w, warmup_t=w, warmup_prefix=True, t_in_epochs=False, **kw
        )
    if recipe.schedule == "step-total":  # SimMIM / MFM: one cosine over every iteration, warmup included
        w = recipe.warmup_epochs * steps
        return CosineLRScheduler(opt, t_initial=recipe.epochs * steps, warmup_t=w, t_in_epochs=False, **kw)
    if recipe.schedule == "epoch":  # DeiT: stepped once per epoch
        return CosineLRScheduler(opt, t_initial=recipe.epochs, warmup_t=recipe.warmup_epochs, t_in_epochs=True, **kw)
    raise VitbenchError(f"recipe {recipe.name}: unknown schedule {recipe.schedule!r}")


def _check_sizes(recipe: FinetuneRecipe, info: DistInfo, accum: int, train: LabelledSplit) -> int:
    """The per-process micro-batch; refuses, before any training, a batch that cannot be split or filled."""
    parts = info.world * accum
    if recipe.batch_size % parts:
        raise VitbenchError(
            f"batch_size {recipe.batch_size} does not split into {info.world} processes x {accum} accumulation steps"
        )
    if recipe.warmup_epochs >= recipe.epochs:
        raise VitbenchError(f"warmup_epochs {recipe.warmup_epochs} must be fewer than epochs {recipe.epochs}")
    micro = recipe.batch_size // parts
    if (recipe.mixup > 0 or recipe.cutmix > 0) and micro % 2:
        raise VitbenchError(f"mixup/cutmix need an even batch per process and step, got {micro}")
    if len(train) < recipe.batch_size:
        raise DataError(
            f"{train.root}: {len(train)} train images, fewer than one batch of {recipe.batch_size} "
            "(the recipe drops incomplete batches)"
        )
    return micro


def _recipe_rule(protocol: FinetuneProtocol, family: str | None) -> str:
    """How the recipe was chosen, for the probe card."""
    if protocol.recipe != "auto":
        return "set by --set recipe"
    if family is None:
        return f"auto: the encoder's paper publishes no recipe; {DEFAULT_FINETUNE_FAMILY}'s at the encoder's width"
    return f"auto: the encoder's finetune_recipe {family!r} (its paper's) at the encoder's width"


class FinetuneHarness(Harness):
    """The ``imagenet-finetune`` task (see :class:`~benchmarks.classification.protocols.FinetuneProtocol`)."""

    def run(self, ctx: RunContext, protocol: FinetuneProtocol) -> RunOutput:
        enc = ctx.encoder
        recipe = protocol.resolve(enc.finetune_recipe, enc.spec.embed_dim)
        train, val = load_splits(ctx.data_root)
        require_rgb(enc.data_config.band_order, str(train.root))
        accum = accum_steps()
        with distributed(ctx) as info:
            micro = _check_sizes(recipe, info, accum, train)
            return self._run(ctx, protocol, recipe, info, train, val, micro, accum)

    def _run(
        self,
        ctx: RunContext,
        protocol: FinetuneProtocol,
        recipe: FinetuneRecipe,
        info: DistInfo,
        train: LabelledSplit,
        val: LabelledSplit,
        micro: int,
        accum: int,
    ) -> RunOutput:
        from timm.data import Mixup
        from timm.data.distributed_sampler import RepeatAugSampler
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.utils import ModelEmaV3

        enc = ctx.encoder
        n_classes = len(train.classes)
        torch.manual_seed(ctx.seed)
        model, report = enc.finetune_model(n_classes, global_pool=recipe.global_pool, drop_path_rate=recipe.drop_path)
        layer_decay = recipe.layer_decay if recipe.layer_decay not in (None, 1.0) else None
        if layer_decay is not None and not hasattr(model, "group_matcher"):
            raise VitbenchError(
                f"{enc.spec.arch} has no timm group_matcher, so layer-wise lr decay cannot find its blocks; "
                "pass --set layer_decay=1.0 to fine-tune without it"
            )
        get_classifier: Any = model.get_classifier  # timm's API (nn.Module's attribute type hides it)
        classifier = get_classifier()
        nn.init.trunc_normal_(classifier.weight, std=recipe.head_init_std)
        nn.init.zeros_(classifier.bias)
        model.to(info.device)
        lr = recipe.blr * recipe.batch_size / recipe.lr_batch
        opt = create_optimizer_v2(
            model, "adamw", lr=lr, weight_decay=recipe.weight_decay, layer_decay=layer_decay, betas=recipe.betas
        )
        ema = ModelEmaV3(model, decay=recipe.ema_decay) if recipe.ema_decay else None
        cuda = info.device.startswith("cuda")
        scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        net: nn.Module = model
        if info.world > 1:
            net = nn.parallel.DistributedDataParallel(model, device_ids=[info.device] if cuda else None)

        dc = enc.data_config
        evalt = transform_for(enc, protocol.resolution)
        train_t = train_transform(recipe, evalt.size, tuple(dc.mean), tuple(dc.std))
        train_ds = ImageDataset(train, train_t)
        if recipe.repeated_aug:
            sampler: Any = RepeatAugSampler(train_ds, info.world, info.rank, num_repeats=recipe.repeated_aug)
        else:
            sampler = train_sampler(train_ds, info, ctx.seed)
        train_dl = loader(train_ds, micro, sampler=sampler, drop_last=True, device=info.device)
        val_dl = loader(val_shard(ImageDataset(val, evalt.image()), info), micro, drop_last=False, device=info.device)
        steps = len(train_dl) // accum  # optimizer steps per epoch
        if steps == 0:
            raise DataError(f"{train.root}: too few images for one optimizer step of {recipe.batch_size}")
        sched = lr_scheduler(recipe, opt, steps)
        mixup = (
            Mixup(
                mixup_alpha=recipe.mixup,
                cutmix_alpha=recipe.cutmix,
                prob=recipe.mixup_prob,
                switch_prob=recipe.mixup_switch_prob,
                mode="batch",
                label_smoothing=recipe.smoothing,
                num_classes=n_classes,
            )
            if recipe.mixup > 0 or recipe.cutmix > 0
            else None
        )
        if mixup is not None:
            criterion: nn.Module = SoftTargetCrossEntropy()  # smoothing is in mixup's soft targets
        elif recipe.smoothing > 0:
            criterion = LabelSmoothingCrossEntropy(smoothing=recipe.smoothing)
        else:
            criterion = nn.CrossEntropyLoss()

        ident = {
            "protocol": protocol.hash(),
            "recipe": repr(dataclasses.astuple(recipe)),
            "weights": enc.identity.weights_id,
            "data": f"{train.fingerprint()}:{val.fingerprint()}",
            "seed": str(ctx.seed),
            "layout": f"world{info.world}xaccum{accum}",
        }
        ckpt = Checkpoint(ctx.work_dir, "finetune", ident)
        start, history = 0, []
        if (state := ckpt.load(info.device)) is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            start, history = int(state["epoch"]), list(state["history"])

        def autocast() -> Any:
            return torch.autocast("cuda", dtype=torch.float16, enabled=cuda)

        with progress_bar(
            total=recipe.epochs, desc="fine-tune", enabled=ctx.progress and info.main, initial=start, unit="epoch"
        ) as bar:
            for epoch in range(start, recipe.epochs):
                seed_epoch(ctx.seed, epoch, info.rank)
                sampler.set_epoch(epoch)
                if recipe.schedule == "epoch":  # DeiT steps its scheduler with the finished epoch's index
                    sched.step(max(epoch - 1, 0))
                net.train()
                loss_sum = 0.0
                batches = iter(train_dl)
                for step in range(steps):
                    update = epoch * steps + step
                    if recipe.schedule != "epoch":
                        sched.step_update(update)
                    for k in range(accum):
                        images, target = next(batches)
                        images = images.to(info.device, non_blocking=True)
                        target = target.to(info.device, non_blocking=True)
                        if mixup is not None:
                            images, target = mixup(images, target)
                        with no_sync(net, k < accum - 1), autocast():
                            loss = criterion(net(images), target)
                        value = loss.item()
                        if not math.isfinite(value):  # MAE stops too: later epochs would only average NaNs
                            raise VitbenchError(f"fine-tuning diverged: loss {value} at epoch {epoch + 1}")
                        with no_sync(net, k < accum - 1):
                            scaler.scale(loss / accum).backward()
                        loss_sum += value / accum
                    if recipe.clip_grad is not None:
                        scaler.unscale_(opt)
                        nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
                    scaler.step(opt)
                    scaler.update()
                    opt.zero_grad(set_to_none=True)
                    if ema is not None:
                        ema.update(model, step=update)
                net.eval()
                train_loss = all_sum([loss_sum / steps], info)[0] / info.world
                with autocast():
                    stats = evaluate(model, val_dl, info)
                    row: dict[str, Any] = {"epoch": epoch + 1, **stats, "train_loss": train_loss}
                    if ema is not None:
                        row.update({f"ema_{k}": v for k, v in evaluate(ema.module, val_dl, info).items()})
                history.append(row)
                state = {
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict(),
                    "history": history,
                }
                if ema is not None:
                    state["ema"] = ema.state_dict()
                ckpt.save(state, info)
                bar.update(1)

        best = best_epoch(history)
        metrics = {"top1": best["top1"], "top5": best["top5"], "last_top1": history[-1]["top1"]}
        if ema is not None:
            metrics["ema_top1"] = best_epoch(history, "ema_top1")["ema_top1"]
        probe = {
            "recipe": dataclasses.asdict(recipe),
            "recipe_rule": _recipe_rule(protocol, ctx.encoder.finetune_recipe),
            "lr": lr,
            "pooling": recipe.global_pool,
            "resolution": evalt.size,
            "layer_decay": layer_decay,
            "world_size": info.world,
            "accum_steps": accum,
            "batch_per_process": micro,
            "steps_per_epoch": steps,
            "selection": f"best val top-1 of {recipe.epochs} epochs (epoch {best['epoch']}), the papers' max accuracy",
            "train_transform": " | ".join(str(t) for t in getattr(train_t, "transforms", [train_t])),
            "eval_transform": evalt.desc,
            "classifier_load": report.to_dict(),
            "amp": "fp16 autocast + GradScaler" if cuda else "fp32",
        }
        return RunOutput(
            metrics=metrics,
            dataset=dataset_info(ctx.data_root, train, val),
            probe=probe,
            extra={"history": history},
        )
