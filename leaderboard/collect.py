"""Read reproduced records and group them: (task, protocol name+version+hash, track, method, variant) -> mean, std,
n and the 95 % interval of the mean (:mod:`leaderboard.interval`).

Seeds are averaged only inside one group, so two protocol versions, or a smoke run and a paper run, never end up
in the same number. Which protocol of a task is *current* comes from the task catalogue (:mod:`benchmarks.catalog`,
torch-free: no harness is imported); for a task it has no protocol for (reported only, or a task id it does not
know) the newest version present is taken (and the page says so).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from benchmarks.catalog import TASKS, TaskSpec, get_task
from benchmarks.records import (
    MetricMeta,
    Record,
    decode_record_json,
    format_validation_error,
    iter_record_files,
)
from leaderboard.interval import half_width
from methods.errors import RecordError

# What the leaderboard asks about a task id: its catalogue entry, or None for a task the catalogue does not know
# (a submitted record for a task we do not have). Tests pass their own.
TaskLookup = Callable[[str], TaskSpec | None]


@dataclass(frozen=True)
class ProtocolKey:
    name: str
    version: int
    hash: str

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.hash[:8]})"


@dataclass(frozen=True)
class Registered:
    """The protocols a catalogued task registers: paper-track records must carry ``paper``, smoke ones ``smoke``."""

    paper: ProtocolKey
    smoke: ProtocolKey


@dataclass
class Stat:
    mean: float
    std: float | None  # None for a single seed
    n: int
    ci95: float | None = None  # half-width of the 95 % interval of the mean (Student t, n - 1 dof); None for n = 1

    @property
    def interval(self) -> tuple[float, float] | None:
        """``(low, high)`` of the 95 % interval, None for a single seed."""
        return None if self.ci95 is None else (self.mean - self.ci95, self.mean + self.ci95)


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


def load_records(results: Path | str, task_lookup: TaskLookup | None = None) -> Records:
    """Parse every ``runs/**/*.json``. A file that fails validation, or that sits at the wrong path for what it
    claims to be, is rejected with a one-line reason instead of breaking the build: the site lists it.

    The gate is ``vitbench validate``'s (:func:`benchmarks.validate.validate_record`, with ``current=False``): what a
    submission would be refused for (a forged protocol hash, no git_sha on the paper track, a metric outside its
    task's range, control characters, a paper record on other data than its task's) is refused here too; only a
    record of another protocol version, or of a task the catalogue does not know, is kept, and shown apart."""
    from benchmarks.validate import validate_record

    lookup = task_lookup or find_task
    root = Path(results)
    good: list[Record] = []
    paths: list[Path] = []
    rejected: list[tuple[Path, str]] = []
    prefix = len(str(root).rstrip("/")) + 1
    for path in iter_record_files(root):
        rel = Path(str(path)[prefix:])  # plain string slicing: pathlib's relative_to is slow over 10k files
        try:
            raw = path.read_bytes()
            record = Record.model_validate(decode_record_json(raw, rel))
        except ValidationError as err:
            rejected.append((rel, format_validation_error(rel, err)))
            continue
        except RecordError as err:
            rejected.append((rel, str(err)))
            continue
        except OSError as err:
            rejected.append((rel, f"{rel}: cannot read ({err.strerror})"))
            continue
        expected = f"runs/{record.task}/{record.method}/{record.variant}__seed{record.seed}.json"  # = relpath()
        if str(path)[prefix:] != expected:
            # The layout is one file per (task, method, variant, seed): a misplaced file could shadow another run.
            rejected.append((rel, f"{rel}: path: the record says it belongs at {record.relpath()}"))
            continue
        problem = validate_record(record, rel, lookup, current=False, raw=raw)
        if problem is not None:
            rejected.append((rel, problem))
            continue
        good.append(record)
        paths.append(rel)
    return Records(good, paths, rejected)


def find_task(task: str) -> TaskSpec | None:
    """The catalogue entry of ``task``, or None for a task id the catalogue does not know."""
    return get_task(task) if task in TASKS else None


def registered_protocols(spec: TaskSpec | None) -> Registered | None:
    """The paper and smoke protocols the catalogue registers for a task; None for a reported-only or unknown one."""
    if spec is None or spec.protocol is None:
        return None
    paper, smoke = spec.protocol_for(smoke=False), spec.protocol_for(smoke=True)
    return Registered(
        ProtocolKey(paper.NAME, paper.VERSION, paper.hash()), ProtocolKey(smoke.NAME, smoke.VERSION, smoke.hash())
    )


@functools.cache
def _declared_direction(metric: str) -> bool:
    """Direction of a metric of a task the catalogue does not know: as any catalogued task declares that name (FID
    and attack success are lower-is-better), higher-is-better for a name none declares."""
    for _, spec in TASKS.items():
        meta = spec.metric_meta(metric)
        if meta is not None:
            return meta.higher_is_better
    return True


def higher_is_better(metric: str, spec: TaskSpec | None, record_meta: MetricMeta | None = None) -> bool:
    """Direction of a metric: the task's catalogue entry first, then the record's metric_meta, then the name."""
    if spec is not None:
        meta = spec.metric_meta(metric)
        if meta is not None:
            return meta.higher_is_better
    if record_meta is not None:
        return record_meta.higher_is_better
    return _declared_direction(metric)


def headline(spec: TaskSpec | None) -> str:
    """The metric a task's table sorts by; "" for a task the catalogue does not know."""
    return spec.headline if spec is not None else ""


def group_records(recs: Records, specs: Mapping[str, TaskSpec | None]) -> list[Group]:
    """Group records, compute mean/std/n/95 % half-width per metric, and mark each group current / other / smoke."""
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
    _mark_status(groups, specs)
    return groups


def _aggregate(groups: list[Group]) -> None:
    """Mean, sample std (None for one seed) and n of every metric of every group, in plain Python: importing pandas
    for this took 0.5 s of a 1.8 s ``vitbench leaderboard``. The arithmetic is that of pandas' groupby kernels
    (``group_mean``: Kahan-compensated sum in seed order; ``group_var``: Welford's update), so the numbers match the
    former ``groupby().agg(["mean", "std", "count"])`` bit for bit, and with them every rounded figure on the site.
    (Only pandas 3's ``np.add.reduceat`` shortcut, taken when no group of several seeds has several metrics, could
    differ, in the last bit.)"""
    for g in groups:
        values: dict[str, list[float]] = {}
        for rec in g.records:
            for name, value in rec.metrics.items():
                values.setdefault(name, []).append(value)
        for name, vals in values.items():
            std = _sample_std(vals)
            g.stats[name] = Stat(_mean(vals), std, len(vals), half_width(std, len(vals)))


def _mean(values: list[float]) -> float:
    total = compensation = 0.0
    for v in values:
        y = v - compensation
        t = total + y
        compensation = (t - total) - y
        total = t
    return total / len(values)


def _sample_std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = m2 = 0.0
    for n, v in enumerate(values, 1):
        delta = v - mean
        mean += delta / n
        m2 += (v - mean) * delta
    return math.sqrt(m2 / (len(values) - 1))


def _mark_status(groups: list[Group], specs: Mapping[str, TaskSpec | None]) -> None:
    paper_keys: dict[str, dict[ProtocolKey, int]] = {}
    for g in groups:
        if g.track == "paper":
            counts = paper_keys.setdefault(g.task, {})
            counts[g.protocol] = counts.get(g.protocol, 0) + 1
    current: dict[str, ProtocolKey] = {}
    for task, counts in paper_keys.items():
        reg = registered_protocols(specs.get(task))
        if reg is not None:
            current[task] = reg.paper
        else:  # no registered protocol to ask: the newest version wins, then the protocol most groups ran
            current[task] = max(counts, key=lambda k: (k.version, counts[k], k.hash))
    for g in groups:
        if g.track == "smoke":
            g.status = "smoke"
        else:
            g.status = "current" if current.get(g.task) == g.protocol else "other"
