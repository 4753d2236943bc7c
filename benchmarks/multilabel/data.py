"""The multi-label harnesses' data: which reader a catalogue entry's ``dataset_kind`` names, and the record's
dataset identity (split sizes, classes, annotation sha256s, what the readers left out)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from benchmarks.data.coco_multilabel import read_coco_zsl, scan_coco_multilabel
from benchmarks.data.multilabel import Scanned, ZeroShotSplits
from benchmarks.data.nuswide import read_nuswide_zsl, scan_nuswide
from benchmarks.data.voc import scan_voc
from benchmarks.records import DatasetInfo
from methods.errors import DataError


def load_partial(kind: str | None, root: Path, difficult: str = "negative") -> tuple[Scanned, Scanned]:
    """(train, test) of a partial-label task's layout; test's classes are checked to be train's."""
    if kind == "voc":
        train, test = (Scanned(scan_voc(root, s, difficult)) for s in ("trainval", "test"))
    elif kind == "coco-multilabel":
        train, test = scan_coco_multilabel(root, "train2014"), scan_coco_multilabel(root, "val2014")
    elif kind == "nuswide":
        train, test = scan_nuswide(root, "Train"), scan_nuswide(root, "Test")
    else:
        raise ValueError(f"no partial-label reader for dataset kind {kind!r}")
    if test.split.classes != train.split.classes:
        raise DataError(
            f"{root}: the test split's classes {list(test.split.classes)} differ from train's "
            f"{list(train.split.classes)}"
        )
    return train, test


def load_zero_shot(kind: str | None, root: Path) -> ZeroShotSplits:
    if kind == "coco-multilabel":
        return read_coco_zsl(root)
    if kind == "nuswide":
        return read_nuswide_zsl(root)
    raise ValueError(f"no zero-shot reader for dataset kind {kind!r}")


def dataset_info(root: Path, classes: tuple[str, ...], parts: dict[str, Scanned], evaluated: str) -> DatasetInfo:
    """The record's ``dataset``: ``parts`` maps a name to each split read; ``evaluated`` is the one scored."""
    annotations: dict[str, str] = {}
    skipped: dict[str, int] = {}
    for name, part in parts.items():
        annotations.update(part.annotations)
        skipped.update({f"{name}_{k}": v for k, v in part.skipped.items()})
    names = list(parts)
    return DatasetInfo(
        name=Path(root).resolve().name,
        split=f"{names[0]}->{','.join(names[1:])}",
        fingerprint=":".join(p.split.fingerprint() for p in parts.values()),
        n_samples=len(parts[evaluated].split),
        root=str(root),
        skipped=skipped,
        splits={name: len(p.split) for name, p in parts.items()},
        n_classes=len(classes),
        classes_sha256=hashlib.sha256("\n".join(classes).encode("utf-8")).hexdigest(),
        annotations=annotations,
    )
