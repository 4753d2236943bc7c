"""Per-epoch training checkpoints that survive ``kill -9``: written by rank 0 to a temp name and ``os.replace``d, so a
half-written file is never read as complete; a checkpoint of another run (protocol, weights, data) is set aside."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from benchmarks.distributed import DistInfo


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
