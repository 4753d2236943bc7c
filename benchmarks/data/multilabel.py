"""What the multi-label layout readers (VOC, COCO 2014, NUS-WIDE) hand to the multi-label harnesses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.probe.data import LabelledSplit


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Scanned:
    """One scanned split, with the sha256 of the annotation files it was read from (``{file name: sha256}``, for the
    record's dataset identity) and what the reader left out by rule (``{"images_without_labels": 702}``)."""

    split: LabelledSplit
    annotations: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ZeroShotSplits:
    """A zero-shot multi-label set. ``classes`` is the whole label space (seen and unseen, in label order) and every
    split's targets span it: train knows the seen columns (unseen ones are -1), ``zsl`` the unseen ones (seen -1),
    ``gzsl`` all of them."""

    classes: tuple[str, ...]
    seen: tuple[int, ...]  # column indices into classes
    unseen: tuple[int, ...]
    train: Scanned
    zsl: Scanned
    gzsl: Scanned
