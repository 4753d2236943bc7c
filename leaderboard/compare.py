"""``vitbench compare``: reproduced vs reported, one line per (task, method, variant, metric), with the delta and
its tolerance verdict. Only default reported rows (no ``setting``) and current-protocol paper-track runs take part.

:func:`assemble` (read ``results/`` into a :class:`Leaderboard`) lives here too; the site builds on it. This module
uses :mod:`leaderboard.markdown`'s table writer, never the reverse.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaderboard import fmt
from leaderboard.collect import Group, Records, TaskLookup, find_task, group_records, load_records
from leaderboard.markdown import md_table
from leaderboard.reported import Reported, Tolerances, load_reported, load_tolerances
from leaderboard.table import SETTING, TaskTable, build_tables

COLUMNS = [
    "task",
    "method",
    "variant",
    "metric",
    "reported",
    "reproduced",
    "std",
    "ci95",
    "n",
    "delta",
    "tolerance",
    "verdict",
    "direction",
    "protocol",
    "source",
]


@dataclass
class Leaderboard:
    """Everything a renderer needs: the tables plus what was read."""

    tables: dict[str, TaskTable]
    reported: Reported
    records: Records
    groups: list[Group]
    tolerances: Tolerances


def assemble(
    results: Path | str,
    tolerances: Tolerances | None = None,
    task_lookup: TaskLookup = find_task,
) -> Leaderboard:
    """Read ``results/`` (reported + runs) and build every task table. ``task_lookup`` gives each task's catalogue
    entry (title, headline, metric directions, registered protocol), None for an unknown task; tests pass their
    own."""
    results = Path(results)
    reported = load_reported(results / "reported")
    tol = tolerances or load_tolerances(results / "reported")
    recs = load_records(results, task_lookup)
    tasks = {r.task for _, r in reported.rows} | {r.task for r in recs.records}
    specs = {t: task_lookup(t) for t in tasks}
    groups = group_records(recs, specs)
    return Leaderboard(build_tables(reported, groups, specs, tol), reported, recs, groups, tol)


def comparison_rows(
    tables: dict[str, TaskTable], method: str | None = None, task: str | None = None
) -> list[dict[str, Any]]:
    """Flatten the tables into records with :data:`COLUMNS` (numbers stay numbers; missing ones are None)."""
    out: list[dict[str, Any]] = []
    for t in tables.values():
        if task is not None and t.task != task:
            continue
        for row in t.rows:
            if row.setting is not None or (method is not None and row.method != method):
                continue
            for metric in t.metrics:
                cell = row.cells.get(metric)
                if cell is None or cell.verdict == SETTING:
                    continue
                out.append(
                    {
                        "task": t.task,
                        "method": row.method,
                        "variant": row.variant,
                        "metric": metric,
                        "reported": cell.reported.value if cell.reported else None,
                        "reproduced": round(cell.stat.mean, 4) if cell.stat else None,
                        "std": round(cell.stat.std, 4) if cell.stat and cell.stat.std is not None else None,
                        "ci95": round(cell.stat.ci95, 4) if cell.stat and cell.stat.ci95 is not None else None,
                        "n": cell.stat.n if cell.stat else 0,
                        "delta": round(cell.delta, 4) if cell.delta is not None else None,
                        "tolerance": cell.tolerance,
                        "verdict": cell.verdict,
                        "direction": cell.direction,
                        "protocol": row.group.protocol.label if row.group else "",
                        "source": cell.paper.id if cell.paper else "",
                    }
                )
    return out


def render(rows: list[dict[str, Any]], form: str) -> str:
    """``md``, ``csv`` or ``json`` text of :func:`comparison_rows`."""
    if form == "json":
        return json.dumps(rows, indent=2) + "\n"
    if form == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    if form == "md":
        body = [
            [
                r["task"],
                r["method"],
                r["variant"],
                r["metric"],
                fmt.value(r["reported"]),
                _repro(r),
                fmt.delta(r["delta"]),
                fmt.value(r["tolerance"]),
                _verdict(r),
                r["source"],
            ]
            for r in rows
        ]
        head = [
            "task",
            "method",
            "variant",
            "metric",
            "reported",
            "reproduced",
            "delta",
            "tolerance",
            "verdict",
            "source",
        ]
        return md_table(head, body)
    raise ValueError(f"unknown format {form!r} (md, csv, json)")


def _repro(r: dict[str, Any]) -> str:
    if r["reproduced"] is None:
        return ""
    spread = f" ± {r['ci95']:.2f}" if r["ci95"] is not None else ""  # as fmt.stat: the 95 % half-width
    return f"{r['reproduced']:.2f}{spread} (n={r['n']})"


def _verdict(r: dict[str, Any]) -> str:
    # The Markdown is read by people: make rows outside tolerance impossible to miss.
    if r["verdict"] == "outside":
        return f"OUTSIDE ({r['direction']})"
    return r["verdict"]
