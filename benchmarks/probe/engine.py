"""Extraction through the feature cache, and grid fitting with hold-out selection, for any probe task.

A probe harness is: scan its splits into :class:`~benchmarks.probe.data.LabelledSplit` objects, call
:func:`global_features` or :func:`block_features` per split (extracted once, cached on disk as fp16 keyed by the
weights, the split's fingerprint, the transform and what is extracted), build feature recipes, then
:func:`fit_grid` with a :class:`~benchmarks.probe.heads.Target`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.checkpoint import Checkpoint
from benchmarks.distributed import DistInfo
from benchmarks.features import ExtractFn, FeatureKey, default_cache_dir, extract
from benchmarks.probe.data import ChannelMap, EvalTransform, LabelledSplit, ProbeDataset, TrainTransform
from benchmarks.probe.heads import Target, evaluate_heads, holdout_split, train_head_grid
from benchmarks.probe.rows import RecipeRows, Rows, as_rows
from benchmarks.records import DatasetInfo
from methods import Encoder


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """A tensor copy of a (possibly read-only, memory-mapped) cached array."""
    return torch.from_numpy(np.array(arr))


def transform_for(encoder: Encoder, resolution: int | None = None) -> EvalTransform:
    """The encoder's eval transform (its data config), optionally at another size (smoke runs use small images)."""
    dc = encoder.data_config
    return EvalTransform(
        size=resolution or dc.input_size[-1],
        crop_pct=dc.crop_pct,
        interpolation=dc.interpolation,
        mean=tuple(dc.mean),
        std=tuple(dc.std),
    )


def probe_dataset(
    encoder: Encoder,
    split: LabelledSplit,
    transform: EvalTransform | TrainTransform,
    missing_bands: str = "error",
    channel_map: ChannelMap | None = None,
) -> ProbeDataset:
    """The dataset that feeds ``encoder`` from ``split``: its band order and band scaling (``data_config``), or,
    for an RGB encoder on multi-band data, the task's ``channel_map``."""
    dc = encoder.data_config
    return ProbeDataset(
        split,
        transform,
        dc.band_order,
        missing=missing_bands,
        scaling=dc.band_scaling if channel_map is None else None,
        channel_map=channel_map,
    )


def extract_split(
    encoder: Encoder,
    split: LabelledSplit,
    fn: ExtractFn,
    what: str,
    *,
    resolution: int | None,
    device: str,
    cache_dir: Path | None,
    progress: bool,
    batch_size: int = 64,
    missing_bands: str = "error",
    transform: EvalTransform | None = None,
    channel_map: ChannelMap | None = None,
    dist: DistInfo | None = None,
) -> dict[str, np.ndarray]:
    """Run ``fn`` over ``split`` through the cache; arrays ``[N, ...]`` plus ``labels`` (the split's targets).
    With ``dist`` of several ranks each rank extracts 1/world of the images and every rank gets all ``N`` rows.

    ``transform`` replaces the encoder's eval transform where the task fixes its own (BigEarthNet: Resize 128 +
    CenterCrop 112 for every encoder); ``channel_map`` adapts multi-band data to an RGB encoder."""
    transform = transform or transform_for(encoder, resolution)
    dataset = probe_dataset(encoder, split, transform, missing_bands, channel_map)
    desc = transform.desc + dataset.desc
    key = FeatureKey(encoder.identity.weights_id, split.fingerprint(), split.name, desc, what)
    return extract(
        fn,
        dataset,
        key,
        cache_dir=cache_dir or default_cache_dir(),
        device=device,
        batch_size=batch_size,
        desc=f"features {split.name}",
        progress=progress,
        dist=dist,
    )


def global_features(encoder: Encoder, split: LabelledSplit, **kw: Any) -> dict[str, np.ndarray]:
    """``global`` ``[N, D]`` = ``encoder.forward_global``."""

    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"global": encoder.forward_global(x)}

    return extract_split(encoder, split, fn, "global", **kw)


def block_features(encoder: Encoder, split: LabelledSplit, blocks: list[int], **kw: Any) -> dict[str, np.ndarray]:
    """Per block ``b``: ``tok{b}`` (normalised CLS, or patch mean without one) and ``avg{b}`` (mean of the
    normalised patch tokens), each ``[N, d_b]``, from ``encoder.forward_probe``. Stages of hierarchical encoders
    differ in width: one call per width."""
    groups: dict[int, list[int]] = {}
    for b, width in zip(blocks, encoder.probe_widths(blocks), strict=True):
        groups.setdefault(width, []).append(b)

    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for group in groups.values():
            tok, avg = encoder.forward_probe(x, group)
            for i, b in enumerate(group):
                out[f"tok{b}"], out[f"avg{b}"] = tok[:, i], avg[:, i]
        return out

    return extract_split(encoder, split, fn, "probe:blocks=" + ",".join(map(str, blocks)), **kw)


def stack_blocks(f: dict[str, np.ndarray], kind: str, blocks: list[int]) -> torch.Tensor:
    """``[N, K, d]`` from the per-block arrays ``{kind}{b}`` of equal width."""
    return torch.stack([as_tensor(f[f"{kind}{b}"]) for b in blocks], dim=1)


def recipe_rows(
    f: dict[str, np.ndarray],
    keys: list[str],
    build: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> RecipeRows:
    """The recipes ``build`` makes from the cached arrays ``keys`` of ``f``, built a mini-batch at a time from the
    memory-mapped cache (:class:`~benchmarks.probe.rows.RecipeRows`) instead of once for all rows in memory."""
    return RecipeRows(f, keys, build)


def targets_of(f: dict[str, np.ndarray], target: Target) -> torch.Tensor:
    """The cached labels as the target needs them: ``[N]`` int64 or ``[N, C]`` int64 in {1, 0, -1}."""
    return as_tensor(f["labels"]).long()


@dataclass
class GridResult:
    """The selected head and every head's hold-out and evaluation metrics."""

    best: str  # "<recipe>@lr=<lr>"
    heads: dict[str, torch.nn.Linear]
    grid: dict[str, dict[str, float]]  # head -> {"holdout_<metric>": ..., "val_<metric>": ...}
    metrics: dict[str, float]  # the best head's metrics on the evaluation split
    holdout: float  # the best head's hold-out selection metric
    key: str  # the selection metric
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)  # every head's metrics on evaluation

    def best_of(self, recipe: str) -> str:
        """The head of ``recipe`` with the best hold-out metric (the first one on ties)."""
        names = [n for n in self.heads if n.split("@")[0] == recipe]
        return max(names, key=lambda n: self.grid[n][f"holdout_{self.key}"])


def fit_grid(
    train: Rows | dict[str, torch.Tensor],
    y: torch.Tensor,
    evaluation: Rows | dict[str, torch.Tensor],
    vy: torch.Tensor,
    target: Target,
    *,
    lrs: tuple[float, ...],
    epochs: int,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    holdout_fraction: float,
    seed: int,
    device: str,
    progress: bool,
    dist: DistInfo | None = None,
    checkpoint: Checkpoint | None = None,
) -> GridResult:
    """Train the grid on the non-held-out part of train, select the head with the best hold-out metric
    (``target.selection_metric``; ties go to the shorter name, i.e. the simpler recipe), evaluate on
    ``evaluation``. :meth:`GridResult.best_of` selects within one recipe (per-layer probes). ``train`` and
    ``evaluation`` are :class:`~benchmarks.probe.rows.Rows` (:func:`recipe_rows`: read per batch from the cache) or
    recipes in memory; hold-out and evaluation are scored a chunk at a time.

    ``holdout_fraction`` 0 trains on all of train with nothing held out; there is then nothing to select with, so
    the grid must be a single head (one recipe, one lr) and ``GridResult.holdout`` is NaN.

    ``dist`` / ``checkpoint``: DDP over ranks and per-epoch resume (:func:`~benchmarks.probe.heads.train_head_grid`);
    every rank then selects and evaluates the same heads."""
    train, evaluation = as_rows(train), as_rows(evaluation)
    n_recipes = len(train.dims)
    if holdout_fraction == 0:
        if n_recipes * len(lrs) != 1:
            raise ValueError(
                f"holdout_fraction 0 leaves nothing to select {n_recipes * len(lrs)} heads with; "
                "give one recipe and one lr, or hold out part of train"
            )
        fit_idx, hold_idx = np.arange(len(y)), np.zeros(0, dtype=np.int64)
    else:
        fit_idx, hold_idx = holdout_split(y.numpy(), holdout_fraction, seed)
    torch.manual_seed(seed)
    heads = train_head_grid(
        train.subset(fit_idx),
        y[fit_idx],
        target,
        lrs,
        epochs,
        batch_size,
        momentum,
        weight_decay,
        seed,
        device,
        progress,
        dist=dist,
        checkpoint=checkpoint,
    )
    key = target.selection_metric
    held = evaluate_heads(heads, train.subset(hold_idx), y[hold_idx], target) if len(hold_idx) else {}
    val = evaluate_heads(heads, evaluation, vy, target)
    grid: dict[str, dict[str, float]] = {
        name: {f"holdout_{key}": held[name][key] if held else float("nan"), f"val_{key}": val[name][key]}
        for name in heads
    }
    best = max(grid, key=lambda n: (grid[n][f"holdout_{key}"], -len(n)))
    return GridResult(best, heads, grid, val[best], grid[best][f"holdout_{key}"], key, val)


def dataset_info(root: Path, train: LabelledSplit, val: LabelledSplit) -> DatasetInfo:
    import hashlib

    return DatasetInfo(
        name=Path(root).resolve().name,
        split=f"{train.name}->{val.name}",
        fingerprint=f"{train.fingerprint()}:{val.fingerprint()}",
        n_samples=len(val),
        root=str(root),
        splits={train.name: len(train), val.name: len(val)},  # compared with the task's declared data (paper track)
        n_classes=len(train.classes),
        classes_sha256=hashlib.sha256("\n".join(train.classes).encode("utf-8")).hexdigest(),
    )
