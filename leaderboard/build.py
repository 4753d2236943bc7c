"""Build the static site: ``index.html``, one page per task, one detail page per (task, method), one page per paper,
plus ``leaderboard.md`` and ``compare.csv``. Everything is rendered with Jinja2 autoescaping; the only markup that
bypasses it is produced here (SVG plots, JSON blobs) from escaped text.

The site is written to a temporary sibling folder and swapped in at the end, so a failed build never leaves half a
site, and an existing folder is replaced only if a previous build made it (it holds the ``.vitbench-site`` marker).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jinja2

from leaderboard import plots
from leaderboard.collect import TaskLookup, find_task
from leaderboard.compare import Leaderboard, assemble, comparison_rows, render
from leaderboard.markdown import leaderboard_md
from leaderboard.reported import Paper, Tolerances
from leaderboard.views import (
    Adapters,
    group_section_html,
    group_view,
    inline_md,
    json_script,
    paper_href,
    paper_rows,
    task_view,
)
from methods.errors import VitbenchError

MARKER = ".vitbench-site"
_HERE = Path(__file__).resolve().parent


@dataclass
class SiteReport:
    out: Path
    index: Path
    pages: int
    records: int
    rejected: list[tuple[Path, str]]
    summary: list[dict[str, Any]] = field(default_factory=list)  # one line per task, for the terminal


@functools.cache
def _env() -> jinja2.Environment:
    """One environment per process: compiling the templates costs about as much as rendering 2,000 records."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,  # every template is HTML; user data is never marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json_script"] = json_script
    env.filters["md"] = inline_md
    return env


def _paper_status(lb: Leaderboard, paper: Paper, registered: set[str]) -> dict[str, Any]:
    mine = set(paper.info.methods)
    groups = [g for g in lb.groups if g.method in mine and g.status == "current"]
    return {
        "adapters": [(m, m in registered) for m in paper.info.methods],
        "any_adapter": any(m in registered for m in paper.info.methods),
        "reproduced": sorted({(g.task, g.method, g.variant) for g in groups}),
        "smoke": len([g for g in lb.groups if g.method in mine and g.status == "smoke"]),
    }


def _adapter_variants(registered: set[str]) -> Adapters:
    """Each registered method's variant names, from the committed method snapshot (no adapter is imported)."""
    try:
        from methods.listing import snapshot

        snap = snapshot()
    except Exception:  # noqa: BLE001 - a broken snapshot must not stop the site; variants are then unknown
        snap = {}
    return {m: ({v["name"] for v in snap[m]["variants"]} if m in snap else None) for m in registered}


def _registered_methods() -> set[str]:
    try:
        from methods.registry import list_methods

        return set(list_methods())
    except Exception:  # noqa: BLE001 - the site must build even from a checkout whose registry is broken
        return set()


def _summary(lb: Leaderboard) -> list[dict[str, Any]]:
    out = []
    for t in lb.tables.values():
        default = [r for r in t.rows if r.setting is None]
        out.append(
            {
                "task": t.task,
                "title": t.title,
                "reported": len(t.reported),
                "reproduced": sum(r.reproduced for r in t.rows),
                "within": t.n_within,
                "outside": t.n_outside,
                "not_reproduced": sum(
                    1 for r in default if not r.reproduced and any(c.reported for c in r.cells.values())
                ),
                "other": len(t.other),
                "smoke": len(t.smoke),
            }
        )
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return pid > 0


def _recover(out: Path) -> None:
    """Repair what a build killed mid-swap left: if ``out`` is gone but the previous site survives as
    ``.<out>.old-<pid>`` (killed between the two renames), put it back; then remove every ``.<out>.tmp-<pid>-*`` /
    ``.<out>.old-<pid>`` folder whose build process is no longer running and that a build made (it holds the
    marker, or is a temp folder of ours)."""
    parent = out.parent
    if not parent.is_dir():
        return
    orphans = []
    for entry in parent.iterdir():
        for kind in ("tmp", "old"):
            prefix = f".{out.name}.{kind}-"
            if entry.name.startswith(prefix) and entry.is_dir() and not entry.is_symlink():
                pid = entry.name[len(prefix) :].split("-", 1)[0]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    orphans.append((kind, entry))
    olds = sorted((e for k, e in orphans if k == "old" and (e / MARKER).exists()), key=lambda e: e.stat().st_mtime)
    if not out.exists() and olds:
        os.replace(olds[-1], out)  # the last complete site comes back
        print(
            f"vitbench: note: restored {out} from {olds[-1].name} (an earlier build was interrupted)", file=sys.stderr
        )
    for _, entry in orphans:
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _prepare_out(out: Path) -> Path:
    _recover(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise VitbenchError(
            f"{out}: exists and was not made by `vitbench leaderboard` (no {MARKER} in it); "
            f"choose another --out or remove it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the site is for reading: as world-readable as umask allows
    return tmp


def _swap_in(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. Reading 10,000 records allocates millions of small objects and no
    cycles worth collecting; the collector's repeated full passes over that heap doubled the build time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_site(
    results: Path | str = Path("results"),
    out: Path | str = Path("site"),
    tolerances: Tolerances | None = None,
    task_lookup: TaskLookup = find_task,
    registered: set[str] | None = None,
) -> SiteReport:
    """Read ``results`` and write the site to ``out``; return what was written. ``task_lookup`` gives each task's
    catalogue entry, None for an unknown task (default: :mod:`benchmarks.catalog`, which imports no harness);
    ``registered`` the method keys that have an adapter (default: the method registry's)."""
    results, out = Path(results), Path(out)
    if not (results / "reported").is_dir() and not (results / "runs").is_dir():
        raise VitbenchError(f"{results}: no reported/ or runs/ folder: not a vitbench results folder")
    with _gc_paused():
        lb = assemble(results, tolerances, task_lookup)
        tmp = _prepare_out(out)
        try:
            pages = _write_site(lb, tmp, _registered_methods() if registered is None else registered)
            _swap_in(tmp, out)
        except BaseException as err:
            written = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) if tmp.is_dir() else 0
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise VitbenchError(
                    f"{out.parent}: no space left on device for the site (it needs more than the {written} bytes "
                    f"written before the disk filled); nothing was changed at {out}"
                ) from None
            raise
        report = SiteReport(
            out=out,
            index=out / "index.html",
            pages=pages,
            records=len(lb.records.records),
            rejected=lb.records.rejected,
            summary=_summary(lb),
        )
        # Free the records while the collector is still off: re-enabling it with them alive made its next pass
        # walk every object allocated during the build (0.2-0.6 s).
        del lb
    return report


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_site(lb: Leaderboard, out: Path, registered: set[str]) -> int:
    env = _env()
    papers = lb.reported.papers
    paper_of_method = {m: p for p in papers for m in p.info.methods}
    summary = _summary(lb)
    pages = 0

    (out / "static").mkdir(parents=True)
    for name in ("vitbench.css", "vitbench.js"):
        shutil.copyfile(_HERE / "static" / name, out / "static" / name)
    (out / MARKER).write_text("made by vitbench leaderboard; the whole folder is replaced on each build\n")

    statuses = {p.id: _paper_status(lb, p, registered) for p in papers}
    adapters = _adapter_variants(registered)
    _write(
        out / "index.html",
        env.get_template("index.html.jinja").render(
            root="",
            summary=summary,
            papers=papers,
            statuses=statuses,
            rejected=lb.records.rejected,
            n_records=len(lb.records.records),
            n_groups=len(lb.groups),
            tol=lb.tolerances,
        ),
    )
    pages += 1

    task_tpl, detail_tpl = env.get_template("task.html.jinja"), env.get_template("detail.html.jinja")
    for t in lb.tables.values():
        rows = comparison_rows({t.task: t})
        _write(
            out / "tasks" / f"{t.task}.html",
            task_tpl.render(
                root="../",
                t=t,
                v=task_view(t, "../", adapters),
                scatter=plots.scatter(t),
                bars=plots.bars(t),
                data=rows,
            ),
        )
        pages += 1
        by_method: dict[str, list[Any]] = {}
        for g in lb.groups:
            if g.task == t.task:
                by_method.setdefault(g.method, []).append(g)
        for method, groups in by_method.items():
            paper = paper_of_method.get(method)
            _write(
                out / "tasks" / t.task / f"{method}.html",
                detail_tpl.render(
                    root="../../",
                    t=t,
                    method=method,
                    groups=[group_section_html(group_view(g, t)) for g in groups],
                    paper=paper,
                    paper_href=paper_href("../../", paper) if paper else "",
                ),
            )
            pages += 1

    paper_tpl = env.get_template("paper.html.jinja")
    for p in papers:
        _write(
            out / "papers" / f"{p.id}.html",
            paper_tpl.render(root="../", p=p, status=statuses[p.id], rows=paper_rows(p, lb.tables, adapters)),
        )
        pages += 1

    _write(out / "leaderboard.md", leaderboard_md(lb.tables))
    _write(out / "compare.csv", render(comparison_rows(lb.tables), "csv"))
    return pages


def print_summary(report: SiteReport, stream: TextIO | None = None) -> None:
    """The terminal view of a build: one line per task, then where the site is."""
    stream = stream or sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table

        have_rich = True
    except ImportError:  # rich is a dependency, but a plain table is enough if it is missing
        have_rich = False
    head = ["task", "reported", "reproduced", "within", "outside", "not yet reproduced", "other protocol", "smoke"]
    keys = ["task", "reported", "reproduced", "within", "outside", "not_reproduced", "other", "smoke"]
    if have_rich:
        table = Table(title="vitbench leaderboard", title_justify="left")
        for h in head:
            table.add_column(h, justify="left" if h == "task" else "right")
        for s in report.summary:
            table.add_row(*[str(s[k]) for k in keys])
        Console(file=stream, width=120, highlight=False).print(table)
    else:
        print("  ".join(head), file=stream)
        for s in report.summary:
            print("  ".join(str(s[k]) for k in keys), file=stream)
    print(f"{report.records} records read, {len(report.rejected)} rejected, {report.pages} pages written.", file=stream)
    for _, msg in report.rejected[:10]:
        print(f"  rejected: {msg}", file=stream)
    print(f"Site: {report.index.resolve()}", file=stream)
    print(f"Markdown: {(report.out / 'leaderboard.md').resolve()}", file=stream)


def main_job(results: Path = Path("results"), out: Path = Path("site")) -> SiteReport:
    """The README's first command: rebuild the leaderboard from the committed results and say where it is."""
    report = build_site(results, out)
    print_summary(report)
    return report
