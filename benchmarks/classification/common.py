"""What the k-NN and linear harnesses share: split scanning, the eval transform, cached extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.data.imagefolder import ImageDataset, Split, eval_transform, scan_split
from benchmarks.features import ExtractFn, FeatureKey, default_cache_dir, extract
from benchmarks.records import DatasetInfo
from methods import Encoder


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """A tensor copy of a (possibly read-only, memory-mapped) cached array."""
    return torch.from_numpy(np.array(arr))


def load_splits(root: Path) -> tuple[Split, Split]:
    train = scan_split(root, "train")
    val = scan_split(root, "val", classes=train.classes)
    return train, val


def transform_for(encoder: Encoder, resolution: int | None):
    """The encoder's eval transform, optionally at another resolution (smoke runs use small images)."""
    dc = encoder.data_config
    size = resolution or dc.input_size[-1]
    desc = f"resize{int(size / dc.crop_pct)}-{dc.interpolation}-center{size}-mean{dc.mean}-std{dc.std}"
    return eval_transform(dc.mean, dc.std, size, dc.crop_pct, dc.interpolation), desc, size


def extract_split(
    encoder: Encoder,
    split: Split,
    fn: ExtractFn,
    what: str,
    resolution: int | None,
    device: str,
    cache_dir: Path | None,
    progress: bool,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    transform, tdesc, _ = transform_for(encoder, resolution)
    key = FeatureKey(encoder.identity.weights_id, split.fingerprint(), split.name, tdesc, what)
    return extract(
        fn,
        ImageDataset(split, transform),
        key,
        cache_dir=cache_dir or default_cache_dir(),
        device=device,
        batch_size=batch_size,
        desc=f"features {split.name}",
        progress=progress,
    )


def dataset_info(root: Path, train: Split, val: Split) -> DatasetInfo:
    return DatasetInfo(
        name=Path(root).resolve().name,
        split="train->val",
        fingerprint=f"{train.fingerprint()}:{val.fingerprint()}",
        n_samples=len(val.samples),
        root=str(root),
    )
