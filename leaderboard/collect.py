"""Read reproduced records and group them: (task, protocol name+version+hash, track, method, variant) -> mean ± std.

Seeds are averaged only inside one group, so two protocol versions, or a smoke run and a paper run, never end up
in the same number. Which protocol of a task is *current* comes from the registered harness when it can be
imported; otherwise the newest version present is taken (and the page says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from benchmarks.records import MetricMeta, Record, format_validation_error, iter_record_files
from leaderboard.catalog import metric_info, task_info


@dataclass(frozen=True)
class ProtocolKey:
    name: str
    version: int
    hash: str

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.hash[:8]})"


@dataclass(frozen=True)
class HarnessInfo:
    """What a registered harness says about its task: the protocol records must carry, and metric metadata."""

    paper: ProtocolKey
    smoke: ProtocolKey
    headline: str
    metric_meta: Callable[[str], MetricMeta | None]


@dataclass
class Stat:
    mean: float
    std: float | None  # None for a single seed
    n: int


@dataclass
class Group:
    task: str
    protocol: ProtocolKey
    track: str
    method: str
    variant: str
    arch: str
    records: list[Record]
    paths: list[Path]
    stats: dict[str, Stat] = field(default_factory=dict)
    status: str = "current"  # "current" (compared), "other" (another protocol: shown apart), "smoke"

    @property
    def anchor(self) -> str:
        return f"g-{self.variant}-v{self.protocol.version}-{self.protocol.hash[:8]}-{self.track}"

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]


@dataclass
class Records:
    records: list[Record]
    paths: list[Path]  # relative to the results root
    rejected: list[tuple[Path, str]]


def load_records(results: Path | str) -> Records:
    """Parse every ``runs/**/*.json``. A file that fails validation, or that sits at the wrong path for what it
    claims to be, is rejected with a one-line reason instead of breaking the build: the site lists it."""
    root = Path(results)
    good: list[Record] = []
    paths: list[Path] = []
    rejected: list[tuple[Path, str]] = []
    prefix = len(str(root).rstrip("/")) + 1
    for path in iter_record_files(root):
        rel = Path(str(path)[prefix:])  # plain string slicing: pathlib's relative_to is slow over 10k files
        try:
            record = Record.model_validate_json(path.read_bytes())
        except ValidationError as err:
            rejected.append((rel, format_validation_error(rel, err)))
            continue
        except OSError as err:
            rejected.append((rel, f"{rel}: cannot read ({err.strerror})"))
            continue
        expected = f"runs/{record.task}/{record.method}/{record.variant}__seed{record.seed}.json"  # = relpath()
        if str(path)[prefix:] != expected:
            # The layout is one file per (task, method, variant, seed): a misplaced file could shadow another run.
            rejected.append((rel, f"{rel}: path: the record says it belongs at {record.relpath()}"))
            continue
        good.append(record)
        paths.append(rel)
    return Records(good, paths, rejected)


def harness_info(task: str) -> HarnessInfo | None:
    """The registered harness's protocol and metric metadata, or None when the task has no importable harness."""
    try:
        from benchmarks.tasks import TASKS, get_harness

        if task not in TASKS:
            return None
        h = get_harness(task)
        paper, smoke = h.protocol_cls.paper(), h.protocol_cls.smoke()
    except Exception:  # noqa: BLE001 - a harness whose extra (mm*) is not installed must not break the site
        return None
    return HarnessInfo(
        paper=ProtocolKey(paper.NAME, paper.VERSION, paper.hash()),
        smoke=ProtocolKey(smoke.NAME, smoke.VERSION, smoke.hash()),
        headline=h.headline,
        metric_meta=h.metric_meta,
    )


def higher_is_better(metric: str, harness: HarnessInfo | None, record_meta: MetricMeta | None = None) -> bool:
    """Direction of a metric: the harness's word first, then the record's, then the catalog's."""
    if harness is not None:
        meta = harness.metric_meta(metric)
        if meta is not None:
            return meta.higher_is_better
    if record_meta is not None:
        return record_meta.higher_is_better
    return metric_info(metric).higher_is_better


def headline(task: str, harness: HarnessInfo | None) -> str:
    return harness.headline if harness is not None else task_info(task).headline


def group_records(recs: Records, harnesses: dict[str, HarnessInfo | None]) -> list[Group]:
    """Group records, compute mean/std/n per metric with pandas, and mark each group current / other / smoke."""
    by_key: dict[tuple[str, ProtocolKey, str, str, str], Group] = {}
    for rec, path in zip(recs.records, recs.paths):
        pk = ProtocolKey(rec.protocol.name, rec.protocol.version, rec.protocol.hash)
        key = (rec.task, pk, rec.track, rec.method, rec.variant)
        g = by_key.get(key)
        if g is None:
            g = by_key[key] = Group(rec.task, pk, rec.track, rec.method, rec.variant, rec.arch, [], [])
        g.records.append(rec)
        g.paths.append(path)
    groups = list(by_key.values())
    for g in groups:
        order = sorted(range(len(g.records)), key=lambda i: g.records[i].seed)
        g.records = [g.records[i] for i in order]
        g.paths = [g.paths[i] for i in order]
    _aggregate(groups)
    _mark_status(groups, harnesses)
    return groups


def _aggregate(groups: list[Group]) -> None:
    gi, names, values = [], [], []
    for i, g in enumerate(groups):
        for rec in g.records:
            for name, value in rec.metrics.items():
                gi.append(i)
                names.append(name)
                values.append(value)
    if not values:
        return
    frame = pd.DataFrame({"g": gi, "metric": names, "value": values})
    agg = frame.groupby(["g", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
    for (i, name), mean, std, count in zip(agg.index, agg["mean"], agg["std"], agg["count"]):
        groups[i].stats[name] = Stat(float(mean), None if count < 2 or math.isnan(std) else float(std), int(count))


def _mark_status(groups: list[Group], harnesses: dict[str, HarnessInfo | None]) -> None:
    paper_keys: dict[str, dict[ProtocolKey, int]] = {}
    for g in groups:
        if g.track == "paper":
            counts = paper_keys.setdefault(g.task, {})
            counts[g.protocol] = counts.get(g.protocol, 0) + 1
    current: dict[str, ProtocolKey] = {}
    for task, counts in paper_keys.items():
        h = harnesses.get(task)
        if h is not None:
            current[task] = h.paper
        else:  # no harness to ask: the newest version wins, then the protocol most groups ran
            current[task] = max(counts, key=lambda k: (k.version, counts[k], k.hash))
    for g in groups:
        if g.track == "smoke":
            g.status = "smoke"
        else:
            g.status = "current" if current.get(g.task) == g.protocol else "other"
