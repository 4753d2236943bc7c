"""Inline SVG plots, written by hand: no matplotlib start-up cost per page, no external files, works offline.

Every piece of text that reaches the SVG goes through :func:`html.escape`; the result is wrapped in
:class:`markupsafe.Markup` only after that, so templates can insert it without double escaping.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from leaderboard import fmt
from leaderboard.table import OUTSIDE, TaskTable

_W, _H, _PAD = 360, 300, 44


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / (n - 1)
    return [lo + i * step for i in range(n)]


def scatter(t: TaskTable) -> Markup | None:
    """Reported (x) vs reproduced mean (y) for every compared cell; the band is each point's tolerance."""
    pts = [
        (row, m, c)
        for row in t.rows
        for m, c in row.cells.items()
        if c.reported is not None and c.stat is not None and c.delta is not None
    ]
    if not pts:
        return None
    values = [v for _, _, c in pts for v in (c.reported.value, c.stat.mean)]  # type: ignore[union-attr]
    lo, hi = min(values), max(values)
    margin = max((hi - lo) * 0.1, 1.0)
    lo, hi = lo - margin, hi + margin

    def sx(v: float) -> float:
        return _PAD + (v - lo) / (hi - lo) * (_W - _PAD - 20)  # 20: room for the last tick label's right half

    def sy(v: float) -> float:
        return _H - _PAD - (v - lo) / (hi - lo) * (_H - _PAD - 10)

    out = [
        f'<svg class="plot" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="reported versus reproduced, {escape(t.task)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>Reported vs reproduced: {escape(t.task)}</title>",
        f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" class="diag"/>',
    ]
    for v in _ticks(lo, hi):
        out.append(f'<text x="{sx(v):.1f}" y="{_H - _PAD + 14}" class="tick" text-anchor="middle">{v:.1f}</text>')
        out.append(f'<text x="{_PAD - 4}" y="{sy(v) + 3:.1f}" class="tick" text-anchor="end">{v:.1f}</text>')
    out.append(f'<text x="{_W / 2:.0f}" y="{_H - 8}" class="axis" text-anchor="middle">reported</text>')
    out.append(
        f'<text x="12" y="{_H / 2:.0f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 12 {_H / 2:.0f})">reproduced</text>'
    )
    for row, m, c in pts:
        # The table's colours: green within tolerance, red worse, amber better than reported beyond it.
        cls = f"pt out {c.direction or 'worse'}" if c.verdict == OUTSIDE else "pt in"
        label = (
            f"{row.method}:{row.variant} {m}: reported {fmt.value(c.reported.value)}, "  # type: ignore[union-attr]
            f"reproduced {fmt.stat(c.stat)}, delta {fmt.delta(c.delta)}"
        )
        out.append(
            f'<circle cx="{sx(c.reported.value):.1f}" cy="{sy(c.stat.mean):.1f}" r="4" '  # type: ignore[union-attr]
            f'class="{cls}"><title>{escape(label)}</title></circle>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def bars(t: TaskTable, limit: int = 40) -> Markup | None:
    """Headline metric per row: the reported bar above the reproduced bar (first ``limit`` rows of the table)."""
    rows = [r for r in t.rows if t.headline in r.cells][:limit]
    items = []
    for r in rows:
        c = r.cells[t.headline]
        items.append((r, c.reported.value if c.reported else None, c.stat.mean if c.stat else None))
    values = [v for _, a, b in items for v in (a, b) if v is not None]
    if not values:
        return None
    vmax = max(max(values), 1e-9)
    names = [f"{r.method}:{r.variant}" + (f" [{r.setting}]" if r.setting else "") for r, _, _ in items]
    # Wide enough for the longest label at the 10 px tick font (~6.2 px a character), so none is clipped.
    label_w, bar_w, line_h = max(80, round(6.2 * max(len(n) for n in names)) + 12), 250, 22
    height = 24 + line_h * len(items)
    out = [
        f'<svg class="plot" viewBox="0 0 {label_w + bar_w + 60} {height}" width="{label_w + bar_w + 60}" '
        f'height="{height}" role="img" aria-label="{escape(t.headline)} per model" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(t.task)}: {escape(t.headline)} per model</title>",
        f'<text x="{label_w}" y="12" class="axis">{escape(t.headline)} (reported above, reproduced below)</text>',
    ]
    for i, ((_, rep, ours), name) in enumerate(zip(items, names)):
        y = 20 + i * line_h
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" class="tick" text-anchor="end">{escape(name)}</text>')
        for k, (v, cls) in enumerate(((rep, "bar rep"), (ours, "bar ours"))):
            if v is None:
                continue
            w = max(v, 0.0) / vmax * bar_w
            what = "reported" if k == 0 else "reproduced"
            out.append(
                f'<rect x="{label_w}" y="{y + 2 + k * 9}" width="{w:.1f}" height="8" class="{cls}">'
                f"<title>{escape(name)} {what}: {fmt.value(v)}</title></rect>"
            )
        if rep is not None or ours is not None:
            shown = fmt.mean(ours) if ours is not None else fmt.value(rep)
            out.append(f'<text x="{label_w + bar_w + 4}" y="{y + 13}" class="tick">{shown}</text>')
    out.append("</svg>")
    return Markup("".join(out))
