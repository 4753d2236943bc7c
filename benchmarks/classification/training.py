"""What the trained classification tasks share (``linear-dino``, ``imagenet-finetune``): DDP set-up under torchrun,
image datasets with a training transform, per-epoch seeding, atomic per-epoch checkpoints, distributed top-1/top-5.

Resume is exact: every random stream of an epoch (DataLoader worker seeds, mixup, drop path, the samplers) is
seeded from (run seed, epoch, rank) at the start of the epoch, so a run killed after epoch ``e`` and resumed from
its checkpoint trains epoch ``e + 1`` exactly as an uninterrupted run does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

# The DDP set-up lives in benchmarks.distributed (the probe tasks share it); re-exported for the trained tasks.
from benchmarks.checkpoint import Checkpoint as Checkpoint
from benchmarks.distributed import DistInfo as DistInfo
from benchmarks.distributed import all_sum as all_sum
from benchmarks.distributed import distributed as distributed
from benchmarks.features import default_workers
from benchmarks.probe.data import RGB, LabelledSplit, load_rgb
from methods.errors import DataError


# ------------------------------------------------------------------------------------------------ data
class ImageDataset(Dataset):
    """``(transform(image), class index)`` of a single-label RGB :class:`LabelledSplit`."""

    def __init__(self, split: LabelledSplit, transform: Callable[[Any], torch.Tensor]) -> None:
        if split.multilabel or split.bands is not None:
            raise DataError(f"{split.root}: ImageNet classification needs single-label RGB images")
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_rgb(self.split.paths[i])), int(self.split.targets[i])


def require_rgb(band_order: tuple[str, ...] | None, what: str) -> None:
    if band_order is not None and tuple(band_order) != RGB:
        raise DataError(f"{what}: the encoder expects bands {list(band_order)}; this task trains on RGB images")


def loader(
    dataset: Dataset, batch_size: int, *, sampler: Sampler | None = None, drop_last: bool, device: str
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=default_workers(),
        pin_memory=device.startswith("cuda"),
        drop_last=drop_last,
        persistent_workers=False,
    )


def train_sampler(dataset: Dataset, info: DistInfo, seed: int) -> DistributedSampler:
    """All of train, shuffled per epoch (``set_epoch``), 1/world per rank: DINO's, MAE's and BEiT's sampler."""
    return DistributedSampler(dataset, num_replicas=info.world, rank=info.rank, shuffle=True, seed=seed)


def val_shard(dataset: Dataset, info: DistInfo) -> Dataset:
    """This rank's share of val (every ``world``-th image): no padding, so no image is counted twice."""
    return dataset if info.world == 1 else Subset(dataset, range(info.rank, len(dataset), info.world))  # type: ignore[arg-type]


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed torch (all devices), numpy and random for one epoch of one rank (what makes resume exact)."""
    s = (seed * 1_000_003 + epoch * 7919 + rank) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


@torch.no_grad()
def evaluate(logits_fn: Callable[[torch.Tensor], torch.Tensor], data: DataLoader, info: DistInfo) -> dict[str, float]:
    """Top-1 / top-5 (%) of ``logits_fn`` (``[B, C, H, W] -> [B, classes]``) over ``data``, summed over ranks."""
    correct1 = correct5 = n = 0.0
    for images, target in data:
        logits = logits_fn(images.to(info.device, non_blocking=True)).float()
        target = target.to(logits.device)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += float((top[:, 0] == target).sum())
        correct5 += float((top == target[:, None]).any(1).sum())
        n += len(target)
    correct1, correct5, n = all_sum([correct1, correct5, n], info)
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n}


def best_epoch(history: list[dict[str, Any]], key: str = "top1") -> dict[str, Any]:
    """The first epoch with the highest ``key`` (the papers' "max accuracy" over epochs)."""
    return max(history, key=lambda h: (h[key], -h["epoch"]))


@contextmanager
def no_sync(model: torch.nn.Module, skip: bool) -> Iterator[None]:
    """DDP's ``no_sync`` for the micro-batches of gradient accumulation that are not the last one."""
    sync: Any = getattr(model, "no_sync", None)
    if skip and sync is not None:
        with sync():
            yield
    else:
        yield
