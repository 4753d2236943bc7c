"""Markdown tables for READMEs and PR comments. Every cell is escaped: names and notes come from submissions."""

from __future__ import annotations

from collections.abc import Mapping

from leaderboard import fmt
from leaderboard.collect import higher_is_better
from leaderboard.table import OUTSIDE, TaskTable

# Characters that change Markdown or HTML meaning inside a table cell (GitHub renders inline HTML).
_MD_SPECIAL = {c: f"\\{c}" for c in "\\`*_[]|#!~"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def md_escape(text: object) -> str:
    """One table cell: specials backslash-escaped, HTML characters as entities, line breaks flattened."""
    s = " ".join(str(text).split())
    return "".join(_MD_SPECIAL.get(c, c) for c in s)


def md_table(head: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def task_md(t: TaskTable) -> str:
    """One task: a row per (method, variant, setting), per metric the reported number, ours and the delta; a rank
    column first when a row is ranked (``=`` marks a shared rank)."""
    ranked = any(r.rank is not None for r in t.rows)
    head = (["rank"] if ranked else []) + ["method", "variant", "setting"]
    for m in t.metrics:
        head += [f"{m} reported", f"{m} reproduced", f"{m} delta"]
    head.append("source")
    body: list[list[object]] = []
    for row in t.rows:
        line: list[object] = [fmt.rank(row.rank, row.rank_shared)] if ranked else []
        line += [row.method, row.variant, row.setting or ""]
        sources = set()
        for m in t.metrics:
            cell = row.cells.get(m)
            if cell is None:
                line += ["", "", ""]
                continue
            repro = fmt.stat(cell.stat) or ("not yet reproduced" if row.setting is None and cell.reported else "")
            d = fmt.delta(cell.delta)
            if cell.verdict == OUTSIDE:
                d = f"{d} OUTSIDE"
            line += [fmt.value(cell.reported.value) if cell.reported else "", repro, d]
            if cell.paper:
                sources.add(cell.paper.info.short)
        line.append(", ".join(sorted(sources)))
        body.append(line)
    proto = f"protocol {t.current.label}" if t.current else "no reproduced runs yet"
    if ranked:
        direction = "higher" if higher_is_better(t.headline, t.spec) else "lower"
        proto += f"; ranked by {t.headline} ({direction} is better)"
    return f"### {md_escape(t.task)}: {md_escape(t.title)}\n\n_{md_escape(proto)}_\n\n" + md_table(head, body)


def leaderboard_md(tables: Mapping[str, TaskTable]) -> str:
    """All tasks (``Leaderboard.tables``), for pasting into a README."""
    parts = [
        "## vitbench leaderboard\n",
        "Reported = the paper's number (source in results/reported/). Reproduced = mean over seeds ± the half-width "
        "of its 95 % interval (Student t, n - 1 degrees of freedom) of paper-track runs under the registered "
        "protocol; a single seed has no interval. Delta = reproduced - reported.\n",
        "Rank = reproduced rows only, by the task's headline metric, best mean first; a row shares the rank of the "
        "row above it (marked =) when both have 2 or more seeds and their 95 % intervals overlap, or when the means "
        "are equal; a single-seed row has no interval and is ranked by its value.\n",
    ]
    parts += [task_md(t) for t in tables.values() if t.rows]
    return "\n".join(parts)
