"""ImageFolder data: ``root/{train,val}/<class>/<image>``, the layout of ImageNet as DINO/MAE evaluate it.

Scanning is strict and fails early with one line naming the folder or file: a missing split, a split with no
class folders, an empty class folder, a val class that train does not have. An unreadable image fails when it
is read, naming the file. Splits are single-label :class:`~benchmarks.probe.data.LabelledSplit` objects of RGB
images.
:func:`synth_imagefolder` writes a tiny, learnable set in the same layout.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.preflight import IMG_EXTENSIONS  # the run preflight counts images without torch
from benchmarks.probe.data import LabelledSplit
from methods.errors import DataError

Split = LabelledSplit  # an ImageFolder split is a single-label LabelledSplit of RGB images


def scan_split(root: Path | str, split: str, classes: tuple[str, ...] | None = None) -> Split:
    """Scan ``root/split/<class>/*``. Pass ``classes`` (from train) to map val onto the same indices."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: missing split folder (expected {root}/{{train,val}}/<class>/<image>)")
    found = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise DataError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<image>)")
    if classes is None:
        classes = tuple(found)
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{split_dir}: classes not present in train: {', '.join(unknown[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    samples: list[tuple[Path, int]] = []
    for cls in found:
        files = sorted(
            p for p in (split_dir / cls).iterdir() if p.suffix.lower() in IMG_EXTENSIONS or p.suffix in IMG_EXTENSIONS
        )
        if not files:
            raise DataError(f"{split_dir / cls}: empty class folder (no {'/'.join(IMG_EXTENSIONS[:3])}... images)")
        samples.extend((p, index[cls]) for p in files)
    paths = tuple(p for p, _ in samples)
    targets = np.array([label for _, label in samples], dtype=np.int64)
    return LabelledSplit(split_dir, split, tuple(classes), paths, targets)


# ------------------------------------------------------------------------------------------------ synthetic
_SHAPES = ("disc", "square", "triangle", "hstripes", "vstripes", "ring", "cross", "checker")
_COLOURS = (
    (220, 40, 40),
    (40, 180, 60),
    (40, 80, 220),
    (230, 200, 40),
    (200, 60, 200),
    (40, 200, 210),
    (240, 140, 30),
    (120, 120, 120),
)


def _draw(shape: str, colour: tuple[int, int, int], size: int, rng: random.Random) -> Image.Image:
    bg = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in (235, 235, 235))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    jit = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in colour)
    r = rng.randint(size // 4, size // 2 - 2)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    if shape == "disc":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=jit)
    elif shape == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=jit)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=jit)
    elif shape == "ring":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=jit, width=max(2, r // 3))
    elif shape == "cross":
        w = max(2, r // 3)
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=jit)
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=jit)
    else:  # textures over the whole image
        step = rng.randint(4, 7)
        for k in range(0, size, 2 * step):
            if shape == "hstripes":
                d.rectangle((0, k, size, k + step - 1), fill=jit)
            elif shape == "vstripes":
                d.rectangle((k, 0, k + step - 1, size), fill=jit)
            else:
                for m in range(0, size, 2 * step):
                    d.rectangle((m, k, m + step - 1, k + step - 1), fill=jit)
                    d.rectangle((m + step, k + step, m + 2 * step - 1, k + 2 * step - 1), fill=jit)
    return img


def synth_imagefolder(
    out: Path, seed: int = 0, n_classes: int = 6, n_train: int = 16, n_val: int = 8, size: int = 64
) -> Path:
    """Write ``out/{train,val}/class_<k>_<colour-shape>/*.JPEG``: classes differ in colour, shape and texture."""
    if not 2 <= n_classes <= len(_SHAPES):
        raise DataError(f"n_classes must be in [2, {len(_SHAPES)}]")
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for k in range(n_classes):
            folder = out / split / f"class_{k}_{_SHAPES[k]}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _draw(_SHAPES[k], _COLOURS[k], size, rng).save(folder / f"{split}_{k}_{i:04d}.JPEG", quality=92)
    return out
