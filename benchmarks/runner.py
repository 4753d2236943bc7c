"""Run one (method, variant, task, seed) and write its record: the glue between the CLI and the harnesses."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import torch

import benchmarks
from benchmarks.harness import Harness, RunOutput
from benchmarks.protocol import Protocol
from benchmarks.records import (
    LoadReport,
    MetricMeta,
    Provenance,
    Record,
    Weights,
    record_exists,
    write_record,
)
from benchmarks.tasks import get_harness
from methods import Encoder, build_encoder, parse_method
from methods.errors import VitbenchError

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
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def resolve_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VitbenchError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise VitbenchError(f"--device {device}: expected cpu or cuda[:N]")
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


def make_record(
    encoder: Encoder,
    harness: Harness,
    protocol: Protocol,
    output: RunOutput,
    seed: int,
    smoke: bool,
    started: datetime,
    wall_s: float,
    device: str,
    command: str,
) -> Record:
    ident = encoder.identity
    metas: dict[str, MetricMeta] = {}
    for name in output.metrics:
        meta = harness.metric_meta(name)
        if meta is None:
            raise VitbenchError(f"harness {harness.task} produced metric '{name}' it does not declare")
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
        task=harness.task,
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
        ),
        probe={"spec": encoder.spec.to_dict(), "data_config": encoder.data_config.to_dict(), **output.probe},
        extra=output.extra,
    )


def run(req: RunRequest) -> tuple[Path, Record | None]:
    """Execute ``req``. Returns (record path, record), or (existing path, None) when skipped as already done."""
    name, variant = parse_method(req.method)
    harness = get_harness(req.task)
    device = resolve_device(req.device)
    if req.data is None:
        raise VitbenchError(
            f"--data is required for task {req.task} (make a tiny set: vitbench data synth "
            f"{harness.synth_kind} --out DIR)"
        )
    data = Path(req.data)
    if not data.exists():
        raise VitbenchError(
            f"{data}: data folder does not exist (make a tiny one with: vitbench data synth "
            f"{harness.synth_kind} --out {data})"
        )
    from methods import get_adapter

    adapter = get_adapter(name)
    v = adapter.variant(variant)
    if not req.force and (done := record_exists(req.out, req.task, name, v.name, req.seed)):
        return done, None
    protocol = harness.protocol(req.smoke, **dict(req.protocol_overrides))
    # Under torchrun / srun every process runs this function: each uses its own GPU, only rank 0 writes the record.
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    encoder = build_encoder(name, v.name, weights=req.weights, seed=req.seed)
    work = req.work_dir or (Path(req.out) / "work" / req.task / name / f"{v.name}__seed{req.seed}")
    output = harness.run(
        encoder.to(device), data, work, req.seed, device, protocol, cache_dir=req.cache_dir, progress=req.progress
    )
    command = req.command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    record = make_record(
        encoder, harness, protocol, output, req.seed, req.smoke, started, time.perf_counter() - t0, device, command
    )
    if rank != 0:
        return Path(req.out) / record.relpath(), record
    return write_record(record, req.out, force=req.force), record
