"""What the ImageNet-style probes share: ImageFolder train/val splits."""

from __future__ import annotations

from pathlib import Path

from benchmarks.data.imagefolder import Split, scan_split


def load_splits(root: Path) -> tuple[Split, Split]:
    """``root/train`` and ``root/val``, val mapped onto train's class indices."""
    train = scan_split(root, "train")
    val = scan_split(root, "val", classes=train.classes)
    return train, val
