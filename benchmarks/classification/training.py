"""What the trained classification tasks share (``linear-dino``, ``imagenet-finetune``): DDP set-up under torchrun,
image datasets with a training transform, per-epoch seeding, atomic per-epoch checkpoints, distributed top-1/top-5.

Resume is exact: every random stream of an epoch (DataLoader worker seeds, mixup, drop path, the samplers) is
seeded from (run seed, epoch, rank) at the start of the epoch, so a run killed after epoch ``e`` and resumed from
its checkpoint trains epoch ``e + 1`` exactly as an uninterrupted run does.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from benchmarks.features import default_workers
from benchmarks.harness import RunContext
from benchmarks.probe.data import RGB, LabelledSplit, load_rgb
from methods.errors import DataError, VitbenchError


# ------------------------------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    owns_group: bool = False  # this harness initialised the process group (and tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(ctx: RunContext) -> DistInfo:
    """One process (``launcher`` "none", or a world of 1) or a torch.distributed group: NCCL on CUDA, gloo on CPU.

    torchrun sets RANK / WORLD_SIZE / MASTER_ADDR; under srun they come from SLURM_PROCID / SLURM_NTASKS, with
    MASTER_ADDR / MASTER_PORT set by the job script (one line says so when they are missing)."""
    if ctx.launcher == "slurm":
        for env, slurm in (("RANK", "SLURM_PROCID"), ("WORLD_SIZE", "SLURM_NTASKS"), ("LOCAL_RANK", "SLURM_LOCALID")):
            if slurm in os.environ:
                os.environ.setdefault(env, os.environ[slurm])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if ctx.launcher == "none" or world == 1:
        return DistInfo(device=ctx.device)
    device = ctx.device
    if device.startswith("cuda") and ":" not in device:
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    owns = not dist.is_initialized()
    if owns:
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise VitbenchError(
                f"--launcher {ctx.launcher}: MASTER_ADDR and MASTER_PORT must be set for {world} processes "
                "(torchrun sets them; under srun export them in the job script)"
            )
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), device, owns)


def finish_distributed(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()
        if info.owns_group:
            dist.destroy_process_group()


def all_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if info.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


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


# ------------------------------------------------------------------------------------------------ checkpoints
class Checkpoint:
    """``work_dir/<name>.pt``, rewritten after every epoch by rank 0 (temp file + ``os.replace``: a kill leaves the
    previous checkpoint whole). ``identity`` (protocol hash, weights, data) must match on resume; a checkpoint of
    another run is set aside with a note and training starts over."""

    def __init__(self, work_dir: Path, name: str, identity: dict[str, str]) -> None:
        self.path = Path(work_dir) / f"{name}.pt"
        self.identity = identity

    def load(self, device: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
        except Exception as err:  # a torn or foreign file: start over, never crash on it
            print(
                f"note: {self.path}: unreadable checkpoint ({type(err).__name__}); training from the start",
                file=sys.stderr,
            )
            return None
        if not isinstance(state, dict) or state.get("identity") != self.identity:
            print(
                f"note: {self.path}: checkpoint of another run (protocol, weights or data); training from the start",
                file=sys.stderr,
            )
            return None
        return state

    def save(self, state: dict[str, Any], info: DistInfo) -> None:
        if info.main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # a killed writer's (SIGKILL/SIGTERM)
                if stale != tmp:
                    stale.unlink(missing_ok=True)
            try:
                torch.save({"identity": self.identity, **state}, tmp)
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
        if info.world > 1:
            dist.barrier()  # no rank runs ahead of a checkpoint it might resume from


@contextmanager
def no_sync(model: torch.nn.Module, skip: bool) -> Iterator[None]:
    """DDP's ``no_sync`` for the micro-batches of gradient accumulation that are not the last one."""
    sync: Any = getattr(model, "no_sync", None)
    if skip and sync is not None:
        with sync():
            yield
    else:
        yield
