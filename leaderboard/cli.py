"""The leaderboard's subcommands of ``vitbench``: ``leaderboard`` and ``compare``.

:func:`add_parsers` is the ``vitbench.commands`` entry point (pyproject.toml) that :mod:`benchmarks.cli` loads with
its subparsers, so the dependency points one way (leaderboard -> benchmarks); each subcommand sets ``func``. User
errors raise :class:`VitbenchError` (one line, exit 1). ``compare`` exits 0 whatever the verdicts: the table says
which rows are outside tolerance.

Every ``vitbench`` command loads this module to register its subcommands, so it imports nothing beyond the standard
library at the top: the leaderboard's modules (pydantic, YAML, Jinja2) load only when one of its commands runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from methods.errors import VitbenchError

if TYPE_CHECKING:
    from leaderboard.reported import Tolerances


def parse_tolerances(specs: list[str], base: Tolerances) -> Tolerances:
    """Apply ``--tolerance`` values to a :class:`~leaderboard.reported.Tolerances`: ``0.5`` sets the default,
    ``METRIC=0.5`` one metric, ``TASK:METRIC=0.5`` one metric of one task."""
    from leaderboard.reported import Tolerances

    tol = Tolerances(base.default, dict(base.metrics), {k: dict(v) for k, v in base.tasks.items()})
    for spec in specs:
        target, _, value = spec.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise VitbenchError(f"--tolerance {spec}: expected NUMBER, METRIC=NUMBER or TASK:METRIC=NUMBER") from None
        if not number > 0 or number == float("inf"):
            raise VitbenchError(f"--tolerance {spec}: must be a finite number > 0")
        if not target:
            tol.default = number
        elif ":" in target:
            task, _, metric = target.partition(":")
            tol.tasks.setdefault(task, {})[metric] = number
        else:
            tol.metrics[target] = number
    return tol


def _tolerances(args: argparse.Namespace) -> Tolerances:
    from leaderboard.reported import load_tolerances

    return parse_tolerances(args.tolerance, load_tolerances(Path(args.results) / "reported"))


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from leaderboard.build import build_site, print_summary

    report = build_site(Path(args.results), Path(args.out), tolerances=_tolerances(args))
    if args.quiet:
        print(report.index.resolve())
    else:
        print_summary(report)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from leaderboard.compare import assemble, comparison_rows, render
    from methods._names import did_you_mean

    lb = assemble(Path(args.results), _tolerances(args))
    if args.task is not None and args.task not in lb.tables:
        hint = did_you_mean(args.task, list(lb.tables))
        raise VitbenchError(f"--task {args.task}: no reported or reproduced numbers{hint}")
    methods = {r.method for t in lb.tables.values() for r in t.rows}
    if args.method is not None and args.method not in methods:
        raise VitbenchError(
            f"--method {args.method}: no reported or reproduced numbers{did_you_mean(args.method, sorted(methods))}"
        )
    sys.stdout.write(render(comparison_rows(lb.tables, method=args.method, task=args.task), args.format))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``leaderboard`` and ``compare`` on ``vitbench``'s subparsers."""
    tol_help = (
        "tolerance: NUMBER (for every metric), METRIC=NUMBER or TASK:METRIC=NUMBER; repeatable "
        "(default: results/reported/_tolerances.yaml)"
    )

    p = sub.add_parser("leaderboard", help="build the static leaderboard site from results/")
    p.add_argument("--results", default="results", help="results root holding runs/ and reported/")
    p.add_argument("--out", default="site", help="output folder, replaced on each build")
    p.add_argument("--tolerance", action="append", default=[], metavar="SPEC", help=tol_help)
    p.add_argument("--quiet", action="store_true", help="print only the path of index.html")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("compare", help="reproduced vs reported numbers with delta and tolerance verdict")
    p.add_argument("--method", help="only this method key (default: all)")
    p.add_argument("--task", help="only this task id (default: all)")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md", help="output format (json for scripts)")
    p.add_argument("--results", default="results", help="results root holding runs/ and reported/")
    p.add_argument("--tolerance", action="append", default=[], metavar="SPEC", help=tol_help)
    p.set_defaults(func=cmd_compare)
