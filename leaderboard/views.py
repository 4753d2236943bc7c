"""Turn tables and groups into plain dicts of display strings for the templates.

Templates only loop and print (autoescaped); every decision about what a cell says lives here, where it is tested.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from markupsafe import Markup, escape

from benchmarks.records import Record
from leaderboard import fmt
from leaderboard.collect import Group, higher_is_better
from leaderboard.reported import Paper
from leaderboard.table import NOT_REPRODUCED, OUTSIDE, SETTING, WITHIN, Row, TaskTable


def json_script(obj: Any) -> Markup:
    """JSON safe to place inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` become ``\\u`` escapes,
    so no string in it can close the element or open a comment."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


_MD = re.compile(
    r"`(?P<code>[^`]+)`|\*\*(?P<bold>[^*]+)\*\*|\*(?P<em>[^*\s][^*]*)\*"
    r"|\[(?P<text>[^\]]+)\]\((?P<url>https?://[^\s)]+)\)"
)


def inline_md(text: str) -> Markup:
    """The inline Markdown that status lines and notes use — `code`, **bold**, *em*, [text](https://…) — as HTML.
    Everything is escaped first; only those four forms become tags, and links only to http(s) URLs."""
    out, pos = [], 0
    for m in _MD.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        if m["code"] is not None:
            out.append(f"<code>{html.escape(m['code'])}</code>")
        elif m["bold"] is not None:
            out.append(f"<strong>{html.escape(m['bold'])}</strong>")
        elif m["em"] is not None:
            out.append(f"<em>{html.escape(m['em'])}</em>")
        else:
            url = html.escape(m["url"], quote=True)
            out.append(f'<a href="{url}" rel="noopener noreferrer">{html.escape(m["text"])}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return Markup("".join(out))


# Method key -> its adapter's variant names (None: registered, variants unknown); a method absent has no adapter.
Adapters = dict[str, "set[str] | None"]


def no_adapter(method: str, variant: str, adapters: Adapters | None) -> str:
    """Why a reported row cannot be reproduced by running vitbench ("" when it can, or when unknown)."""
    if adapters is None:
        return ""
    if method not in adapters:
        return "reported only: no adapter"
    known = adapters[method]
    if known is not None and variant not in known:
        return "reported only: no adapter for this variant"
    return ""


def paper_href(root: str, paper: Paper) -> str:
    return f"{root}papers/{paper.id}.html"


def detail_href(root: str, g: Group) -> str:
    return f"{root}tasks/{g.task}/{g.method}.html#{g.anchor}"


_EMPTY_CELL = {
    "rep": "",
    "rep_v": "",
    "rep_title": "",
    "rep_href": "",
    "caveat": "",
    "ours": "",
    "ours_v": "",
    "ours_cls": "",
    "ours_title": "",
    "delta": "",
    "delta_v": "",
    "cls": "",
    "delta_title": "",
}


def cell_view(row: Row, metric: str, note_ids: dict[int, str], adapters: Adapters | None = None) -> dict[str, Any]:
    c = row.cells.get(metric)
    if c is None:
        return dict(_EMPTY_CELL)
    rep = c.reported
    if c.stat is not None:
        ours = fmt.stat(c.stat)
    elif c.verdict == NOT_REPRODUCED:
        ours = no_adapter(row.method, row.variant, adapters) or "not yet reproduced"
    else:
        ours = ""
    cls = ""
    if c.verdict == WITHIN:
        cls = "within"
    elif c.verdict == OUTSIDE:
        cls = f"outside {c.direction}"
    title = ""
    if c.tolerance is not None:
        title = f"tolerance ±{fmt.value(c.tolerance)}: {c.verdict}" + (f" ({c.direction})" if c.direction else "")
    return {
        "rep": fmt.value(rep.value) if rep else "",
        "rep_v": rep.value if rep else "",
        "rep_title": (rep.protocol if rep else ""),
        "rep_href": f"#{note_ids[id(rep)]}" if rep is not None and id(rep) in note_ids else "",
        "caveat": rep.caveat if rep and rep.caveat else "",
        "ours": ours,
        "ours_v": round(c.stat.mean, 4) if c.stat else "",
        "ours_cls": "na" if c.verdict in (NOT_REPRODUCED, SETTING) and c.stat is None else "",
        "ours_title": fmt.stat_title(c.stat),
        "delta": fmt.delta(c.delta),
        "delta_v": round(c.delta, 4) if c.delta is not None else "",
        "cls": cls,
        "delta_title": title,
    }


def task_view(t: TaskTable, root: str, adapters: Adapters | None = None) -> dict[str, Any]:
    """The task page's rows and notes; ``adapters`` (see :func:`no_adapter`) marks reported-only rows."""
    notes = []
    note_ids: dict[int, str] = {}
    for i, (paper, rr) in enumerate(t.reported):
        note_ids[id(rr)] = f"r-{i}"
        notes.append(
            {
                "id": f"r-{i}",
                "label": rr.label,
                "name": f"{rr.method}:{rr.variant}",
                "setting": rr.setting or "",
                "metric": rr.metric,
                "paper_metric": rr.paper_metric,
                "value": fmt.value(rr.value),
                "dataset": rr.dataset,
                "protocol": rr.protocol,
                "pretrain": rr.pretrain_epochs or "",
                "weights": rr.weights_version or "",
                "caveat": rr.caveat or "",
                "source": rr.source,
                "source_url": rr.source_url or "",
                "table_image": rr.source_kind == "table-image",
                "verified": rr.verified,
                "paper": paper.info.short,
                "paper_href": paper_href(root, paper),
            }
        )
    rows = []
    for row in t.rows:
        papers = {c.paper.id: c.paper for c in row.cells.values() if c.paper is not None}
        rows.append(
            {
                "method": row.method,
                "variant": row.variant,
                "setting": row.setting or "",
                "label": row.label,
                "backbone": row.backbone,
                "reproduced": row.reproduced,
                "detail": detail_href(root, row.group) if row.group else "",
                "n": row.group and len(row.group.records),
                "rank": fmt.rank(row.rank, row.rank_shared),
                "rank_v": row.rank if row.rank is not None else "",
                "rank_title": _rank_title(row, t.headline),
                "cells": [cell_view(row, m, note_ids, adapters) for m in t.metrics],
                "papers": [{"short": p.info.short, "href": paper_href(root, p)} for p in papers.values()],
            }
        )
    return {
        "rows": rows,
        "notes": notes,
        "other": _group_sections(t.other, t.metrics, root),
        "smoke": _group_sections(t.smoke, sorted({m for g in t.smoke for m in g.stats}), root),
        "methods": sorted({r.method for r in t.rows}),
        "reproduced_any": any(r.reproduced for r in t.rows),
        "ranked": any(r.rank is not None for r in t.rows),
        "rank_dir": "higher" if higher_is_better(t.headline, t.spec) else "lower",
    }


def _rank_title(row: Row, head: str) -> str:
    if row.rank is None:
        return ""
    if row.rank_shared:
        return f"rank {row.rank} by {head}, shared: the 95 % intervals overlap (or the means are equal)"
    return f"rank {row.rank} by {head}"


def _group_sections(groups: list[Group], metrics: list[str], root: str) -> list[dict[str, Any]]:
    """Groups of one protocol each, so a section never mixes versions."""
    sections: dict[str, dict[str, Any]] = {}
    for g in groups:
        sec = sections.setdefault(
            g.protocol.label,
            {"protocol": g.protocol.label, "groups": [], "metrics": [m for m in metrics if m in g.stats]},
        )
        for m in g.stats:
            if m not in sec["metrics"]:
                sec["metrics"].append(m)
        sec["groups"].append(g)
    out = []
    for sec in sections.values():
        out.append(
            {
                "protocol": sec["protocol"],
                "metrics": sec["metrics"],
                "rows": [
                    {
                        "method": g.method,
                        "variant": g.variant,
                        "arch": g.arch,
                        "n": len(g.records),
                        "detail": detail_href(root, g),
                        "cells": [
                            (
                                fmt.stat(g.stats.get(m)),
                                round(g.stats[m].mean, 4) if m in g.stats else "",
                                fmt.stat_title(g.stats.get(m)),
                            )
                            for m in sec["metrics"]
                        ],
                    }
                    for g in sec["groups"]
                ],
            }
        )
    return out


# ------------------------------------------------------------------------------------------------ detail pages
def _compact(v: Any) -> str:
    # No indent: json's C encoder only runs without one, and a detail page per group must stay cheap.
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(", ", ": "), default=str)


def runs_html(g: Group, metrics: list[str]) -> Markup:
    """The per-seed provenance rows of a group as HTML, every field through :func:`html.escape`.

    Written in Python rather than in the template because a 10,000-record build spends most of its time here and
    Jinja's per-expression overhead made it five times slower. Nothing is inserted unescaped except our own number
    formatting.
    """
    e = html.escape
    out = []
    for r, path in zip(g.records, g.paths):
        p = r.provenance
        vals = "".join(f'<td class="num" data-v="{v}">{v}</td>' for v in (fmt.mean(r.metrics.get(m)) for m in metrics))
        started = p.started_at.isoformat(timespec="seconds")
        git = (p.git_sha or "")[:10] + (" (dirty)" if p.git_dirty else "")
        versions = ", ".join(f"{k} {v}" for k, v in sorted(p.versions.items()))
        out.append(
            f'<tr><td class="num" data-v="{r.seed}">{r.seed}</td>{vals}<td data-v="{e(started)}">{e(started)}</td>'
            f'<td class="num" data-v="{p.wall_s:.0f}">{p.wall_s:.0f}</td><td>{e(p.device)}</td>'
            f'<td><code>{e(git)}</code></td><td class="small prov">vitbench {e(p.vitbench_version)}, {e(versions)}</td>'
            f'<td class="prov"><code class="small">{e(p.command)}</code></td>'
            f'<td class="prov"><code class="small">{e(str(path))}</code></td>'
            "</tr>"
        )
    return Markup("".join(out))


def probe_card(rec: Record) -> list[tuple[str, str]]:
    """The facts a reader needs to judge a probe: layers, pooling, resolution, normalisation, neck, head."""
    p = rec.probe
    spec: dict[str, Any] = p["spec"] if isinstance(p.get("spec"), dict) else {}
    dc: dict[str, Any] = p["data_config"] if isinstance(p.get("data_config"), dict) else {}
    card = []
    for label, value in (
        ("layers", p.get("layers", p.get("blocks", spec.get("indices")))),
        ("pooling", p.get("pooling", spec.get("global_pool"))),
        ("resolution", p.get("resolution", dc.get("input_size"))),
        (
            "normalisation",
            {"mean": dc["mean"], "std": dc["std"]} if "mean" in dc and "std" in dc else p.get("normalisation"),
        ),
        ("interpolation", dc.get("interpolation")),
        ("neck", p.get("neck")),
        ("head", p.get("head")),
        ("family", spec.get("family")),
    ):
        if value is not None:
            card.append((label, _compact(value)))
    return card


def group_view(g: Group, table: TaskTable | None) -> dict[str, Any]:
    first = g.records[0]
    metrics = sorted({m for r in g.records for m in r.metrics})
    row = None
    if table is not None and g.status == "current":
        row = next((r for r in table.rows if r.group is g), None)
    summary = []
    for m in metrics:
        c = row.cells.get(m) if row else None
        summary.append(
            {
                "metric": m,
                "stat": fmt.stat(g.stats.get(m)),
                "stat_title": fmt.stat_title(g.stats.get(m)),
                "reported": fmt.value(c.reported.value) if c and c.reported else "",
                "delta": fmt.delta(c.delta) if c else "",
                "verdict": c.verdict if c else "",
                "cls": (
                    "within"
                    if c and c.verdict == WITHIN
                    else f"outside {c.direction}"
                    if c and c.verdict == OUTSIDE
                    else ""
                ),
            }
        )
    lr = first.weights.load_report
    return {
        "anchor": g.anchor,
        "method": g.method,
        "variant": g.variant,
        "arch": g.arch,
        "track": g.track,
        "status": g.status,
        "protocol": g.protocol.label,
        "seeds": g.seeds,
        "summary": summary,
        "probe": probe_card(first),
        "probe_varies": any(r.probe != first.probe for r in g.records[1:]),
        "probe_json": _compact(first.probe),
        "weights": sorted({(r.weights.source, r.weights.sha256 or "", r.weights.file_name or "") for r in g.records}),
        "load_report": []
        if lr is None
        else [
            ("checkpoint key", lr.checkpoint_key or "(flat state dict)"),
            ("stripped prefixes", ", ".join(lr.stripped_prefixes)),
            ("keys matched", str(lr.matched)),
            ("dropped", ", ".join(lr.dropped)),
            ("converted", "; ".join(lr.converted)),
            ("missing (allowed)", ", ".join(lr.missing_allowed)),
        ],
        "dataset": [
            ("name", first.dataset.name),
            ("split", first.dataset.split),
            ("fingerprint", first.dataset.fingerprint),
            ("samples", str(first.dataset.n_samples)),
            ("skipped", _compact(first.dataset.skipped) if first.dataset.skipped else ""),
        ],
        "dataset_varies": len({r.dataset.fingerprint for r in g.records}) > 1,
        "config": _compact(first.protocol.config),
        "metrics": metrics,
        "runs": runs_html(g, metrics),
    }


_STATUS_TAG = {"current": "compared", "other": "other protocol", "smoke": "smoke"}


def _e(value: Any) -> str:
    """Jinja's autoescape of one ``{{ value }}``: :func:`markupsafe.escape` (``&<>'"``; Markup passes as is)."""
    return str(escape(value))


def group_section_html(g: dict[str, Any]) -> Markup:
    """One group's ``<section>`` of a detail page from :func:`group_view`'s dict, every value escaped as the
    template's autoescape would (:func:`markupsafe.escape`); only ``runs`` (:func:`runs_html`, itself escaped) is
    inserted as is. Written in Python for the reason :func:`runs_html` is: 1,800 groups of a 10,000-record build
    spent a third of the site's time in Jinja's per-expression overhead. The same bytes as the template it replaced
    (a test renders both)."""
    summary = "".join(
        f'<tr><td><code>{_e(s["metric"])}</code></td><td class="num"'
        + (f' title="{_e(s["stat_title"])}"' if s["stat_title"] else "")
        + f'>{_e(s["stat"])}</td><td class="num">{_e(s["reported"])}</td>'
        f'<td class="num delta {_e(s["cls"])}">{_e(s["delta"])}</td><td>{_e(s["verdict"])}</td></tr>'
        for s in g["summary"]
    )
    probe = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in g["probe"])
    weights = "".join(
        f'<dt>source</dt><dd><code>{_e(src)}</code></dd><dt>sha256</dt><dd><code class="hash">{_e(sha or "none")}'
        "</code></dd>" + (f"<dt>file</dt><dd><code>{_e(file)}</code></dd>" if file else "")
        for src, sha, file in g["weights"]
    )
    load_report = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v or '-')}</dd>" for k, v in g["load_report"])
    dataset = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in g["dataset"] if v)
    metrics = "".join(f'<th data-sort class="num"><button type="button">{_e(m)}</button></th>' for m in g["metrics"])
    probe_caveat = '<p class="caveat">The probe differs between seeds; the first seed\'s is shown.</p>'
    data_caveat = '<p class="caveat">Seeds ran on data with different fingerprints.</p>'
    return Markup(
        f'<section class="group" id="{_e(g["anchor"])}">\n'
        f'<h2><code>{_e(g["method"])}:{_e(g["variant"])}</code> <span class="tag {_e(g["status"])}">'
        f"{_e(_STATUS_TAG[g['status']])}</span></h2>\n"
        '<dl class="facts">\n'
        f"<dt>protocol</dt><dd><code>{_e(g['protocol'])}</code> · track <code>{_e(g['track'])}</code></dd>\n"
        f"<dt>architecture</dt><dd><code>{_e(g['arch'])}</code></dd>\n"
        f"<dt>seeds</dt><dd>{', '.join(_e(x) for x in g['seeds'])}</dd>\n"
        "</dl>\n"
        '<div class="scroll"><table class="vb-table">\n'
        '<thead><tr><th>metric</th><th class="num" title="mean ± half-width of the 95 % interval (Student t, n − 1 '
        'dof)">reproduced</th><th class="num">reported</th><th class="num">Δ</th><th>verdict</th></tr></thead>\n'
        f"<tbody>{summary}</tbody>\n"
        "</table></div>\n"
        '<div class="cards">\n'
        '<div class="card"><h3>Probe card</h3>'
        + (probe_caveat if g["probe_varies"] else "")
        + f'<dl class="facts">{probe}</dl>\n'
        f"<details><summary>full probe record</summary><pre>{_e(g['probe_json'])}</pre></details></div>\n"
        '<div class="card"><h3>Weights and load report</h3>\n'
        f'<dl class="facts">{weights}{load_report}</dl>\n'
        + ('<p class="caveat">Seeds used different weight files.</p>' if len(g["weights"]) > 1 else "")
        + "</div>\n"
        f'<div class="card"><h3>Data</h3><dl class="facts">{dataset}</dl>\n'
        + (data_caveat if g["dataset_varies"] else "")
        + f"<details><summary>protocol config</summary><pre>{_e(g['config'])}</pre></details></div>\n"
        "</div>\n"
        "<h3>Runs (provenance)</h3>\n"
        '<div class="scroll"><table class="vb-table sortable runs">\n'
        f'<thead><tr><th data-sort class="num"><button type="button">seed</button></th>{metrics}<th data-sort>'
        '<button type="button">started</button></th><th data-sort class="num"><button type="button">wall s</button>'
        "</th><th>device</th><th>git</th><th>versions</th><th>command</th><th>file</th></tr></thead>\n"
        f"<tbody>{_e(g['runs'])}</tbody>\n"
        "</table></div>\n"
        "</section>\n"
    )


def paper_rows(paper: Paper, tables: dict[str, TaskTable], adapters: Adapters | None = None) -> list[dict[str, Any]]:
    """The paper's reported rows, each with the reproduced number it is compared against (if any)."""
    out = []
    for rr in paper.rows:
        t = tables.get(rr.task)
        row = (
            next((r for r in t.rows if (r.method, r.variant, r.setting) == (rr.method, rr.variant, rr.setting)), None)
            if t
            else None
        )
        cell = row.cells.get(rr.metric) if row else None
        ours = ours_title = ""
        if cell is not None and cell.stat is not None:
            ours_title = fmt.stat_title(cell.stat)
            ours = fmt.stat(cell.stat) + (f", Δ {fmt.delta(cell.delta)}" if cell.delta is not None else "")
        out.append(
            {
                "row": rr,
                "value": fmt.value(rr.value),
                "ours": ours,
                "ours_title": ours_title,
                "ours_v": round(cell.stat.mean, 4) if cell is not None and cell.stat is not None else "",
                "cls": (
                    "within"
                    if cell and cell.verdict == WITHIN
                    else f"outside {cell.direction}"
                    if cell and cell.verdict == OUTSIDE
                    else ""
                ),
                "none": "not compared (setting)"
                if rr.setting
                else no_adapter(rr.method, rr.variant, adapters) or "not yet reproduced",
            }
        )
    return out
