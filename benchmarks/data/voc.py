"""PASCAL VOC 2007 as a multi-label set (``VOCdevkit/VOC2007``), and ``vitbench data synth voc``.

Layout (the VOC devkit's; the test set unpacks into the same folder)::

    ROOT/VOCdevkit/VOC2007/ImageSets/Main/{trainval,test}.txt    one image id a line
    ROOT/VOCdevkit/VOC2007/Annotations/<id>.xml                  <object><name>, <difficult> per object
    ROOT/VOCdevkit/VOC2007/JPEGImages/<id>.jpg

``ROOT`` may also be the ``VOC2007`` folder itself. An image's label vector has a 1 for each of the 20 classes
with an object in its XML. ``difficult`` objects follow DualCoOp's ``dataloaders/pascal_voc.py`` (and ASL's): they
are skipped, so a class present only as difficult objects is a *negative* (0) — protocols_wave2.md § Multi-label.
``difficult="ignore"`` makes such a class unknown (-1, left out of loss and AP) instead, as the VOC devkit's own
classification ground truth (``<class>_<split>.txt``: 0 = difficult only) does. An object naming a class outside
the 20, an XML without any object (VOC annotates every image it lists), a listed id without its XML or JPEG: a
one-line :class:`DataError` naming the file. XML is read with the standard library's expat parser, which expands no
external entities.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from methods.errors import DataError

if TYPE_CHECKING:
    from PIL import ImageDraw

    from benchmarks.probe.data import LabelledSplit

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
DIFFICULT = ("negative", "ignore")


def voc_root(root: Path | str) -> Path:
    """The ``VOC2007`` folder under ``root`` (``root/VOCdevkit/VOC2007``, or ``root`` itself)."""
    root = Path(root)
    for cand in (root / "VOCdevkit" / "VOC2007", root):
        if (cand / "Annotations").is_dir() and (cand / "ImageSets" / "Main").is_dir():
            return cand
    raise DataError(
        f"{root}: not a VOC 2007 folder (expected {root}/VOCdevkit/VOC2007/{{Annotations,ImageSets/Main,JPEGImages}})"
    )


def parse_annotation(xml_path: Path, difficult: str = "negative") -> np.ndarray:
    """``[20]`` int8 labels of one VOC XML (see the module docstring for ``difficult``)."""
    try:
        tree = ET.parse(xml_path)
    except (ET.ParseError, OSError) as err:
        raise DataError(f"{xml_path}: not a readable VOC annotation ({err})") from None
    objects = tree.getroot().findall("object")
    if not objects:
        raise DataError(f"{xml_path}: no <object>: VOC annotates at least one object in every image it lists")
    labels = np.zeros(len(VOC_CLASSES), dtype=np.int8)
    only_difficult = np.zeros(len(VOC_CLASSES), dtype=bool)
    for obj in objects:
        name = (obj.findtext("name") or "").strip().lower()
        if name not in VOC_CLASSES:
            raise DataError(
                f"{xml_path}: object class {name!r} is not one of VOC's 20 classes ({', '.join(VOC_CLASSES)})"
            )
        c = VOC_CLASSES.index(name)
        if (obj.findtext("difficult") or "0").strip() == "1":
            only_difficult[c] = True
            continue
        labels[c] = 1
    if difficult == "ignore":
        labels[only_difficult & (labels == 0)] = -1
    return labels


def scan_voc(root: Path | str, split: str, difficult: str = "negative") -> LabelledSplit:
    """The VOC 2007 ``split`` ("trainval", "test") as a multi-label split over :data:`VOC_CLASSES`."""
    from benchmarks.probe.data import LabelledSplit

    if difficult not in DIFFICULT:
        raise ValueError(f"difficult={difficult!r}: expected one of {DIFFICULT}")
    voc = voc_root(root)
    listing = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: image list of split {split!r} not found")
    ids = [line.split()[0] for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{listing}: no image ids")
    paths, targets = [], []
    for image_id in ids:
        xml_path = voc / "Annotations" / f"{image_id}.xml"
        if not xml_path.is_file():
            raise DataError(f"{listing}: image {image_id} is listed but its annotation {xml_path} is absent")
        jpg = voc / "JPEGImages" / f"{image_id}.jpg"
        if not jpg.is_file():
            raise DataError(f"{listing}: image listed but absent: {image_id} -> {jpg}")
        targets.append(parse_annotation(xml_path, difficult))
        paths.append(jpg)
    return LabelledSplit(voc, split, VOC_CLASSES, tuple(paths), np.stack(targets))


# ------------------------------------------------------------------------------------------------ synthetic data
# The synthetic set uses four of the 20 classes, each a coloured shape in its own quadrant (the others never occur).
_SYNTH_CLASSES = ("aeroplane", "bird", "car", "dog")
_COLOURS = ((220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 40))


def _xml(image_id: str, w: int, h: int, objects: list[tuple[str, bool, tuple[int, int, int, int]]]) -> str:
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(diff)}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for name, diff, b in objects
    )
    return (
        f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
        f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}"
        "</annotation>"
    )


def draw_shape(draw: ImageDraw.ImageDraw, c: int, cx: int, cy: int, r: int, colour: tuple[int, int, int]) -> None:
    """Class ``c``'s shape (disc, square, triangle, cross) at ``(cx, cy)`` with radius ``r``."""
    if c % 4 == 0:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif c % 4 == 1:
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif c % 4 == 2:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:
        draw.rectangle((cx - r, cy - 2, cx + r, cy + 2), fill=colour)
        draw.rectangle((cx - 2, cy - r, cx + 2, cy + r), fill=colour)


def synth_voc(out: Path | str, seed: int = 0, n_trainval: int = 48, n_test: int = 24, size: int = 64) -> Path:
    """Write a tiny VOC 2007 under ``out/VOCdevkit/VOC2007``: 1-3 of four classes per image, each a coloured shape
    in its own quadrant (learnable by a linear head), some objects marked difficult. Returns ``out``."""
    from PIL import Image, ImageDraw

    out = Path(out)
    voc = out / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n = 0
    for split, count in (("trainval", n_trainval), ("test", n_test)):
        ids = []
        for _ in range(count):
            n += 1
            image_id = f"{n:06d}"
            on = sorted(rng.sample(range(len(_SYNTH_CLASSES)), rng.randint(1, 3)))
            img = Image.new("RGB", (size, size), (235, 235, 235))
            draw = ImageDraw.Draw(img)
            objects = []
            for c in on:
                r = size // 6
                cx = size // 4 + (c % 2) * size // 2 + rng.randint(-3, 3)
                cy = size // 4 + (c // 2) * size // 2 + rng.randint(-3, 3)
                draw_shape(draw, c, cx, cy, r, _COLOURS[c])
                objects.append((_SYNTH_CLASSES[c], False, (cx - r, cy - r, cx + r, cy + r)))
            if rng.random() < 0.25:  # a small extra object of a present class, marked difficult
                name, _, box = objects[0]
                objects.append((name, True, (box[0], box[1], box[0] + 4, box[1] + 4)))
            img.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=92)
            (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, size, size, objects), encoding="utf-8")
            ids.append(image_id)
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return out
