# PYTHON_ARGCOMPLETE_OK
"""The ``vitbench`` command line. Arguments are parsed into plain values at this edge and nowhere else.

Exit codes are stable: 0 ok, 1 user error (one line on stderr, no traceback), 2 usage error (argparse).
Every option has help text and shows its default; listing commands take ``--json``. Shell completion comes from
argcomplete when it is installed (``pip install 'vitbench[completion]'``, then ``eval "$(register-python-argcomplete
vitbench)"``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from methods.errors import VitbenchError

Handler = Callable[[argparse.Namespace], int]


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _table(title: str, columns: list[str], rows: list[list[Any]], no_wrap: int = 0) -> None:
    """A rich table on stdout; the first ``no_wrap`` columns (ids) are never broken inside a word."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, box=box.SIMPLE_HEAD, pad_edge=False)
    for i, c in enumerate(columns):
        table.add_column(c, overflow="fold", no_wrap=i < no_wrap)
    for r in rows:
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in r])
    Console().print(table)


# What the `run` extra installs (pyproject.toml), by import name. The light install (`pip install -e .`) has none.
RUN_EXTRA = ("torch", "torchvision", "timm", "safetensors", "numpy", "PIL", "tqdm", "torchmetrics")


def require_run_extra(command: str) -> None:
    """One line naming the extra to install when ``command`` needs torch & co. and this is a light install."""
    import importlib.util

    missing = []
    for mod in RUN_EXTRA:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(mod)
    if missing:
        raise VitbenchError(
            f"vitbench {command} needs the 'run' extra ({', '.join(missing)} not installed): "
            "pip install -e '.[run]' in a clone, or pip install 'vitbench[run]'"
        )


# ------------------------------------------------------------------------------------------------ commands
def cmd_methods(args: argparse.Namespace) -> int:
    from methods.listing import describe_all  # the committed snapshot: no torch, no adapter imports

    described = describe_all()
    if args.json:
        _print_json(described)
        return 0
    rows = [
        [
            d["name"],
            d["lane"],
            ", ".join(v["name"] for v in d["variants"]),
            d["paper"]["venue"],
            d["variants"][0]["license"],
        ]
        for d in described
    ]
    _table("vitbench methods", ["method", "lane", "variants", "venue", "license"], rows, no_wrap=1)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from benchmarks.catalog import TASKS

    described = [spec.describe() for _, spec in TASKS.items() if spec.runnable or args.all]
    if args.json:
        _print_json(described)
        return 0
    if args.wide:
        rows = [
            [
                d["name"],
                f"{d['protocol']} v{d['protocol_version']}" if d["runnable"] else "reported only",
                d["headline"],
                d["synth_kind"] or "-",
                d["description"] or d["title"],
            ]
            for d in described
        ]
        _table("vitbench tasks", ["task", "protocol", "headline", "smoke data", "description"], rows, no_wrap=1)
        return 0
    # 80 columns: the id, the protocol version, the headline and the title (--wide: protocol names, smoke data).
    rows = [
        [d["name"], f"v{d['protocol_version']}" if d["runnable"] else "-", d["headline"], d["title"]] for d in described
    ]
    _table("vitbench tasks (--wide for protocols and smoke data)", ["task", "v", "headline", "title"], rows, no_wrap=1)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    require_run_extra("data synth")
    from benchmarks.synth import synth

    root = synth(args.kind, Path(args.out), args.seed)
    print(f"wrote synthetic '{args.kind}' data to {root}")
    return 0


def _parse_overrides(items: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise VitbenchError(f"--set {item!r}: expected KEY=VALUE (e.g. --set epochs=10)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.append((key, tuple(value) if isinstance(value, list) else value))
    return tuple(out)


def cmd_run(args: argparse.Namespace) -> int:
    require_run_extra("run")
    from benchmarks.runner import RunRequest, run

    req = RunRequest(
        method=args.method,
        task=args.task,
        data=Path(args.data) if args.data else None,
        weights=args.weights,
        seed=args.seed,
        out=Path(args.out),
        device=args.device,
        smoke=args.smoke,
        force=args.force,
        cache_dir=Path(args.cache) if args.cache else None,
        protocol_overrides=_parse_overrides(args.set),
        progress=not args.no_progress,
        command=args.command_line,
        launcher=args.launcher,
        resample_pos_embed=args.resample_pos_embed,
    )
    path, record = run(req)
    if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) != 0:
        return 0  # under torchrun / srun only rank 0 writes the record and reports it
    if record is None:
        print(f"skipped: {path} exists (use --force to run again)")
        return 0
    from benchmarks.catalog import get_task

    spec = get_task(record.task)  # the metrics declared by name; ^pattern families (per k, per block) stay in the file
    rows = [[k, v] for k, v in record.metrics.items() if k in spec.metrics]
    _table(f"{record.method}:{record.variant} on {record.task} ({record.track})", ["metric", "value"], rows)
    print(f"record: {path}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from benchmarks.validate import validate_files

    results = validate_files([Path(f) for f in args.files])
    bad = 0
    for path, problem in results:
        if problem is None:
            print(f"ok: {path}")
        else:
            bad += 1
            print(f"invalid: {problem}", file=sys.stderr)
    return 1 if bad else 0


def cmd_new_method(args: argparse.Namespace) -> int:
    from benchmarks.scaffold import scaffold_method

    written = scaffold_method(args.name, Path(args.root))
    for path in written:
        print(f"wrote {path}")
    module = args.name.replace("-", "_")
    print(
        f"next: fill in the TODOs in methods/{module}.py, run `.venv/bin/python -m methods.listing --write` and "
        f"`.venv/bin/python -m pytest tests/methods/test_{module}.py tests/methods/test_contract.py --adapter "
        f"{args.name}`, then open the adapter PR (CONTRIBUTING.md)"
    )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    require_run_extra("inspect-weights")
    from methods import build_encoder

    enc = build_encoder(args.method, weights=args.weights, resample_pos_embed=args.resample_pos_embed)
    ident = enc.identity
    info = {
        "method": ident.method,
        "variant": ident.variant,
        "arch": ident.arch,
        "weights": ident.weights_source,
        "sha256": ident.weights_sha256,
        "load_report": ident.load_report.to_dict() if ident.load_report else None,
        "spec": enc.spec.to_dict(),
        "data_config": enc.data_config.to_dict(),
    }
    if args.json:
        _print_json(info)
        return 0
    rep = ident.load_report
    print(f"{ident.method}:{ident.variant} ({ident.arch})")
    print(f"  file               {ident.weights_source}")
    print(f"  sha256             {ident.weights_sha256}")
    if rep is not None:
        print(
            f"  key                {rep.checkpoint_key or '<flat state dict>'}; stripped {rep.stripped_prefixes or '-'}"
        )
        print(f"  integrity          {rep.integrity}")
        print(f"  matched            {rep.matched} (non-finite: {rep.non_finite})")
        for label, keys in (
            ("dropped", rep.dropped),
            ("converted", rep.converted),
            ("missing (allowed)", rep.missing_allowed),
        ):
            more = f"\n    … (+{len(keys) - 50} more; --json lists all)" if len(keys) > 50 else ""
            print(f"  {label:<18} {len(keys)}" + "".join(f"\n    {k}" for k in keys[:50]) + more)
    s = enc.spec
    print(
        f"  spec               family={s.family} embed_dim={s.embed_dim} blocks={s.num_blocks} dense={list(s.indices)} "
        f"channels={list(s.channels)} strides={list(s.reductions)} global={s.global_pool}"
    )
    return 0


# ------------------------------------------------------------------------------------------------ parser
CACHE_HELP = "feature cache folder (default: $VITBENCH_CACHE/features, ~/.cache/vitbench/features when unset)"


class _Formatter(argparse.HelpFormatter):
    """Shows every option's default (unless its help already says it, or there is none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and "default" not in text
            and not (default is None or default is False or default == [] or default == argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Every ``vitbench`` (sub)command parser: defaults shown in ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vitbench", description="Benchmark pretrained vision encoders.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    json_help = "print JSON (a stable format for scripts) instead of a table"

    p = sub.add_parser("methods", help="list method adapters, variants, papers and licenses")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("tasks", help="list benchmark tasks and their protocol versions")
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--all", action="store_true", help="also list tasks that have reported numbers but no harness")
    p.add_argument("--wide", action="store_true", help="add protocol names, smoke data and descriptions")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("data", help="dataset utilities")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    s = dsub.add_parser("synth", help="write a tiny synthetic dataset in the real on-disk format")
    s.add_argument("kind", help="imagefolder, coco, ... (see `vitbench tasks --wide`: smoke data)")
    s.add_argument("--out", required=True, help="folder to write the dataset into")
    s.add_argument("--seed", type=int, default=0, help="random seed of the generated images")
    s.set_defaults(func=cmd_synth)

    p = sub.add_parser("run", help="run one task on one method and write its result record")
    p.add_argument("--method", required=True, help="METHOD or METHOD:VARIANT (see `vitbench methods`)")
    p.add_argument("--task", required=True, help="task id (see `vitbench tasks`)")
    p.add_argument("--data", help="dataset root in the task's layout (required by every task)")
    p.add_argument("--weights", help="checkpoint PATH, URL, hf-hub:owner/repo/file, or 'random' (default: pinned URL)")
    p.add_argument("--seed", type=int, default=0, help="seed of the run (heads, sampling); one record per seed")
    p.add_argument("--out", default="results", help="results root; the record goes to OUT/runs/<task>/<method>/")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--smoke", action="store_true", help="tiny CPU setting of the protocol; record track 'smoke'")
    p.add_argument("--force", action="store_true", help="run even if the record exists, and overwrite it")
    p.add_argument("--cache", help=CACHE_HELP)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a protocol field, checked against its type (repeatable; the value is JSON or a string)",
    )
    p.add_argument(
        "--launcher",
        choices=["none", "pytorch", "slurm"],
        help="multi-GPU launcher for training harnesses (mmengine); default: detected from torchrun/srun",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (default: a bar on a terminal, a plain line every 30 s otherwise)",
    )
    _add_resample(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="validate result records (for submissions)")
    p.add_argument("files", nargs="+", help="record files (runs/<task>/<method>/<variant>__seed<n>.json)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("inspect-weights", help="load a checkpoint and print its load report and sha256")
    p.add_argument("--method", required=True, help="METHOD or METHOD:VARIANT")
    p.add_argument("--weights", required=True, help="checkpoint PATH or URL")
    p.add_argument("--json", action="store_true", help=json_help)
    _add_resample(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("new-method", help="scaffold a method adapter, its test and its results folder")
    p.add_argument("name", help="method key (lower case letters, digits, '-')")
    p.add_argument("--root", default=".", help="repository root (default: current folder)")
    p.set_defaults(func=cmd_new_method)

    _add_sweep(sub)
    for plugin in _command_plugins():
        plugin(sub)
    return parser


def _add_resample(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resample-pos-embed",
        action="store_true",
        help="load a position table of a grid the method does not declare, resampled (load report and record say so)",
    )


def _command_plugins() -> list[Callable[[Any], None]]:
    """Subcommands contributed by packages above this one (the leaderboard's ``leaderboard`` and ``compare``),
    found through the ``vitbench.commands`` entry-point group, so that ``benchmarks`` never imports them."""
    from importlib.metadata import entry_points

    return [ep.load() for ep in sorted(entry_points(group="vitbench.commands"), key=lambda ep: ep.name)]


def _cmd_sweep(args: argparse.Namespace) -> int:
    require_run_extra("sweep")
    from benchmarks.sweep import cmd_sweep

    return cmd_sweep(args)


def _add_sweep(sub: Any) -> None:
    """``vitbench sweep``; :mod:`benchmarks.sweep` is imported only when it runs."""
    p = sub.add_parser("sweep", help="run a grid of method x task x seed through submitit (local or Slurm)")
    p.add_argument("--methods", nargs="+", required=True, metavar="M[:VARIANT]", help="methods (and variants) to run")
    p.add_argument("--tasks", nargs="+", required=True, help="task ids (see `vitbench tasks`)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds; one record per cell and seed")
    p.add_argument("--data", help="dataset root (same for every task in the sweep)")
    p.add_argument("--weights", help="checkpoint for every method (default: each variant's pinned URL)")
    p.add_argument("--out", default="results", help="results root, as for `vitbench run`")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N], for every job")
    p.add_argument("--smoke", action="store_true", help="the protocols' smoke settings; records on track 'smoke'")
    p.add_argument("--force", action="store_true", help="run cells that already have a record, and overwrite it")
    p.add_argument("--cache", help=CACHE_HELP)
    p.add_argument("--executor", default="local", choices=["local", "slurm"], help="where submitit runs the jobs")
    p.add_argument("--log-dir", help="submitit folder (default OUT/work/submitit)")
    p.add_argument("--slurm-partition", help="Slurm partition (default: the cluster's default)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs per node (Slurm; default: none requested)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs per task (Slurm; default: the cluster's)")
    p.add_argument("--timeout-min", type=int, default=60 * 24, help="time limit of each job in minutes")
    p.set_defaults(func=_cmd_sweep)


def _version() -> str:
    import benchmarks

    return f"vitbench {benchmarks.__version__}"


def _one_line(err: BaseException) -> str:
    """Errors re-raised from DataLoader workers carry a traceback in their message: keep the last line."""
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else type(err).__name__
    # That last line reads "methods.errors.DataError: <message>": drop the exception's qualified name.
    return re.sub(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception): ", "", text)


def _autocomplete(parser: argparse.ArgumentParser) -> None:
    """Shell completion when argcomplete is installed (the ``completion`` extra); a no-op otherwise."""
    if "_ARGCOMPLETE" not in os.environ:  # not a completion request: skip even the import
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _autocomplete(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["vitbench", *argv])  # recorded as the record's provenance.command
    try:
        return int(args.func(args) or 0)
    except VitbenchError as err:
        print(f"vitbench: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk anywhere (work folders, logs, checkpoints) is the user's to fix: one line
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = Path(err.filename).parent if err.filename else Path.cwd()
        print(
            f"vitbench: error: {where}: no space left on device writing {err.filename or 'a file'}; free space there "
            "or point the command elsewhere (--out, --cache, VITBENCH_CACHE)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("vitbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
