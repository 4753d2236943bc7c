"""The harness contract: what every downstream task implements.

A harness never knows which method it runs (it sees only :class:`methods.Encoder`), and never writes the record
itself: it returns a :class:`RunOutput` and :mod:`benchmarks.runner` adds identity, protocol and provenance.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from benchmarks.protocol import Protocol
from benchmarks.records import DatasetInfo, MetricMeta

if TYPE_CHECKING:
    from methods import Encoder


@dataclass
class RunOutput:
    metrics: dict[str, float]
    dataset: DatasetInfo
    probe: dict[str, Any] = field(default_factory=dict)  # the probe card: layers, pooling, resolution, neck ...
    extra: dict[str, Any] = field(default_factory=dict)  # full grids, log/config paths


class Harness(abc.ABC):
    """Subclasses set ``task``, ``protocol_cls``, ``metrics`` and ``synth_kind`` and implement :meth:`run`.

    ``metrics`` maps a metric name, or a regular expression starting with ``^`` (per-layer metrics such as
    ``^top1_b\\d+$``), to its :class:`MetricMeta`. ``headline`` is the metric leaderboards sort by.
    """

    task: ClassVar[str]
    protocol_cls: ClassVar[type[Protocol]]
    metrics: ClassVar[dict[str, MetricMeta]]
    headline: ClassVar[str]
    synth_kind: ClassVar[str]  # the `vitbench data synth KIND` that makes smoke data for this task
    description: ClassVar[str] = ""

    def protocol(self, smoke: bool = False, **overrides: Any) -> Protocol:
        return self.protocol_cls.smoke(**overrides) if smoke else self.protocol_cls.paper(**overrides)

    @classmethod
    def metric_meta(cls, name: str) -> MetricMeta | None:
        if name in cls.metrics:
            return cls.metrics[name]
        for pattern, meta in cls.metrics.items():
            if pattern.startswith("^") and re.fullmatch(pattern, name):
                return meta
        return None

    @abc.abstractmethod
    def run(
        self,
        encoder: Encoder,
        data_root: Path,
        out_dir: Path,
        seed: int,
        device: str,
        protocol: Protocol,
        *,
        cache_dir: Path | None = None,
        progress: bool = True,
    ) -> RunOutput:
        """Run the task. ``out_dir`` is this run's private work folder (logs, checkpoints for resume)."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.task,
            "protocol": self.protocol_cls.NAME,
            "protocol_version": self.protocol_cls.VERSION,
            "metrics": list(self.metrics),
            "headline": self.headline,
            "synth_kind": self.synth_kind,
            "description": self.description,
        }
