"""The harness contract: ``Harness.run(ctx: RunContext, protocol) -> RunOutput``.

A harness never knows which method it runs (it sees only the :class:`methods.Encoder` in the context), never
changes the protocol it is given, and never writes the record itself: it returns a :class:`RunOutput` and
:mod:`benchmarks.runner` adds identity, protocol and provenance. What a task *is* (title, metrics, headline,
protocol class, data identity) lives in its :class:`~benchmarks.catalog.TaskSpec`, not here.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.catalog import TaskSpec, get_task, list_tasks
from benchmarks.protocol import Protocol
from benchmarks.records import DatasetInfo
from methods._names import import_target
from methods.errors import VitbenchError

if TYPE_CHECKING:
    from methods import Encoder

LAUNCHERS = ("none", "pytorch", "slurm")


@dataclass(frozen=True)
class RunContext:
    """Everything a harness may use besides its protocol.

    ``work_dir`` is this run's private folder (logs, training checkpoints for resume); ``cache_dir`` the feature
    cache root (None: the default under ``$VITBENCH_CACHE``); ``launcher`` how multi-process training engines
    start ("none" = one process).
    """

    task: TaskSpec
    encoder: Encoder
    data_root: Path
    work_dir: Path
    seed: int = 0
    device: str = "cpu"
    launcher: str = "none"
    cache_dir: Path | None = None
    progress: bool = True
    smoke: bool = False

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher {self.launcher!r} is not one of {LAUNCHERS}")


@dataclass
class RunOutput:
    metrics: dict[str, float]
    dataset: DatasetInfo
    probe: dict[str, Any] = field(default_factory=dict)  # the probe card: layers, pooling, resolution, neck ...
    extra: dict[str, Any] = field(default_factory=dict)  # full grids, log/config paths


class Harness(abc.ABC):
    """Base of every harness. One class may serve several catalogue entries (COCO 1x / 3x / cascade): it reads
    what differs from ``self.spec`` and the protocol."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    @property
    def task(self) -> str:
        return self.spec.id

    @abc.abstractmethod
    def run(self, ctx: RunContext, protocol: Any) -> RunOutput:
        """Run the task on ``ctx.encoder`` with exactly ``protocol`` (an instance of ``self.spec.protocol``)."""

    def check_protocol(self, protocol: Protocol) -> None:
        if self.spec.protocol is None or not isinstance(protocol, self.spec.protocol):
            raise TypeError(f"task {self.task} runs {self.spec.protocol}, got {type(protocol).__name__}")


def load_harness(task_id: str) -> Harness:
    """Import and instantiate the harness of ``task_id`` (this is where torch gets imported)."""
    spec = get_task(task_id)
    if spec.harness is None:
        raise VitbenchError(
            f"task {task_id} has reported numbers only: no harness runs it yet "
            f"(runnable tasks: {', '.join(list_tasks(runnable_only=True))})"
        )
    return import_target(spec.harness)(spec)
