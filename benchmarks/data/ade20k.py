"""ADE20K on disk: the strict split validator the segmentation harness runs first, and ``vitbench data synth ade20k``.

Layout (the SceneParsing release, ``ADEChallengeData2016.zip``, as mmseg's ``ADE20KDataset`` reads it)::

    ADEChallengeData2016/images/training/ADE_train_00000001.jpg       ADEChallengeData2016/images/validation/...
    ADEChallengeData2016/annotations/training/ADE_train_00000001.png  ADEChallengeData2016/annotations/validation/...

Each label map is an 8-bit PNG of the image's size holding 0 ("other", ignored: mmseg's ``reduce_zero_label`` maps
it to 255 and class ``k`` to ``k - 1``) or a class 1..150; 255 is accepted as an explicit ignore value.
:func:`validate_ade20k_split` fails with one line naming the file at fault (a missing split folder, an image without
its label map or the reverse, another size, a label outside 0-150/255, an unreadable or CMYK JPEG) before anything
reaches mmseg. Grayscale JPEGs (the real training set has some) are a documented conversion, not an error: mmcv
decodes them to three equal channels; they are counted in the record's ``dataset.skipped`` as ``grayscale_converted``.
:func:`synth_ade20k` writes a tiny learnable set in the same layout. Neither imports torch or the mm* stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from methods.errors import DataError

ADE_DIR = "ADEChallengeData2016"
SPLITS = ("training", "validation")
NUM_CLASSES = 150  # label values 1..150 (0 = "other")
IGNORE = 255
IMG_SUFFIX, SEG_SUFFIX = ".jpg", ".png"
_LABEL_MODES = ("L", "P")  # 8-bit grey or palette: mmseg decodes both to the stored indices (pillow backend)


def resolve_root(data: Path | str) -> Path:
    """The ``ADEChallengeData2016`` folder: ``data`` itself, or ``data/ADEChallengeData2016`` (the unzipped release)."""
    data = Path(data)
    if (data / ADE_DIR).is_dir():
        return data / ADE_DIR
    if (data / "images").is_dir() or (data / "annotations").is_dir():
        return data
    if not data.is_dir():
        raise DataError(f"{data}: data folder does not exist")
    raise DataError(
        f"{data}: not ADE20K's layout: expected {ADE_DIR}/images/<split>/*.jpg and {ADE_DIR}/annotations/<split>/*.png "
        f"(splits {', '.join(SPLITS)}), at {data} or under {data / ADE_DIR}"
    )


@dataclass(frozen=True)
class AdeSplit:
    """A validated split: what the harness and the record need to know about it."""

    root: Path  # the ADEChallengeData2016 folder
    split: str
    n_images: int
    fingerprint: str  # sha256 of the sorted (name, bytes) of every image and label map (first 16 hex digits)
    classes_present: tuple[int, ...]  # label values 1..150 that occur in some label map
    skipped: dict[str, int] = field(default_factory=dict)  # documented conversions (grayscale_converted)

    @property
    def img_dir(self) -> str:
        return f"images/{self.split}"

    @property
    def seg_dir(self) -> str:
        return f"annotations/{self.split}"


def _listing(folder: Path, suffix: str) -> dict[str, int]:
    """stem -> size in bytes of the ``suffix`` files directly in ``folder``."""
    out = {}
    with os.scandir(folder) as it:
        for e in it:
            if e.is_file() and e.name.endswith(suffix):
                out[e.name[: -len(suffix)]] = e.stat().st_size
    return out


def _check_pair(img_path: Path, seg_path: Path) -> tuple[bool, list[int]]:
    """(is the image grayscale, sorted label values) for one pair; raises DataError naming the file at fault."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(img_path) as im:
            mode, size = im.mode, im.size  # the header only: pixels are decoded by mmcv in training
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{img_path}: not a readable image ({err})") from None
    if mode == "CMYK":
        raise DataError(
            f"{img_path}: CMYK JPEG; decoders disagree on its colours (Adobe-inverted CMYK), so convert it to RGB "
            "first (e.g. PIL: Image.open(p).convert('RGB').save(p))"
        )
    if mode not in ("RGB", "L"):
        raise DataError(f"{img_path}: image mode {mode}; expected an RGB (or grayscale) JPEG")
    try:
        with Image.open(seg_path) as lab:
            lab_mode, lab_size = lab.mode, lab.size
            values = np.unique(np.asarray(lab)) if lab_mode in _LABEL_MODES else None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{seg_path}: not a readable label map ({err})") from None
    if values is None:
        raise DataError(f"{seg_path}: label map of mode {lab_mode}; expected an 8-bit single-channel PNG (mode L or P)")
    if lab_size != size:
        raise DataError(
            f"{seg_path}: label map is {lab_size[0]}x{lab_size[1]} but its image {img_path.name} is {size[0]}x{size[1]}"
        )
    bad = [int(v) for v in values if v > NUM_CLASSES and v != IGNORE]
    if bad:
        raise DataError(
            f"{seg_path}: label values {bad[:5]} outside 0-{NUM_CLASSES} (0 = other, 255 = ignore); "
            f"ADE20K has {NUM_CLASSES} classes"
        )
    return mode == "L", [int(v) for v in values]


def _cache_path(cache_dir: Path | str, split: str, fingerprint: str) -> Path:
    return Path(cache_dir) / f"ade20k_{split}_{fingerprint}.json"


def validate_ade20k_split(root: Path | str, split: str, cache_dir: Path | str | None = None) -> AdeSplit:
    """Check ``root/{images,annotations}/<split>`` (``root`` as :func:`resolve_root` finds it).

    Pairs images and label maps by name and decodes every label map (and every image header): a missing folder,
    an unpaired file, a size mismatch, a label value outside 0-150 (other than 255), an unreadable or CMYK image
    raises :class:`DataError` naming the file. A check :func:`remember` stored in ``cache_dir`` for the same files
    (names and sizes) is not repeated, so a resumed run does not decode 22k label maps again. Writes nothing.
    """
    root = resolve_root(root)
    img_dir, seg_dir = root / "images" / split, root / "annotations" / split
    for d in (img_dir, seg_dir):
        if not d.is_dir():
            raise DataError(f"{d}: split folder not found (ADE20K's layout: {root}/{{images,annotations}}/{split}/)")
    images, labels = _listing(img_dir, IMG_SUFFIX), _listing(seg_dir, SEG_SUFFIX)
    if not images:
        raise DataError(f"{img_dir}: no {IMG_SUFFIX} images")
    for have, lack, have_dir, lack_dir, what in (
        (images, labels, img_dir, seg_dir, "label map"),
        (labels, images, seg_dir, img_dir, "image"),
    ):
        orphans = sorted(set(have) - set(lack))
        if orphans:
            suffix = SEG_SUFFIX if what == "label map" else IMG_SUFFIX
            src = IMG_SUFFIX if what == "label map" else SEG_SUFFIX
            more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
            raise DataError(f"{have_dir / (orphans[0] + src)}: no {what} {lack_dir / (orphans[0] + suffix)}{more}")
    h = hashlib.sha256()
    for stem in sorted(images):
        h.update(f"{stem}:{images[stem]}:{labels[stem]}\n".encode())
    fingerprint = h.hexdigest()[:16]
    cache = _cache_path(cache_dir, split, fingerprint) if cache_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            done = json.loads(cache.read_text())
            return AdeSplit(root, split, len(images), fingerprint, tuple(done["classes_present"]), done["skipped"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is checked again
    grey = 0
    present: set[int] = set()
    for stem in sorted(images):
        is_grey, values = _check_pair(img_dir / (stem + IMG_SUFFIX), seg_dir / (stem + SEG_SUFFIX))
        grey += is_grey
        present.update(v for v in values if 0 < v <= NUM_CLASSES)
    skipped = {"grayscale_converted": grey} if grey else {}
    return AdeSplit(root, split, len(images), fingerprint, tuple(sorted(present)), skipped)


def remember(split: AdeSplit, cache_dir: Path | str) -> Path:
    """Store that ``split`` passed :func:`validate_ade20k_split` (keyed by its fingerprint); returns the file."""
    cache = _cache_path(cache_dir, split.split, split.fingerprint)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # every rank of a multi-GPU run writes the same entry
    tmp.write_text(json.dumps({"classes_present": list(split.classes_present), "skipped": split.skipped}))
    tmp.replace(cache)
    return cache


# ------------------------------------------------------------------------------------------------ synthetic data
# The synthetic scenes' classes: (ADE20K label value, RGB colour). Values are ADE's: 1 wall, 3 sky, 4 floor, 5 tree.
_SCENE = {
    "wall": (1, (150, 150, 140)),
    "sky": (3, (70, 130, 230)),
    "floor": (4, (120, 80, 40)),
    "tree": (5, (40, 160, 50)),
}
# Odd sizes, none a multiple of 32 (nor of 16 or 14), landscape and portrait.
_SIZES = ((97, 75), (83, 101), (120, 67), (71, 89), (109, 93), (90, 61))


def synth_ade20k(out: Path | str, seed: int = 0, n_train: int = 8, n_val: int = 4) -> Path:
    """Write a tiny ADE20K under ``out/ADEChallengeData2016`` (JPEG images, 8-bit PNG label maps); returns that folder.

    Each scene is sky over wall over floor, with a tree blob and a patch of "other" (label 0, ignored), each class
    colour-coded with light noise: a few iterations from random weights already find some pixels of a class, so
    even a smoke run scores a non-zero mIoU. File names follow ADE's (``ADE_train_00000001``, ``ADE_val_00000001``).
    """
    import numpy as np
    from PIL import Image

    root = Path(out) / ADE_DIR
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    for split, n, tag in (("training", n_train, "train"), ("validation", n_val, "val")):
        img_dir, seg_dir = root / "images" / split, root / "annotations" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        seg_dir.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            w, h = _SIZES[(k + (split == "validation")) % len(_SIZES)]
            label = np.zeros((h, w), dtype=np.uint8)
            sky, floor = int(h * rng.uniform(0.2, 0.35)), int(h * rng.uniform(0.65, 0.8))
            label[:sky], label[sky:floor], label[floor:] = _SCENE["sky"][0], _SCENE["wall"][0], _SCENE["floor"][0]
            cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.12, 0.2) * min(w, h)
            yy, xx = np.mgrid[:h, :w]
            label[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = _SCENE["tree"][0]
            ox, oy = rng.randrange(0, w - w // 5), rng.randrange(0, h - h // 5)
            label[oy : oy + h // 6, ox : ox + w // 6] = 0  # "other": ignored in training and scoring
            rgb = np.zeros((h, w, 3), dtype=np.float32)
            for value, colour in _SCENE.values():
                rgb[label == value] = colour
            rgb[label == 0] = (200, 40, 160)
            rgb += nrng.normal(0.0, 8.0, rgb.shape)
            name = f"ADE_{tag}_{k + 1:08d}"
            Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB").save(img_dir / f"{name}.jpg", quality=95)
            Image.fromarray(label, "L").save(seg_dir / f"{name}.png")
    return root
