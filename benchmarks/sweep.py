"""``vitbench sweep``: a grid of method x task x seed runs, submitted through submitit (local or Slurm).

No scheduler of our own: each grid cell is one :func:`benchmarks.runner.run` call submitted as one submitit job.
Cells whose record already exists are skipped before submission (so a sweep resumes), and each job re-checks
on start. ``--executor local`` runs jobs as subprocesses on this machine; ``--executor slurm`` needs a Slurm
cluster (``--slurm-partition``, ``--gpus``, ``--timeout-min``).
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.records import existing_record
from methods import get_adapter, parse_method
from methods.errors import VitbenchError
from methods.listing import check_variant

if TYPE_CHECKING:
    from benchmarks.preflight import RunRequest


def plan(base: RunRequest, methods: list[str], tasks: list[str], seeds: list[int]) -> list[RunRequest]:
    """Every (method, task, seed) cell without a record yet (all cells with ``base.force``)."""
    from benchmarks.catalog import get_task
    from benchmarks.preflight import check_device, check_weights, check_writable_dir

    check_weights(base.weights, base.smoke)  # torch-free refusals first: random weights without --smoke, ...
    check_device(base.device)
    check_writable_dir(Path(base.out), "--out")
    cells = []
    for method, task, seed in itertools.product(methods, tasks, seeds):
        name, variant = parse_method(method)
        variant = check_variant(name, variant)  # unknown names fail here, before anything is submitted
        if variant is None:  # a method the snapshot does not describe yet: ask its adapter
            variant = get_adapter(name).variant(None).name
        proto = get_task(task).protocol_for(base.smoke, dict(base.protocol_overrides))  # runnable, overrides valid
        track = "smoke" if base.smoke else "paper"
        if not base.force and existing_record(
            base.out, task, name, variant, seed, track=track, protocol_hash=proto.hash()
        ):
            continue
        cells.append(replace(base, method=f"{name}:{variant}", task=task, seed=seed))
    return cells


def _run_cell(req: RunRequest) -> str:
    from benchmarks.runner import run

    path, _ = run(req)
    return str(path)


def submit(cells: list[RunRequest], executor: str, folder: Path, slurm: dict) -> list[str]:
    """Submit ``cells`` and wait for them; return the record paths. Failures are collected, then raised."""
    try:
        import submitit
    except ImportError:
        raise VitbenchError("vitbench sweep needs submitit: pip install 'vitbench[cluster]'") from None
    ex: submitit.Executor
    if executor == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=slurm.get("timeout_min", 60 * 24))
    elif executor == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        ex.update_parameters(**{k: v for k, v in slurm.items() if v is not None})
    else:
        raise VitbenchError(f"--executor {executor}: expected local or slurm")
    jobs = [ex.submit(_run_cell, cell) for cell in cells]
    done, errors = [], []
    for cell, job in zip(cells, jobs, strict=True):
        try:
            done.append(job.result())
        except Exception as err:  # one failed cell must not hide the others' results
            last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            errors.append(f"{cell.method} {cell.task} seed {cell.seed}: {last} (log: {job.paths.stderr})")
    for line in errors:
        print(f"failed: {line}")
    if errors:
        raise VitbenchError(f"{len(errors)} of {len(cells)} sweep jobs failed (see the logs above)")
    return done


def cmd_sweep(args: argparse.Namespace) -> int:
    from benchmarks.preflight import RunRequest

    base = RunRequest(
        method="",
        task="",
        data=Path(args.data) if args.data else None,
        weights=args.weights,
        out=Path(args.out),
        device=args.device,
        smoke=args.smoke,
        force=args.force,
        cache_dir=Path(args.cache) if args.cache else None,
        progress=False,
    )
    cells = plan(base, args.methods, args.tasks, args.seeds)
    total = len(args.methods) * len(args.tasks) * len(args.seeds)
    print(f"sweep: {len(cells)} of {total} cells to run ({total - len(cells)} already have records)")
    if not cells:
        return 0
    folder = Path(args.log_dir or Path(args.out) / "work" / "submitit")
    slurm = {
        "slurm_partition": args.slurm_partition,
        "gpus_per_node": args.gpus,
        "timeout_min": args.timeout_min,
        "cpus_per_task": args.cpus,
    }
    for path in submit(cells, args.executor, folder, slurm):
        print(f"record: {path}")
    return 0
