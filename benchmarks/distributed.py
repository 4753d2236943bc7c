"""The one place vitbench joins a torch.distributed group: torchrun (``launcher`` "pytorch") or srun ("slurm").

Every harness outside mm* that runs on several processes goes through :func:`init_distributed`: the probe tasks
(``knn``, ``linear``: extraction sharded over ranks, heads of the grid under DDP) and the trained tasks
(``linear-dino``, ``imagenet-finetune``). mm* tasks use mmengine's launcher instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from methods.errors import VitbenchError

if TYPE_CHECKING:
    from benchmarks.harness import RunContext


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


def world_size_from_env(launcher: str) -> int:
    """How many processes a run started with ``launcher`` has (torch-free: the runner records it)."""
    if launcher == "none":
        return 1
    if launcher == "slurm":
        return int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(ctx: RunContext) -> DistInfo:
    """One process (``launcher`` "none", or a world of 1) or a torch.distributed group: NCCL on CUDA, gloo on CPU.

    torchrun sets RANK / WORLD_SIZE / MASTER_ADDR; under srun they come from SLURM_PROCID / SLURM_NTASKS, with
    MASTER_ADDR / MASTER_PORT set by the job script (one line says so when they are missing)."""
    if ctx.launcher == "slurm":
        for env, slurm in (("RANK", "SLURM_PROCID"), ("WORLD_SIZE", "SLURM_NTASKS"), ("LOCAL_RANK", "SLURM_LOCALID")):
            if slurm in os.environ:
                os.environ.setdefault(env, os.environ[slurm])
    world = world_size_from_env(ctx.launcher)
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


@contextmanager
def distributed(ctx: RunContext) -> Iterator[DistInfo]:
    """:func:`init_distributed` for the body of a run, :func:`finish_distributed` after it, also when it raises."""
    info = init_distributed(ctx)
    try:
        yield info
    finally:
        finish_distributed(info)


def barrier(info: DistInfo | None) -> None:
    if info is not None and info.world > 1:
        dist.barrier()


def all_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if info.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(value: Any, info: DistInfo | None) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object produced by this run's own code, never read from disk)."""
    if info is None or info.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
