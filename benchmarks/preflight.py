"""Everything ``vitbench run`` can refuse without a model, checked before torch is imported.

A typo'd method, variant or task, a ``--set`` the protocol cannot hold, random weights on the paper track, a
checkpoint path that does not exist, an ``--out`` that is a file, a malformed ``--device`` or a missing data
folder each end in one line on stderr and exit 1 in well under a second, instead of after torch's import (seconds)
or the feature extraction (minutes). This module imports neither torch nor timm (``tests/benchmarks/
test_preflight.py`` runs the CLI in a fresh interpreter and checks ``sys.modules``).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.catalog import TaskSpec, get_task
from benchmarks.harness import LAUNCHERS
from benchmarks.precision import extraction_precision
from benchmarks.protocol import Protocol
from methods import parse_method
from methods.errors import CheckpointError, DataError, VitbenchError
from methods.listing import check_variant, describe

DEVICE_RE = re.compile(r"cpu|cuda(:\d+)?")
# Image files of the ImageFolder layouts (benchmarks.data.imagefolder reads the same list; defined here without torch).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".JPEG")


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
    resample_pos_embed: bool = False  # load a position table of any grid, resampled (recorded in the load report)


@dataclass(frozen=True)
class Checked:
    """What the preflight resolved: the names, the task, the protocol that will run, the data folder, the launcher."""

    method: str
    variant: str | None  # None only for a method the snapshot does not describe yet (its adapter checks it)
    spec: TaskSpec
    protocol: Protocol
    data: Path
    launcher: str


def launcher_from_env() -> str:
    """ "pytorch" under torchrun, "slurm" under srun with several tasks, else "none"."""
    if "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return "pytorch"
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        return "slurm"
    return "none"


def check_device(device: str) -> str:
    """The device string's form (``cpu``, ``cuda``, ``cuda:N``); whether CUDA is there is asked once torch loads."""
    if not DEVICE_RE.fullmatch(device):
        raise VitbenchError(f"--device {device}: expected cpu or cuda[:N]")
    return device


def check_weights(weights: str | None, smoke: bool) -> None:
    """Random weights are a smoke test by definition (``vitbench validate`` refuses them on the paper track); a local
    checkpoint path must be a file. URLs and hub ids are resolved when the encoder is built."""
    if weights is None:
        return
    if weights == "random":
        if not smoke:
            raise VitbenchError("--weights random: random weights give a smoke result only; add --smoke")
        return
    if weights.startswith("hf-hub:") or re.match(r"https?://", weights):
        return
    path = Path(os.path.expanduser(weights))
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file (--weights takes a PATH, an https:// URL or hf-hub:…)")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (.pth/.pt/.tar/.safetensors)")


def check_writable_dir(path: Path, flag: str) -> None:
    """``path`` is a folder, or can be created as one: no component is a file and the nearest existing one is
    writable. Refusing here beats a ``NotADirectoryError`` after the compute."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == path else f"cannot be created: {p} is a file"
                raise VitbenchError(f"{flag} {path}: {what}; pass a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                raise VitbenchError(f"{flag} {path}: {p} is not writable")
            return


def check_request(req: RunRequest) -> Checked:
    """Check ``req`` without a model; raises :class:`VitbenchError` with one line naming what is wrong."""
    name, variant = parse_method(req.method)
    variant = check_variant(name, variant)  # unknown method or variant: did-you-mean
    spec = get_task(req.task)
    protocol = spec.protocol_for(req.smoke, dict(req.protocol_overrides))  # a runnable task, --set types
    if spec.classifier and variant is not None:
        variants = describe(name)["variants"]
        if next(v for v in variants if v["name"] == variant).get("classifier") is None:
            with_head = [v["name"] for v in variants if v.get("classifier") is not None]
            hint = f"; variants with one: {', '.join(with_head)}" if with_head else ""
            raise CheckpointError(
                f"{name}:{variant} has no released classification head (a backbone-only release){hint}; "
                "evaluate backbones with --task linear or knn"
            )
    check_weights(req.weights, req.smoke)
    check_device(req.device)
    try:
        extraction_precision(req.device)
    except ValueError as e:
        raise VitbenchError(str(e)) from None
    launcher = req.launcher or launcher_from_env()
    if launcher not in LAUNCHERS:
        raise VitbenchError(f"--launcher {launcher}: expected one of {', '.join(LAUNCHERS)}")
    synth = f"vitbench data synth {spec.synth_kind}" if spec.synth_kind else "the task's data layout"
    if req.data is None:
        raise VitbenchError(f"--data is required for task {req.task} (make a tiny set: {synth} --out DIR)")
    data = Path(req.data)
    if not data.exists():
        raise DataError(f"{data}: data folder does not exist (make a tiny one with: {synth} --out {data})")
    check_layout(spec, data, protocol)
    check_writable_dir(Path(req.out), "--out")
    if req.cache_dir is not None:
        check_writable_dir(Path(req.cache_dir), "--cache")
    if req.work_dir is not None:
        check_writable_dir(Path(req.work_dir), "work folder")
    if (line := preflight_track(spec, data, req.smoke)) is not None:
        print(line, file=sys.stderr)
    return Checked(method=name, variant=variant, spec=spec, protocol=protocol, data=data, launcher=launcher)


def _first_root(data: Path, candidates: tuple[str, ...], marker: str) -> Path:
    """The first of ``data/<candidate>`` (``""``: ``data`` itself) that holds ``marker``; ``data`` when none does."""
    for c in candidates:
        if (data / c / marker).exists():
            return data / c
    return data


def _require(root: Path, entries: list[str], layout: str) -> None:
    for rel in entries:
        want_dir = rel.endswith("/")
        path = root / rel.rstrip("/")
        if not (path.is_dir() if want_dir else path.is_file()):
            kind = "folder" if want_dir else "file"
            raise DataError(f"{path}: missing {kind} (expected {layout})")


def _layout_entries(kind: str, data: Path, protocol: Protocol | None) -> tuple[Path, list[str], str] | None:
    """Root, required entries (a trailing ``/``: a folder) and a one-line layout description of the fixed-structure
    layouts, as their scanners (``benchmarks/data/<layout>.py``) expect them; None for layouts checked by their
    scanner only (their structure depends on the data: BigEarthNet v1/v2, the ImageNet variants, NUS-WIDE...)."""
    if kind == "coco":
        splits = [getattr(protocol, f, d) for f, d in (("train_split", "train2017"), ("val_split", "val2017"))]
        entries = [e for sp in splits for e in (f"annotations/instances_{sp}.json", f"{sp}/")]
        return data, entries, "COCO's annotations/instances_<split>.json next to <split>/<images>"
    if kind == "ade20k":
        root = _first_root(data, ("ADEChallengeData2016", ""), "images")
        entries = [f"{d}/{sp}/" for d in ("images", "annotations") for sp in ("training", "validation")]
        return root, entries, "ADEChallengeData2016/{images,annotations}/{training,validation}/"
    if kind == "davis":
        layout = "DAVIS/ImageSets/2017/val.txt, JPEGImages/480p/<seq>/, Annotations/480p/<seq>/"
        return data, ["ImageSets/2017/val.txt", "JPEGImages/480p/", "Annotations/480p/"], layout
    if kind == "copydays":
        return data, ["original/", "strong/"], "Copydays' original/ and strong/ (+ distractors/, whitening/)"
    if kind == "voc":
        root = _first_root(data, ("VOCdevkit/VOC2007", ""), "Annotations")
        layout = "VOCdevkit/VOC2007/{Annotations,ImageSets/Main,JPEGImages}/"
        return root, ["Annotations/", "ImageSets/Main/", "JPEGImages/"], layout
    return None


def check_layout(spec: TaskSpec, data: Path, protocol: Protocol | None = None) -> None:
    """The folder structure a layout's scanner will need, from directory listings only (no image or annotation is
    opened), before torch is imported: the ImageFolder layout (``DATA/{train,val}/<class>/``, at least 2 classes in
    train) and the fixed-structure layouts (COCO, ADE20K, DAVIS, Copydays, VOC; see :func:`_layout_entries`).
    Everything else, and every file's content, is checked by the scanners, which also name the file at fault."""
    if spec.dataset_kind != "imagefolder":
        fixed = _layout_entries(spec.dataset_kind or "", data, protocol)
        if fixed is not None:
            if not data.is_dir():
                raise DataError(f"{data}: not a folder (expected {fixed[2]})")
            _require(*fixed)
        return
    if not data.is_dir():
        raise DataError(f"{data}: not a folder (expected {data}/{{train,val}}/<class>/<image>)")
    for split in ("train", "val"):
        split_dir = data / split
        if not split_dir.is_dir():
            raise DataError(f"{split_dir}: missing split folder (expected {data}/{{train,val}}/<class>/<image>)")
        classes = [e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")]
        if not classes:
            raise DataError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<image>)")
        if split == "train" and len(classes) < 2:
            raise DataError(f"{split_dir}: 1 class folder ({classes[0]}); classification needs at least 2 classes")


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
                raise DataError(
                    f"{split_dir}: {len(classes)} classes, but the paper track of {spec.id} is defined on "
                    f"{want.name} with {want.n_classes}: not the task's data; pass --smoke to run it as a smoke test"
                )
            count = sum(
                1
                for c in classes
                for e in os.scandir(c)
                if e.name.endswith(IMG_EXTENSIONS) or e.name.lower().endswith(IMG_EXTENSIONS)
            )
            if count != n:
                raise DataError(
                    f"{split_dir}: {count} images, but the paper track of {spec.id} is defined on {want.name} with "
                    f"{n} in {split}: not the task's data; pass --smoke to run it as a smoke test"
                )
        return f"vitbench: track: paper: {data} has the split sizes and classes of {want.name}"
    return (
        f"vitbench: track: paper: the record's dataset identity is checked against {want.name} "
        f"({', '.join(f'{k} {v}' for k, v in want.splits.items())}) by vitbench validate"
    )
