"""Run one (method, variant, task, seed) and write its record: the glue between the CLI and the harnesses."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import benchmarks
from benchmarks.catalog import TaskSpec, preset_task
from benchmarks.harness import RunContext, RunOutput, load_harness
from benchmarks.preflight import (  # noqa: F401  (RunRequest, preflight_track, launcher_from_env: re-exported)
    RunRequest,
    check_device,
    check_request,
    launcher_from_env,
    preflight_track,
)
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
from methods import build_encoder
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
        "pycocotools",  # COCO tasks: the COCOeval backend (extra.cocoeval_backend) is one of these two
        "faster-coco-eval",
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
    """``device`` checked for form (torch-free, :func:`benchmarks.preflight.check_device`) and for CUDA's presence."""
    check_device(device)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise VitbenchError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return device


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

    Everything that needs no model is checked first, before torch is imported (:func:`benchmarks.preflight.
    check_request`: method, variant, task, protocol overrides, weights, device, folders, launcher, track), so a typo
    fails in the first second instead of after feature extraction.
    """
    checked = check_request(req)  # torch-free: names, --set, weights, device form, folders, track
    name, spec, protocol, data, launcher = (
        checked.method,
        checked.spec,
        checked.protocol,
        checked.data,
        checked.launcher,
    )
    if req.protocol_overrides and (other := preset_task(spec, protocol, req.smoke)) is not None:
        print(
            f"vitbench: note: with these --set values this is task {other}'s registered protocol; run --task {other} "
            f"to have the record ranked (as task {spec.id} it is an override, shown apart)",
            file=sys.stderr,
        )
    device = resolve_device(req.device)
    from methods import get_adapter

    v = get_adapter(name).variant(checked.variant)
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
    encoder = build_encoder(
        name,
        v.name,
        weights=req.weights,
        seed=req.seed,
        classifier=spec.classifier,
        resample_pos_embed=req.resample_pos_embed,
    )
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
    if (amp := os.environ.get("VITBENCH_AMP", "auto").strip().lower()) not in ("", "auto"):
        command = f"VITBENCH_AMP={amp} {command}"  # the precision features were extracted at (benchmarks.precision)
    from benchmarks.distributed import world_size_from_env

    wall = time.perf_counter() - t0
    world = world_size_from_env(launcher)
    record = make_record(encoder, spec, protocol, output, req.seed, req.smoke, started, wall, device, command, world)
    if rank != 0:
        return Path(req.out) / record.relpath(), record
    return write_record(record, req.out, force=req.force), record
