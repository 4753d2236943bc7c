"""Run one (method, variant, task, seed) and write its record: the glue between the CLI and the harnesses."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import benchmarks
from benchmarks.catalog import TaskSpec, get_task
from benchmarks.harness import LAUNCHERS, RunContext, RunOutput, load_harness
from benchmarks.protocol import Protocol
from benchmarks.records import (
    LoadReport,
    MetricMeta,
    Provenance,
    Record,
    Weights,
    existing_record,
    write_record,
)
from methods import build_encoder, parse_method
from methods.errors import VitbenchError

if TYPE_CHECKING:
    from methods import Encoder

_SOURCE_DIR = Path(__file__).resolve().parent.parent


@cache
def git_state(path: Path = _SOURCE_DIR) -> tuple[str | None, bool | None]:
    """(HEAD sha, dirty?) of the vitbench checkout, or (None, None) outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            != ""
        )
        return sha, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "torch",
        "torchvision",
        "timm",
        "numpy",
        "mmcv",
        "mmdet",
        "mmsegmentation",
        "mmengine",
        "torchgeo",
        "open_clip_torch",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def resolve_device(device: str) -> str:
    if device not in ("cpu",) and not re.fullmatch(r"cuda(:\d+)?", device):
        raise VitbenchError(f"--device {device}: expected cpu or cuda[:N]")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise VitbenchError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return device


@dataclass(frozen=True)
class RunRequest:
    """One run, as parsed from the command line (or built by a sweep)."""

    method: str  # "name" or "name:variant"
    task: str
    data: Path | None
    weights: str | None = None
    seed: int = 0
    out: Path = Path("results")
    device: str = "cpu"
    smoke: bool = False
    force: bool = False
    cache_dir: Path | None = None
    work_dir: Path | None = None  # per-run work folder (logs, training checkpoints); default under out/work
    protocol_overrides: tuple[tuple[str, Any], ...] = ()
    progress: bool = True
    command: str | None = None
    launcher: str | None = None  # None: detected from torchrun / srun


def preflight_track(spec: TaskSpec, data: Path, smoke: bool) -> str | None:
    """Which track the result will be, and why, said before anything is computed (one line for stderr).

    A paper-track run (no ``--smoke``) on data whose identity differs from the task's declared data is refused
    here: its record would be refused by ``vitbench validate`` and never ranked, so computing it is wasted. Only
    what a folder listing shows is compared (imagefolder split sizes and class counts); the full identity (class
    list sha256, annotation sha256s) is checked on the record. Raises :class:`VitbenchError` naming the field.
    None under ``--smoke``: the user chose the smoke track, and its error messages stay one line."""
    if smoke:
        return None
    want = spec.data
    if want is None:
        return f"vitbench: track: paper (task {spec.id} declares no dataset identity to check)"
    if spec.dataset_kind == "imagefolder":
        for split, n in want.splits.items():
            split_dir = data / split
            classes = sorted(d for d in split_dir.iterdir() if d.is_dir()) if split_dir.is_dir() else []
            if want.n_classes is not None and len(classes) != want.n_classes:
                raise VitbenchError(
                    f"{split_dir}: {len(classes)} classes, but the paper track of {spec.id} is defined on "
                    f"{want.name} with {want.n_classes}: not the task's data; pass --smoke to run it as a smoke test"
                )
            from benchmarks.data.imagefolder import IMG_EXTENSIONS

            count = sum(
                1
                for c in classes
                for e in os.scandir(c)
                if e.name.endswith(IMG_EXTENSIONS) or e.name.lower().endswith(IMG_EXTENSIONS)
            )
            if count != n:
                raise VitbenchError(
                    f"{split_dir}: {count} images, but the paper track of {spec.id} is defined on {want.name} with "
                    f"{n} in {split}: not the task's data; pass --smoke to run it as a smoke test"
                )
        return f"vitbench: track: paper: {data} has the split sizes and classes of {want.name}"
    return (
        f"vitbench: track: paper: the record's dataset identity is checked against {want.name} "
        f"({', '.join(f'{k} {v}' for k, v in want.splits.items())}) by vitbench validate"
    )


def launcher_from_env() -> str:
    """ "pytorch" under torchrun, "slurm" under srun with several tasks, else "none"."""
    if "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return "pytorch"
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        return "slurm"
    return "none"


def make_record(
    encoder: Encoder,
    spec: TaskSpec,
    protocol: Protocol,
    output: RunOutput,
    seed: int,
    smoke: bool,
    started: datetime,
    wall_s: float,
    device: str,
    command: str,
    world_size: int = 1,
) -> Record:
    ident = encoder.identity
    metas: dict[str, MetricMeta] = {}
    for name in output.metrics:
        meta = spec.metric_meta(name)
        if meta is None:
            raise VitbenchError(f"harness of {spec.id} produced metric '{name}' the catalogue does not declare")
        metas[name] = meta
    sha, dirty = git_state()
    lr = LoadReport(**ident.load_report.to_dict()) if ident.load_report else None
    return Record(
        method=ident.method,
        variant=ident.variant,
        arch=ident.arch,
        weights=Weights(
            source=ident.weights_source, sha256=ident.weights_sha256, file_name=ident.weights_file, load_report=lr
        ),
        task=spec.id,
        protocol=protocol.info(),
        dataset=output.dataset,
        metrics={k: float(v) for k, v in output.metrics.items()},
        metric_meta=metas,
        seed=seed,
        track="smoke" if smoke else "paper",
        provenance=Provenance(
            vitbench_version=benchmarks.__version__,
            git_sha=sha,
            git_dirty=dirty,
            versions=package_versions(),
            device=device_name(device),
            started_at=started,
            wall_s=round(wall_s, 3),
            command=command,
            host=platform.node() or None,
            world_size=world_size,
        ),
        probe={"spec": encoder.spec.to_dict(), "data_config": encoder.data_config.to_dict(), **output.probe},
        extra=output.extra,
    )


def run(req: RunRequest) -> tuple[Path, Record | None]:
    """Execute ``req``. Returns (record path, record), or (existing path, None) when skipped as already done.

    Everything that needs no model is checked first (task, method, variant, protocol overrides, device, data
    folder, launcher), so a typo fails in the first second instead of after feature extraction.
    """
    name, variant = parse_method(req.method)
    spec = get_task(req.task)
    protocol = spec.protocol_for(req.smoke, dict(req.protocol_overrides))  # also: a runnable task
    device = resolve_device(req.device)
    synth = f"vitbench data synth {spec.synth_kind}" if spec.synth_kind else "the task's data layout"
    if req.data is None:
        raise VitbenchError(f"--data is required for task {req.task} (make a tiny set: {synth} --out DIR)")
    data = Path(req.data)
    if not data.exists():
        raise VitbenchError(f"{data}: data folder does not exist (make a tiny one with: {synth} --out {data})")
    launcher = req.launcher or launcher_from_env()
    if launcher not in LAUNCHERS:
        raise VitbenchError(f"--launcher {launcher}: expected one of {', '.join(LAUNCHERS)}")
    from methods import get_adapter

    v = get_adapter(name).variant(variant)
    if (line := preflight_track(spec, data, req.smoke)) is not None:
        print(line, file=sys.stderr)
    track = "smoke" if req.smoke else "paper"
    if not req.force and (
        done := existing_record(req.out, req.task, name, v.name, req.seed, track=track, protocol_hash=protocol.hash())
    ):
        return done, None
    harness = load_harness(req.task)
    # Under torchrun / srun every process runs this function: each uses its own GPU, only rank 0 writes the record.
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    encoder = build_encoder(name, v.name, weights=req.weights, seed=req.seed, classifier=spec.classifier)
    ctx = RunContext(
        task=spec,
        encoder=encoder.to(device),
        data_root=data,
        work_dir=req.work_dir or (Path(req.out) / "work" / req.task / name / f"{v.name}__seed{req.seed}"),
        seed=req.seed,
        device=device,
        launcher=launcher,
        cache_dir=req.cache_dir,
        progress=req.progress,
        smoke=req.smoke,
    )
    output = harness.run(ctx, protocol)
    command = req.command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    from benchmarks.distributed import world_size_from_env

    wall = time.perf_counter() - t0
    world = world_size_from_env(launcher)
    record = make_record(encoder, spec, protocol, output, req.seed, req.smoke, started, wall, device, command, world)
    if rank != 0:
        return Path(req.out) / record.relpath(), record
    return write_record(record, req.out, force=req.force), record
