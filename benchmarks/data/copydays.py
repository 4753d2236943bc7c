"""INRIA Copydays on disk, as DINO's ``eval_copy_detection.py`` reads it, plus the distractor and whitening sets.

Layout (``--data ROOT``)::

    ROOT/original/*.jpg          157 originals (the database), e.g. 200000.jpg
    ROOT/strong/*.jpg            229 strong copies (the queries), e.g. 200001.jpg: positives = originals whose name
                                 shares the query's first 4 characters (DINO's ``bname[:4] == qname[:4]``)
    ROOT/jpegqual/<q>/*.jpg      optional blocks, 1:1 with the originals in sorted order
    ROOT/crops/<c>/*.jpg
    ROOT/distractors/            user-supplied: DINO adds 10k random YFCC100M images to the database
    ROOT/whitening/              user-supplied: 20k other YFCC100M images to learn the whitening on

The two user-supplied folders may be symbolic links to wherever the YFCC images live. Copydays blocks list their
``.jpg`` files (DINO's ``get_block``); the user folders any file with one of DINO's image extensions
(``is_image_file``, case-sensitive as there). :func:`scan_copydays` fails with one line naming the folder or file
(a missing block, an empty folder, a strong query without a matching original, a block whose size differs from the
originals'); :func:`synth_copydays` writes a tiny set in this layout. No torch here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from benchmarks.probe.data import LabelledSplit
from methods.errors import DataError

# DINO's CopydaysDataset.block_names after the two main blocks.
OPTIONAL_BLOCKS: tuple[str, ...] = (
    *(f"jpegqual/{q}" for q in (3, 5, 8, 10, 15, 20, 30, 50, 75)),
    *(f"crops/{c}" for c in (10, 15, 20, 30, 40, 50, 60, 70, 80)),
)
# DINO's is_image_file: the extension after the last dot, compared as is.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp")


@dataclass(frozen=True)
class QueryBlock:
    """One block of queries and, per query, the database indices (into the originals) of its positives."""

    name: str  # "strong", "jpegqual/3", ...
    images: LabelledSplit
    positives: tuple[tuple[int, ...], ...]

    @property
    def metric(self) -> str:
        """``mAP`` for the strong block (the number papers report), ``mAP_<block>`` for the others."""
        return "mAP" if self.name == "strong" else "mAP_" + self.name.replace("/", "_")


@dataclass(frozen=True)
class CopydaysData:
    root: Path
    originals: LabelledSplit
    queries: tuple[QueryBlock, ...]  # strong first, then original and the optional blocks present, in DINO's order
    distractors: LabelledSplit
    whitening: LabelledSplit | None

    def sizes(self) -> dict[str, int]:
        """Images per split, as the record's ``dataset.splits`` (compared with the task's declared data)."""
        out = {"original": len(self.originals), **{q.name: len(q.images) for q in self.queries}}
        out["distractors"] = len(self.distractors)
        if self.whitening is not None:
            out["whitening"] = len(self.whitening)
        return out


def _split(root: Path, name: str, paths: list[Path]) -> LabelledSplit:
    return LabelledSplit(root, name, (), tuple(paths), np.arange(len(paths), dtype=np.int64))


def _block(root: Path, name: str) -> LabelledSplit:
    folder = root / name
    if not folder.is_dir():
        raise DataError(f"{folder}: missing Copydays block (expected {root}/{{original,strong}}/*.jpg)")
    paths = sorted(p for p in folder.iterdir() if p.name.endswith(".jpg"))
    if not paths:
        raise DataError(f"{folder}: no .jpg images in this Copydays block")
    return _split(root, name, paths)


def _image_folder(root: Path, name: str, what: str) -> LabelledSplit:
    folder = root / name
    if not folder.is_dir():
        raise DataError(f"{folder}: missing {what} folder (link your YFCC100M images there, see the README)")
    paths = sorted(p for p in folder.iterdir() if p.name.split(".")[-1] in IMAGE_EXTENSIONS)
    if not paths:
        raise DataError(f"{folder}: no images in the {what} folder")
    return _split(root, name, paths)


def scan_copydays(root: Path | str, whitening: bool = True) -> CopydaysData:
    """Scan and check ``root`` (see the module docstring). ``whitening``: the whitening folder is required."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    originals = _block(root, "original")
    strong = _block(root, "strong")
    names = [p.name for p in originals.paths]
    positives = []
    for query in strong.paths:
        pos = tuple(j for j, n in enumerate(names) if n[:4] == query.name[:4])
        if not pos:
            raise DataError(
                f"{query}: no original in {root / 'original'} shares its first 4 characters '{query.name[:4]}' "
                "(a strong copy is named after its original)"
            )
        positives.append(pos)
    # DINO queries every block, the originals themselves included (each finds itself: a sanity check).
    identity = tuple((i,) for i in range(len(originals)))
    blocks = [QueryBlock("strong", strong, tuple(positives)), QueryBlock("original", originals, identity)]
    for name in OPTIONAL_BLOCKS:
        if not (root / name).is_dir():
            continue
        block = _block(root, name)
        if len(block) != len(originals):
            raise DataError(
                f"{root / name}: {len(block)} images, but its copies map 1:1 onto the {len(originals)} originals"
            )
        blocks.append(QueryBlock(name, block, identity))
    distractors = _image_folder(root, "distractors", "distractor")
    whit = _image_folder(root, "whitening", "whitening") if whitening else None
    return CopydaysData(root, originals, tuple(blocks), distractors, whit)


# ------------------------------------------------------------------------------------------------ synthetic
def _scene(rng: random.Random, size: int) -> Image.Image:
    """A 'holiday photo': a two-colour sky/ground split and a few bold shapes, each scene unlike the others."""
    top = tuple(rng.randint(30, 225) for _ in range(3))
    bottom = tuple(rng.randint(30, 225) for _ in range(3))
    img = Image.new("RGB", (size, size), top)
    d = ImageDraw.Draw(img)
    horizon = rng.randint(size // 3, 2 * size // 3)
    d.rectangle((0, horizon, size, size), fill=bottom)
    for _ in range(rng.randint(3, 5)):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        x, y, r = rng.randint(0, size), rng.randint(0, size), rng.randint(size // 10, size // 4)
        if rng.random() < 0.5:
            d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            d.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    return img


def _strong_edit(img: Image.Image, rng: random.Random) -> Image.Image:
    """Copydays-style strong attack: crop, rotation, colour change, blur and a painted-over patch."""
    size = img.size[0]
    c = rng.randint(size // 10, size // 5)
    out = img.crop((c, c // 2, size - c // 2, size - c)).resize((size, size), Image.Resampling.BICUBIC)
    out = out.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.4, 1.6))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3)).filter(ImageFilter.GaussianBlur(1.2))
    d = ImageDraw.Draw(out)
    x, y = rng.randint(0, size // 2), rng.randint(0, size // 2)
    d.rectangle((x, y, x + size // 6, y + size // 8), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return out


def synth_copydays(
    out: Path,
    seed: int = 0,
    n_originals: int = 8,
    n_distractors: int = 24,
    n_whitening: int = 40,
    size: int = 96,
) -> Path:
    """Write ``out`` in the layout above: ``original/2xxx00.jpg``, one or two strong copies each
    (``strong/2xxx01.jpg``...), a ``jpegqual/50`` block, and unrelated scenes in ``distractors/`` and
    ``whitening/``."""
    rng = random.Random(seed)
    for folder in ("original", "strong", "jpegqual/50", "distractors", "whitening"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_originals):
        img = _scene(rng, size)
        stem = f"2{i:03d}"
        img.save(out / "original" / f"{stem}00.jpg", quality=95)
        img.save(out / "jpegqual" / "50" / f"{stem}00.jpg", quality=50)
        for k in range(1 + i % 2):
            _strong_edit(img, rng).save(out / "strong" / f"{stem}{k + 1:02d}.jpg", quality=90)
    for folder, n in (("distractors", n_distractors), ("whitening", n_whitening)):
        for i in range(n):
            _scene(rng, size).save(out / folder / f"yfcc_{i:05d}.jpg", quality=90)
    return out
