"""NUS-WIDE in its released layout (81 concepts; the 925/81 zero-shot split), and ``vitbench data synth nuswide``.

Layout (the NUS-WIDE release's file names; the images are the Flickr download)::

    ROOT/Concepts81.txt                                       the 81 human-annotated concepts, one a line
    ROOT/ImageList/{Train,Test}Imagelist.txt                  one image a line, under Flickr/ ("actor\\0001_2.jpg")
    ROOT/Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt   one 0/1 a line, aligned with the image list
    ROOT/NUS_WID_Tags/TagList1k.txt                           the 1,000 Flickr tags, one a line
    ROOT/NUS_WID_Tags/{Train,Test}_Tags1k.dat                 a line of 1,000 0/1 per image, aligned with the list
    ROOT/Flickr/<folder>/<image>.jpg
    ROOT/zsl/seen.txt, ROOT/zsl/unseen.txt                    zero-shot only: supplied by the user (below)

Partial labels use the 81 concepts (``Groundtruth``). Zero-shot (DualCoOp, after Huynh & Elhamifar and Ben-Cohen et
al.): 925 Flickr-tag labels are seen in training, the 81 concepts are unseen; the split is the ML-ZSL / DualCoOp
label lists, which vitbench does not ship: ``zsl/seen.txt`` names the 925 seen labels (each a tag of
``TagList1k.txt``), ``zsl/unseen.txt`` the 81 unseen ones (each a concept of ``Concepts81.txt``); a name outside those
lists, or one in both files, is a one-line error. Seen labels come from the tag matrix, unseen ones from the
ground truth. Images without any label in a split's label space are left out (DualCoOp's ``*_filtered`` lists),
counted in ``skipped``. A listed image that is absent, a label file whose line count differs from its image list,
or a value other than 0/1: one-line errors naming the file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.data.multilabel import Scanned, ZeroShotSplits, sha256_file
from benchmarks.data.voc import draw_shape
from methods.errors import DataError

if TYPE_CHECKING:
    from benchmarks.probe.data import LabelledSplit

SPLITS = ("Train", "Test")


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: not found (expected NUS-WIDE's released layout; see benchmarks/data/nuswide.py)")
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _names(path: Path, what: str) -> list[str]:
    names = _lines(path)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: {what} {dup!r} appears twice")
    return names


def image_paths(root: Path, split: str) -> list[Path]:
    """The images of ``split`` ("Train", "Test") under ``root/Flickr``; an absent one is a DataError."""
    listing = root / "ImageList" / f"{split}Imagelist.txt"
    paths = [root / "Flickr" / Path(*line.replace("\\", "/").split("/")) for line in _lines(listing)]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{listing}: image listed but absent: {path}")
    return paths


def _binary_column(path: Path, n: int) -> np.ndarray:
    values = _lines(path)
    if len(values) != n:
        raise DataError(f"{path}: {len(values)} lines, but its image list has {n}")
    bad = [v for v in values if v not in ("0", "1")]
    if bad:
        raise DataError(f"{path}: values must be 0 or 1, found {bad[0]!r}")
    return np.array(values, dtype=np.int8)


def concept_labels(root: Path, split: str, concepts: list[str], n: int) -> np.ndarray:
    """``[n, 81]`` int8 ground truth of the concepts, from ``Groundtruth/TrainTestLabels``."""
    folder = root / "Groundtruth" / "TrainTestLabels"
    return np.stack([_binary_column(folder / f"Labels_{c}_{split}.txt", n) for c in concepts], axis=1)


def tag_labels(root: Path, split: str, columns: list[int], n: int) -> np.ndarray:
    """``[n, len(columns)]`` int8 columns of the 1,000-tag matrix ``NUS_WID_Tags/<split>_Tags1k.dat``."""
    path = root / "NUS_WID_Tags" / f"{split}_Tags1k.dat"
    if not path.is_file():
        raise DataError(f"{path}: not found (expected NUS-WIDE's released layout; see benchmarks/data/nuswide.py)")
    try:
        tags = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise DataError(f"{path}: not a matrix of 0/1 values ({err})") from None
    if tags.shape != (n, 1000):
        raise DataError(f"{path}: shape {list(tags.shape)}, expected [{n}, 1000] (one line of 1,000 tags per image)")
    if not np.isin(tags, (0, 1)).all():
        raise DataError(f"{path}: values must be 0 or 1")
    return tags[:, columns].astype(np.int8)


def _labelled(root: Path, name: str, classes: tuple[str, ...], paths: list[Path], labels: np.ndarray) -> Scanned:
    """Keep the images with a positive label; count the others."""
    from benchmarks.probe.data import LabelledSplit

    keep = (labels == 1).any(axis=1)
    if not keep.any():
        raise DataError(f"{root}: no image of split {name} has a label")
    kept = tuple(p for p, k in zip(paths, keep) if k)
    split: LabelledSplit = LabelledSplit(root, name, classes, kept, labels[keep])
    dropped = int((~keep).sum())
    return Scanned(split, skipped={"images_without_labels": dropped} if dropped else {})


def scan_nuswide(root: Path | str, split: str) -> Scanned:
    """NUS-WIDE ``split`` ("Train", "Test") over the 81 concepts."""
    root = Path(root)
    concepts = _names(root / "Concepts81.txt", "concept")
    paths = image_paths(root, split)
    labels = concept_labels(root, split, concepts, len(paths))
    out = _labelled(root, split.lower(), tuple(concepts), paths, labels)
    return Scanned(out.split, {"Concepts81.txt": sha256_file(root / "Concepts81.txt")}, out.skipped)


def read_nuswide_zsl(root: Path | str) -> ZeroShotSplits:
    """The 925 seen / 81 unseen split (see the module docstring). Label order: the seen labels, then the unseen."""
    root = Path(root)
    tags = _names(root / "NUS_WID_Tags" / "TagList1k.txt", "tag")
    concepts = _names(root / "Concepts81.txt", "concept")
    seen_file, unseen_file = root / "zsl" / "seen.txt", root / "zsl" / "unseen.txt"
    seen = _names(seen_file, "label")
    unseen = _names(unseen_file, "label")
    for names, known, f, what in (
        (seen, tags, seen_file, "NUS_WID_Tags/TagList1k.txt"),
        (unseen, concepts, unseen_file, "Concepts81.txt"),
    ):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise DataError(f"{f}: {len(unknown)} label(s) not in {what}, e.g. {unknown[0]!r}")
    both = sorted(set(seen) & set(unseen))
    if both:
        raise DataError(f"{unseen_file}: label {both[0]!r} is also in {seen_file}")
    classes = tuple(seen + unseen)
    s, u = len(seen), len(unseen)
    cols = [tags.index(t) for t in seen]
    parts = {}
    for split in SPLITS:
        paths = image_paths(root, split)
        seen_y = tag_labels(root, split, cols, len(paths))
        unseen_y = concept_labels(root, split, unseen, len(paths))
        parts[split] = (paths, seen_y, unseen_y)
    paths, seen_y, _ = parts["Train"]
    unknown_u = np.full((len(paths), u), -1, dtype=np.int8)
    train = _labelled(root, "train-seen", classes, paths, np.concatenate([seen_y, unknown_u], axis=1))
    paths, seen_y, unseen_y = parts["Test"]
    unknown_s = np.full_like(seen_y, -1)  # ZSL ranks the unseen labels only: seen ones are unknown there
    zsl = _labelled(root, "test-zsl", classes, paths, np.concatenate([unknown_s, unseen_y], axis=1))
    gzsl = _labelled(root, "test-gzsl", classes, paths, np.concatenate([seen_y, unseen_y], axis=1))
    ann = {f.name: sha256_file(f) for f in (seen_file, unseen_file)}
    return ZeroShotSplits(
        classes=classes,
        seen=tuple(range(s)),
        unseen=tuple(range(s, s + u)),
        train=Scanned(train.split, ann, train.skipped),
        zsl=Scanned(zsl.split, ann, zsl.skipped),
        gzsl=Scanned(gzsl.split, ann, gzsl.skipped),
    )


# ------------------------------------------------------------------------------------------------ synthetic data
_SYNTH_CONCEPTS = ("sky", "water", "animal", "flowers")  # 4 of the 81 (the unseen labels of the synthetic split)
_SYNTH_TAGS = ("beach", "sunset", "dog", "garden", "city", "snow")  # of the 1,000 tags; the first 5 are seen
_COLOURS = ((220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 40), (200, 60, 200), (40, 200, 200))


def synth_nuswide(out: Path | str, seed: int = 0, n_train: int = 48, n_test: int = 24) -> Path:
    """Write a tiny NUS-WIDE under ``out`` in the released layout: 4 concepts and 6 tags drawn as coloured shapes
    (concepts on the top row, tags on the bottom row of a 4 + 6 cell grid), 1000-tag matrices with the 6 tags at
    their columns, some images without any concept, and ``zsl/{seen,unseen}.txt`` (5 tags seen, 4 concepts unseen).
    Returns ``out``."""
    from PIL import Image, ImageDraw

    out = Path(out)
    rng = random.Random(seed)
    for sub in ("ImageList", "Groundtruth/TrainTestLabels", "NUS_WID_Tags", "zsl"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "Concepts81.txt").write_text("\n".join(_SYNTH_CONCEPTS) + "\n", encoding="utf-8")
    tag_list = [f"tag{i:03d}" for i in range(1000)]
    tag_cols = [7, 120, 333, 480, 615, 999]
    for col, t in zip(tag_cols, _SYNTH_TAGS):
        tag_list[col] = t
    (out / "NUS_WID_Tags" / "TagList1k.txt").write_text("\n".join(tag_list) + "\n", encoding="utf-8")
    (out / "zsl" / "seen.txt").write_text("\n".join(_SYNTH_TAGS[:5]) + "\n", encoding="utf-8")
    (out / "zsl" / "unseen.txt").write_text("\n".join(_SYNTH_CONCEPTS) + "\n", encoding="utf-8")
    size = 64
    for split, n in (("Train", n_train), ("Test", n_test)):
        listing, concept_rows, tag_rows = [], [], []
        for k in range(n):
            folder = ("beach", "city", "garden")[k % 3]
            rel = f"{folder}\\{k:04d}_{split.lower()}{rng.randrange(10**9)}.jpg"
            concepts_on = [] if k % 8 == 7 else rng.sample(range(len(_SYNTH_CONCEPTS)), rng.randint(1, 2))
            tags_on = rng.sample(range(len(_SYNTH_TAGS)), rng.randint(1, 2))
            img = Image.new("RGB", (size, size), (235, 235, 235))
            draw = ImageDraw.Draw(img)
            for c in concepts_on:
                draw_shape(draw, c, 8 + c * 16, 12, 7, _COLOURS[c % len(_COLOURS)])
            for j in tags_on:
                draw_shape(draw, j, 6 + j * 10, 44, 5, _COLOURS[j])
            path = out / "Flickr" / Path(*rel.split("\\"))
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path, quality=92)
            listing.append(rel)
            concept_rows.append([int(c in concepts_on) for c in range(len(_SYNTH_CONCEPTS))])
            row = [0] * 1000
            for j in tags_on:
                row[tag_cols[j]] = 1
            tag_rows.append(row)
        (out / "ImageList" / f"{split}Imagelist.txt").write_text("\r\n".join(listing) + "\r\n", encoding="utf-8")
        for c, name in enumerate(_SYNTH_CONCEPTS):
            values = "\n".join(str(r[c]) for r in concept_rows) + "\n"
            (out / "Groundtruth" / "TrainTestLabels" / f"Labels_{name}_{split}.txt").write_text(values)
        (out / "NUS_WID_Tags" / f"{split}_Tags1k.dat").write_text(
            "".join("\t".join(map(str, r)) + "\t\n" for r in tag_rows)
        )
    return out
