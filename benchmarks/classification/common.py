"""What the ImageNet-style probes share: ImageFolder train/val splits, checked to be large enough to mean
something (a one-class set would score top-1 = 100)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.data.imagefolder import Split, scan_split
from methods.errors import DataError


def load_splits(root: Path) -> tuple[Split, Split]:
    """``root/train`` and ``root/val``, val mapped onto train's class indices. Refuses fewer than 2 classes and an
    empty split, naming the folder."""
    train = scan_split(root, "train")
    if len(train.classes) < 2:
        raise DataError(
            f"{train.root}: {len(train.classes)} class folder ({', '.join(train.classes)}); classification needs "
            "at least 2 classes"
        )
    val = scan_split(root, "val", classes=train.classes)
    for split in (train, val):
        if len(split) == 0:
            raise DataError(f"{split.root}: no images")
    return train, val


def require_train_size(train: Split, minimum: int, why: str) -> None:
    """Refuse a train split of fewer than ``minimum`` images (``why`` names the protocol's need)."""
    if len(train) < minimum:
        raise DataError(f"{train.root}: {len(train)} train images, fewer than the {minimum} {why}")


def require_per_class(train: Split, minimum: int, why: str) -> None:
    """Refuse a train split with a class of fewer than ``minimum`` images, naming the class folder."""
    counts = np.bincount(np.asarray(train.targets), minlength=len(train.classes))
    for cls, count in zip(train.classes, counts):
        if count < minimum:
            raise DataError(f"{train.root / cls}: {count} image(s), fewer than the {minimum} {why}")
