"""The comparison model shared by the site, the Markdown export and ``vitbench compare``.

One :class:`TaskTable` per task: rows are (method, variant, setting), columns are metrics, and each cell holds the
reported number, the reproduced mean over seeds with its 95 % interval (current protocol, paper track only) and
their delta judged against a tolerance; reproduced rows are ranked by the headline metric, sharing a rank where
their intervals overlap. Reproduced groups of other protocols and smoke groups are kept aside, never in a cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from benchmarks.catalog import TaskSpec, metric_order, task_order
from leaderboard.collect import Group, ProtocolKey, Registered, Stat, headline, higher_is_better, registered_protocols
from leaderboard.interval import shared_ranks
from leaderboard.reported import Paper, Reported, ReportedRow, Tolerances

# Verdicts, in the words the site, the Markdown and the CSV use.
WITHIN, OUTSIDE, NOT_REPRODUCED, NO_REPORTED, SETTING = "within", "outside", "not reproduced", "no reported", "setting"


@dataclass
class Cell:
    reported: ReportedRow | None = None
    paper: Paper | None = None
    stat: Stat | None = None
    delta: float | None = None
    tolerance: float | None = None
    verdict: str = ""
    direction: str = ""  # "better" / "worse" when outside the tolerance


@dataclass
class Row:
    task: str
    method: str
    variant: str
    setting: str | None
    label: str = ""
    backbone: str = ""
    group: Group | None = None
    cells: dict[str, Cell] = field(default_factory=dict)
    rank: int | None = None  # by the headline metric, among reproduced rows only (see rank_rows)
    rank_shared: bool = False  # another row holds the same rank: their 95 % intervals overlap (or means tie)

    @property
    def reproduced(self) -> bool:
        return self.group is not None


@dataclass
class TaskTable:
    task: str
    title: str
    headline: str
    spec: TaskSpec | None  # the catalogue entry; None for a task id the catalogue does not know
    registered: Registered | None  # the catalogue's protocols; None for a reported-only or unknown task
    current: ProtocolKey | None  # the protocol reproduced cells come from
    metrics: list[str]
    rows: list[Row]
    other: list[Group]  # paper-track groups of another protocol (older version, changed config)
    smoke: list[Group]
    reported: list[tuple[Paper, ReportedRow]]

    @property
    def n_within(self) -> int:
        return sum(c.verdict == WITHIN for r in self.rows for c in r.cells.values())

    @property
    def n_outside(self) -> int:
        return sum(c.verdict == OUTSIDE for r in self.rows for c in r.cells.values())


def judge(delta: float, tolerance: float, higher_better: bool) -> tuple[str, str]:
    """(verdict, direction) for ``delta = reproduced - reported``."""
    if abs(delta) <= tolerance + 1e-9:  # 1e-9: a delta of exactly the tolerance must not flip on float noise
        return WITHIN, ""
    return OUTSIDE, "better" if (delta > 0) == higher_better else "worse"


def _most_common(names: list[str]) -> str:
    return max(sorted(set(names)), key=names.count) if names else ""


def build_tables(
    reported: Reported, groups: list[Group], specs: Mapping[str, TaskSpec | None], tolerances: Tolerances
) -> dict[str, TaskTable]:
    """Join reported rows and reproduced groups into one table per task (catalogue order)."""
    tasks = {r.task for _, r in reported.rows} | {g.task for g in groups}
    tables: dict[str, TaskTable] = {}
    for task in task_order(tasks):
        spec = specs.get(task)
        reg = registered_protocols(spec)
        rows: dict[tuple[str, str, str | None], Row] = {}
        rep = [(p, r) for p, r in reported.rows if r.task == task]
        for paper, rr in rep:
            row = rows.setdefault((rr.method, rr.variant, rr.setting), Row(task, rr.method, rr.variant, rr.setting))
            row.label = row.label or rr.label
            row.backbone = row.backbone or rr.backbone
            row.cells[rr.metric] = Cell(reported=rr, paper=paper)
        current = [g for g in groups if g.task == task and g.status == "current"]
        for g in current:
            row = rows.setdefault((g.method, g.variant, None), Row(task, g.method, g.variant, None))
            row.group = g
            row.backbone = row.backbone or g.arch
            for name, stat in g.stats.items():
                row.cells.setdefault(name, Cell()).stat = stat
        # A task the catalogue does not know sorts by its most reported metric.
        head = headline(spec) or _most_common([m for r in rows.values() for m in r.cells])
        for row in rows.values():
            meta = row.group.records[0].metric_meta if row.group else {}
            for name, cell in row.cells.items():
                _fill_cell(cell, row, task, name, spec, meta.get(name), tolerances)
        metrics = metric_order({m for r in rows.values() for m in r.cells}, head)
        ordered = sorted(rows.values(), key=lambda r: _row_sort_key(r, head, spec))
        rank_rows(ordered, head, higher_is_better(head, spec))
        tables[task] = TaskTable(
            task=task,
            title=spec.title if spec is not None else task,
            headline=head,
            spec=spec,
            registered=reg,
            current=current[0].protocol if current else (reg.paper if reg else None),
            metrics=metrics,
            rows=ordered,
            other=sorted((g for g in groups if g.task == task and g.status == "other"), key=_group_key),
            smoke=sorted((g for g in groups if g.task == task and g.status == "smoke"), key=_group_key),
            reported=rep,
        )
    return tables


def _fill_cell(
    cell: Cell, row: Row, task: str, metric: str, spec: TaskSpec | None, meta: object, tolerances: Tolerances
) -> None:
    if row.setting is not None:
        cell.verdict = SETTING  # a non-default setting is shown for context, never compared
    elif cell.reported is None:
        cell.verdict = NO_REPORTED
    elif cell.stat is None:
        cell.verdict = NOT_REPRODUCED
    else:
        cell.tolerance = tolerances.get(task, metric, cell.reported)
        cell.delta = cell.stat.mean - cell.reported.value
        cell.verdict, cell.direction = judge(cell.delta, cell.tolerance, higher_is_better(metric, spec, meta))  # type: ignore[arg-type]


def rank_rows(rows: list[Row], head: str, higher_better: bool) -> None:
    """Set ``rank`` / ``rank_shared`` of the reproduced rows (current protocol, paper track, default setting: the
    only rows with a group) that have the headline metric, by :func:`leaderboard.interval.shared_ranks`: best
    mean first, a row shares the rank of the row above it when both have a 95 % interval (≥ 2 seeds) and the
    intervals overlap; a single seed has no interval and is ranked by its value. Other rows get no rank."""
    ranked = [r for r in rows if r.group is not None and r.setting is None and head in r.group.stats]
    stats = [r.group.stats[head] for r in ranked]  # type: ignore[union-attr]
    for row, got in zip(ranked, shared_ranks([(s.mean, s.ci95) for s in stats], higher_better)):
        row.rank, row.rank_shared = got.rank, got.shared


def _row_sort_key(row: Row, head: str, spec: TaskSpec | None) -> tuple[object, ...]:
    cell = row.cells.get(head)
    value = None
    if cell is not None:
        value = cell.stat.mean if cell.stat is not None else (cell.reported.value if cell.reported else None)
    sign = -1.0 if higher_is_better(head, spec) else 1.0
    return (
        value is None,
        row.setting is not None,
        sign * value if value is not None else 0.0,
        row.method,
        row.variant,
        row.setting or "",
    )


def _group_key(g: Group) -> tuple[object, ...]:
    return (-g.protocol.version, g.protocol.hash, g.method, g.variant)
