"""MS-COCO 2014 as a multi-label set, its 48/17 zero-shot split, and ``vitbench data synth coco-multilabel``.

Layout (COCO's; the JSON checks are :mod:`benchmarks.data.coco`'s)::

    ROOT/annotations/instances_{train,val}2014.json         partial-label tasks (80 categories)
    ROOT/annotations/instances_train2014_seen_48_17.json    zero-shot: train images, the 48 seen categories
    ROOT/annotations/instances_val2014_unseen_48_17.json    zero-shot: val images, the 17 unseen categories (ZSL)
    ROOT/annotations/instances_val2014_gzsi_48_17.json      zero-shot: val images, all 65 categories (GZSL)
    ROOT/{train2014,val2014}/<file_name>

The three ``*_48_17.json`` are the files DualCoOp's README distributes (Bansal et al.'s split), which the user
supplies. Labels: an image is positive for every category of its annotations; category ids map to contiguous
indices in increasing id order, as DualCoOp's ``dataloaders/coco_detection.py`` does (``cats_keys.sort()``), names
from the file. Its images are ``coco.imgToAnns.keys()``: images without an annotation are left out, counted in
``skipped["images_without_labels"]``. Zero-shot: the seen / unseen classes are the categories of the seen / unseen
files; they must be disjoint and together the GZSL file's categories, with the same names for the same ids — a split
file naming a category the others do not know is a one-line error. An annotation with a category outside its file's
list, on an image the file does not list, or an image listed but absent: one-line errors naming the file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.data.coco import read_categories, read_images, read_instances
from benchmarks.data.multilabel import Scanned, ZeroShotSplits, sha256_file
from benchmarks.data.voc import draw_shape
from methods.errors import DataError

if TYPE_CHECKING:
    from benchmarks.probe.data import LabelledSplit

ZSL_FILES = {
    "train": ("train2014", "annotations/instances_train2014_seen_48_17.json"),
    "zsl": ("val2014", "annotations/instances_val2014_unseen_48_17.json"),
    "gzsl": ("val2014", "annotations/instances_val2014_gzsi_48_17.json"),
}


def read_labels(root: Path | str, ann_name: str, img_dir: str) -> tuple[dict[int, str], list[Path], np.ndarray, int]:
    """``(categories {id: name}, image paths, labels [N, C] int8 over the categories in id order, images left out)``
    of the COCO json ``root/ann_name`` with images in ``root/img_dir`` (images sorted by id)."""
    root = Path(root)
    ann_path = root / ann_name
    data = read_instances(root, ann_name, root / img_dir)
    cats = read_categories(data, ann_path)
    images = read_images(data, ann_path, root / img_dir)
    col = {cid: i for i, cid in enumerate(sorted(cats))}
    positives: dict[int, set[int]] = {}
    for a in data["annotations"]:
        if not isinstance(a, dict):
            raise DataError(f"{ann_path}: annotation {str(a)[:80]} is not an object")
        if a.get("image_id") not in images:
            raise DataError(
                f"{ann_path}: annotation id {a.get('id')!r} refers to image_id {a.get('image_id')!r}, which is not in "
                "the 'images' list"
            )
        if a.get("category_id") not in cats:
            raise DataError(
                f"{ann_path}: annotation id {a.get('id')!r} (image id {a['image_id']}) has category_id "
                f"{a.get('category_id')!r}, which is not in the 'categories' list (ids {sorted(cats)})"
            )
        positives.setdefault(a["image_id"], set()).add(col[a["category_id"]])
    kept = sorted(positives)
    labels = np.zeros((len(kept), len(cats)), dtype=np.int8)
    for i, image_id in enumerate(kept):
        labels[i, sorted(positives[image_id])] = 1
    paths = [root / img_dir / images[i]["file_name"] for i in kept]
    if not kept:
        raise DataError(f"{ann_path}: no image has an annotation")
    return {cid: cats[cid] for cid in sorted(cats)}, paths, labels, len(images) - len(kept)


def _split(root: Path, name: str, classes: tuple[str, ...], paths: list[Path], labels: np.ndarray) -> LabelledSplit:
    from benchmarks.probe.data import LabelledSplit

    return LabelledSplit(root, name, classes, tuple(paths), labels)


def scan_coco_multilabel(root: Path | str, split: str) -> Scanned:
    """``instances_<split>.json`` (``train2014``, ``val2014``) as a multi-label split over its categories."""
    root = Path(root)
    ann_name = f"annotations/instances_{split}.json"
    cats, paths, labels, dropped = read_labels(root, ann_name, split)
    return Scanned(
        _split(root, split, tuple(cats.values()), paths, labels),
        annotations={Path(ann_name).name: sha256_file(root / ann_name)},
        skipped={"images_without_labels": dropped} if dropped else {},
    )


def read_coco_zsl(root: Path | str) -> ZeroShotSplits:
    """The 48/17 zero-shot split (see the module docstring); labels span the GZSL file's categories."""
    root = Path(root)
    read = {part: read_labels(root, ann, img_dir) for part, (img_dir, ann) in ZSL_FILES.items()}
    all_cats = read["gzsl"][0]
    for part in ("train", "zsl"):
        for cid, name in read[part][0].items():
            if all_cats.get(cid) != name:
                raise DataError(
                    f"{root / ZSL_FILES[part][1]}: category {cid} ({name!r}) is not category {cid} of "
                    f"{root / ZSL_FILES['gzsl'][1]} ({all_cats.get(cid)!r}): the split files disagree"
                )
    seen_ids, unseen_ids = set(read["train"][0]), set(read["zsl"][0])
    if seen_ids & unseen_ids:
        both = ", ".join(all_cats[c] for c in sorted(seen_ids & unseen_ids))
        raise DataError(f"{root / ZSL_FILES['zsl'][1]}: unseen categories also seen in training: {both}")
    if seen_ids | unseen_ids != set(all_cats):
        rest = ", ".join(all_cats[c] for c in sorted(set(all_cats) - seen_ids - unseen_ids))
        raise DataError(f"{root / ZSL_FILES['gzsl'][1]}: categories neither seen nor unseen: {rest}")
    order = list(all_cats)  # ids in increasing order
    classes = tuple(all_cats.values())

    def scanned(part: str) -> Scanned:
        cats, paths, labels, dropped = read[part]
        full = np.full((len(paths), len(order)), -1, dtype=np.int8)  # classes outside this file: unknown
        full[:, [order.index(c) for c in cats]] = labels
        img_dir, ann = ZSL_FILES[part]
        return Scanned(
            _split(root, f"{img_dir}-{part}", classes, paths, full),
            annotations={Path(ann).name: sha256_file(root / ann)},
            skipped={"images_without_labels": dropped} if dropped else {},
        )

    return ZeroShotSplits(
        classes=classes,
        seen=tuple(order.index(c) for c in sorted(seen_ids)),
        unseen=tuple(order.index(c) for c in sorted(unseen_ids)),
        train=scanned("train"),
        zsl=scanned("zsl"),
        gzsl=scanned("gzsl"),
    )


# ------------------------------------------------------------------------------------------------ synthetic data
# Six real COCO categories (real ids, not contiguous); the last two are the synthetic zero-shot split's unseen ones.
_CATS = ((1, "person"), (3, "car"), (18, "dog"), (61, "cake"), (2, "bicycle"), (28, "umbrella"))
_UNSEEN = {2, 28}
_COLOURS = ((220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 40), (200, 60, 200), (40, 200, 200))


def _doc(images: list[dict], anns: list[dict], cat_ids: set[int], seed: int) -> dict[str, Any]:
    keep = [a for a in anns if a["category_id"] in cat_ids]
    return {
        "info": {"description": f"vitbench synthetic COCO 2014 multi-label (seed {seed})"},
        "licenses": [],
        "images": images,
        "annotations": keep,
        "categories": [{"id": i, "name": n, "supercategory": "thing"} for i, n in _CATS if i in cat_ids],
    }


def synth_coco_multilabel(out: Path | str, seed: int = 0, n_train: int = 48, n_val: int = 24) -> Path:
    """Write a tiny COCO 2014 under ``out``: ``{train,val}2014/`` JPEGs (96 x 64), ``instances_{train,val}2014.json``
    over six categories (each a coloured shape in its own cell of a 3 x 2 grid, 1-3 per image; one train image has
    none) and the three zero-shot files with 4 seen / 2 unseen of them. Returns ``out``."""
    from PIL import Image, ImageDraw

    out = Path(out)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ann_id = 1
    w, h = 96, 64
    for split, n, first in (("train2014", n_train, 1), ("val2014", n_val, 500001)):
        (out / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for k in range(n):
            img_id = first + k
            img = Image.new("RGB", (w, h), (235, 235, 235))
            draw = ImageDraw.Draw(img)
            on = [] if (split == "train2014" and k == n - 1) else rng.sample(range(len(_CATS)), rng.randint(1, 3))
            for c in sorted(on):
                r = 10
                cx, cy = 16 + (c % 3) * 32 + rng.randint(-3, 3), 16 + (c // 3) * 32 + rng.randint(-3, 3)
                draw_shape(draw, c, cx, cy, r, _COLOURS[c])
                box = [cx - r, cy - r, 2 * r, 2 * r]
                anns.append(
                    {
                        "id": ann_id,
                        "image_id": img_id,
                        "category_id": _CATS[c][0],
                        "bbox": box,
                        "area": float(box[2] * box[3]),
                        "iscrowd": 0,
                        "segmentation": [[box[0], box[1], box[0] + box[2], box[1], box[0] + box[2], box[1] + box[3]]],
                    }
                )
                ann_id += 1
            name = f"COCO_{split}_{img_id:012d}.jpg"
            img.save(out / split / name, quality=92)
            images.append({"id": img_id, "file_name": name, "width": w, "height": h})
        every = {i for i, _ in _CATS}
        (out / f"annotations/instances_{split}.json").write_text(json.dumps(_doc(images, anns, every, seed)))
        if split == "train2014":
            (out / ZSL_FILES["train"][1]).write_text(json.dumps(_doc(images, anns, every - _UNSEEN, seed)))
        else:
            (out / ZSL_FILES["zsl"][1]).write_text(json.dumps(_doc(images, anns, _UNSEEN, seed)))
            (out / ZSL_FILES["gzsl"][1]).write_text(json.dumps(_doc(images, anns, every, seed)))
    return out
