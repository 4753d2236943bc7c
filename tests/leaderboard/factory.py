"""Synthetic result records and reported files for the leaderboard tests and the build-time benchmark.

Records are built as plain dicts in the on-disk JSON shape and validated through the real schema when written, so
a test can break one field at a time.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from benchmarks.catalog import TaskSpec
from benchmarks.protocol import Protocol, protocol_hash
from benchmarks.records import MetricMeta, Record, record_relpath

TOY_CONFIG = {"k": 20, "temperature": 0.07, "resolution": None}
TOY_SMOKE_CONFIG = {"k": 20, "temperature": 0.07, "resolution": 64}


def toy_protocol(version: int = 1, smoke: bool = False) -> dict[str, Any]:
    config = dict(TOY_SMOKE_CONFIG if smoke else TOY_CONFIG)
    name = "toy-knn"
    return {"name": name, "version": version, "hash": protocol_hash(name, version, config), "config": config}


@dataclasses.dataclass(frozen=True)
class ToyKnn(Protocol):
    """A protocol that exists only in tests; its config is :data:`TOY_CONFIG` (smoke: :data:`TOY_SMOKE_CONFIG`)."""

    NAME: ClassVar[str] = "toy-knn"
    SMOKE: ClassVar[dict[str, Any]] = {"resolution": TOY_SMOKE_CONFIG["resolution"]}

    k: int = 20
    temperature: float = 0.07
    resolution: int | None = None


@functools.cache
def toy_protocol_cls(version: int) -> type[Protocol]:
    """:class:`ToyKnn` at ``version`` (one class per version, as a bumped protocol would be)."""
    return type(f"ToyKnnV{version}", (ToyKnn,), {"VERSION": version})


def toy_task(task: str = "toy-task", version: int = 1, headline: str = "top1") -> TaskSpec:
    """A catalogue entry for a task that exists only in tests, registering :func:`toy_protocol` at ``version``.
    Its title is its id, as the site titles a task the catalogue does not know."""
    metas = {"top1": MetricMeta(), "top5": MetricMeta(), "FID": MetricMeta(higher_is_better=False, hi=None)}
    return TaskSpec(
        id=task,
        title=task,
        group="other",
        headline=headline,
        metrics=metas,
        protocol=toy_protocol_cls(version),
        harness="tests.nowhere:NeverImported",  # the leaderboard reads the catalogue entry, never the harness
    )


def task_lookup(specs: dict[str, TaskSpec]) -> Callable[[str], TaskSpec | None]:
    return specs.get


def make_record(
    task: str = "toy-task",
    method: str = "dino",
    variant: str = "vits16",
    seed: int = 0,
    metrics: dict[str, float] | None = None,
    track: str = "paper",
    protocol: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid record dict (paper track unless told) with realistic provenance and probe card."""
    metrics = metrics if metrics is not None else {"top1": 74.0 + seed * 0.1, "top5": 91.0}
    smoke = track == "smoke"
    return {
        "schema_version": 1,
        "method": method,
        "variant": variant,
        "arch": "vit_small_patch16_224",
        "weights": {
            "source": "random" if smoke else f"https://example.org/{method}/{variant}.pth",
            "sha256": None if smoke else hashlib.sha256(f"{method}{variant}".encode()).hexdigest(),
            "file_name": None if smoke else f"{variant}.pth",
            "load_report": {
                "checkpoint_key": "teacher",
                "stripped_prefixes": ["module.", "backbone."],
                "matched": 150,
                "dropped": ["head.mlp.0.weight"],
                "converted": [],
                "missing_allowed": [],
            },
        },
        "task": task,
        "protocol": protocol or toy_protocol(smoke=smoke),
        "dataset": {"name": "imagenet-1k", "split": "val", "fingerprint": "0123456789abcdef", "n_samples": 50000},
        "metrics": metrics,
        "metric_meta": {
            m: ({"higher_is_better": False, "unit": "", "hi": None} if m == "FID" else {}) for m in metrics
        },
        "seed": seed,
        "track": track,
        "provenance": {
            "vitbench_version": "0.1.0",
            "git_sha": "a" * 40,
            "git_dirty": False,
            "versions": {"python": "3.11.9", "torch": "2.14.1", "timm": "1.0.31"},
            "device": "cuda:0 (H100)",
            "started_at": f"2026-11-2{seed % 10}T10:00:00+00:00",
            "wall_s": 120.5 + seed,
            "command": f"vitbench run --method {method}:{variant} --task {task} --seed {seed}",
        },
        "probe": {
            "spec": {"arch": "vit_small_patch16_224", "family": "vit", "indices": [11], "global_pool": "token"},
            "data_config": {
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
                "input_size": [3, 224, 224],
                "interpolation": "bicubic",
            },
            "pooling": "cls",
            "layers": [11],
        },
        "extra": {},
    }


def write_records(results: Path, records: Iterable[dict[str, Any]], validate: bool = True) -> list[Path]:
    """Write each dict at its canonical path under ``results/runs``; validate through the schema unless told."""
    paths = []
    for rec in records:
        if validate:
            Record.model_validate(rec)
        path = results / record_relpath(rec["task"], rec["method"], rec["variant"], rec["seed"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec, indent=2), encoding="utf-8")
        paths.append(path)
    return paths


def reported_row(task: str, method: str, variant: str, metric: str, value: float, **extra: Any) -> dict[str, Any]:
    row = {
        "method": method,
        "variant": variant,
        "task": task,
        "metric": metric,
        "value": value,
        "label": f"{method} {variant}",
        "backbone": "ViT-S/16",
        "dataset": "ImageNet-1k val",
        "protocol": "weighted k-NN, k=20",
        "source": "paper Table 1",
        "source_url": "https://example.org/paper",
        "verified": "yes (test)",
    }
    row.update(extra)
    return row


def write_paper(
    results: Path, pid: str, rows: list[dict[str, Any]], claims: list[dict[str, Any]] | None = None, **info: Any
) -> Path:
    doc: dict[str, Any] = {
        "paper": {"title": f"The {pid} paper", "short": pid.upper(), "methods": [pid], **info},
        "rows": rows,
    }
    if claims:
        doc["claims"] = claims
    path = results / "reported" / f"{pid}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


BULK_TASKS = [f"task{i}" for i in range(10)]


def bulk_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` valid records spread like a real sweep: 10 tasks x 20 methods x 5 variants x seeds, with ~5% smoke runs
    and ~5% under an older protocol version (so every code path of the build is exercised). The current protocol is
    ``toy_protocol(version=2)``: pair with ``toy_task(task, version=2)``."""
    rng = random.Random(seed)
    base = make_record()
    out = []
    i = 0
    while len(out) < n:
        task, method, variant, s = f"task{i % 10}", f"method{(i // 10) % 20}", f"v{(i // 200) % 5}", i // 1000
        rec = copy.deepcopy(base)
        rec.update(task=task, method=method, variant=variant, seed=s, protocol=toy_protocol(version=2))
        rec["metrics"] = {
            "top1": round(rng.uniform(60, 85), 3),
            "top5": round(rng.uniform(85, 97), 3),
            "top1_k10": round(rng.uniform(60, 85), 3),
        }
        rec["metric_meta"] = {m: {} for m in rec["metrics"]}
        r = rng.random()
        if r < 0.05:
            rec["track"] = "smoke"
            rec["protocol"] = toy_protocol(version=2, smoke=True)
            rec["weights"] = {**rec["weights"], "source": "random", "sha256": None, "file_name": None}
        elif r < 0.10:
            rec["protocol"] = toy_protocol(version=1)
        out.append(rec)
        i += 1
    return out


SMALL_TASKS = ("toy-task", "toy-gen")


def small_tasks() -> dict[str, TaskSpec]:
    """toy-task has a catalogue entry with a (toy) protocol at version 2; toy-gen has none (reported + newest-version
    fallback)."""
    return {"toy-task": toy_task("toy-task", version=2)}


def small_results(root: Path) -> Path:
    """A small, fixed results tree that exercises every section of the site:

    - toy-task: dino:vits16 3 seeds within tolerance of its reported 74.5; selfpatch:vits16 2 seeds 2 points below
      its reported 76.0 (outside); mae:vitb16 reported only (not yet reproduced); a `setting` row; an older-protocol
      group (v1) and a smoke group; one misplaced record (rejected).
    - toy-gen: FID (lower is better), reported only plus one reproduced run without a registered harness.
    """
    write_paper(
        root,
        "dino",
        [
            reported_row("toy-task", "dino", "vits16", "top1", 74.5, csv_rows=[22]),
            reported_row("toy-task", "dino", "vits16", "top1", 69.3, setting="example-100ep"),
            reported_row("toy-gen", "dino", "vits16", "FID", 7.2, protocol="zero-shot FID, 30k samples"),
        ],
        venue="ICCV 2021",
        weights_released=True,
        status="Baseline.",
    )
    write_paper(
        root,
        "selfpatch",
        [
            reported_row("toy-task", "selfpatch", "vits16", "top1", 76.0, caveat="pretrained 200 epochs"),
            reported_row("toy-task", "mae", "vitb16", "top1", 68.0, label="MAE ViT-B/16"),
        ],
        venue="CVPR 2022",
        weights_released=True,
        status="Seed system.",
        methods=["selfpatch", "mae"],
    )
    v2 = toy_protocol(version=2)
    recs = [
        make_record("toy-task", "dino", "vits16", s, {"top1": 74.3 + 0.2 * s, "top5": 91.0 + 0.1 * s}, protocol=v2)
        for s in range(3)
    ]
    recs += [make_record("toy-task", "selfpatch", "vits16", s, {"top1": 73.9 + 0.2 * s}, protocol=v2) for s in range(2)]
    recs.append(make_record("toy-task", "ibot", "vits16", 0, {"top1": 70.0}, protocol=toy_protocol(version=1)))
    recs.append(
        make_record(
            "toy-task", "ibot", "vits16", 1, {"top1": 12.5}, track="smoke", protocol=toy_protocol(version=2, smoke=True)
        )
    )
    gen = {"name": "toy-fid", "version": 1, "hash": protocol_hash("toy-fid", 1, {"n": 30000}), "config": {"n": 30000}}
    recs.append(make_record("toy-gen", "dino", "vits16", 0, {"FID": 9.0}, protocol=gen))
    write_records(root, recs)
    stray = make_record("toy-task", "deit", "deits16", 0, {"top1": 71.0}, protocol=v2)
    path = root / "runs" / "toy-task" / "deit" / "wrong-name.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stray), encoding="utf-8")
    return root
