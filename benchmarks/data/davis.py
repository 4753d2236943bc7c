"""DAVIS-2017 on disk: the strict scanner the ``davis2017-vos`` harness runs first, palette PNGs, ``synth davis``.

Layout (the released ``DAVIS/`` folder, as DINO's ``eval_video_segmentation.py`` and the official
``davis2017-evaluation`` read it)::

    ROOT/ImageSets/2017/val.txt                     one sequence name per line
    ROOT/JPEGImages/480p/<sequence>/00000.jpg ...   frames, numbered from 00000 without gaps
    ROOT/Annotations/480p/<sequence>/00000.png ...  palette PNGs: 0 background, 1..K the objects, 255 void

:func:`scan_davis` checks everything before a model is built and fails with one line naming the file: a missing
list or sequence folder, frames with a gap in their numbering, a sequence without its first-frame annotation, a
frame without annotation, an annotation that is not an index image, differs in size from its frame, or holds an
index above the number of objects of the first frame. Predictions are written in the same layout
(``<results>/<sequence>/<frame>.png``) with the DAVIS palette (:func:`davis_palette`), so the official tool can
score them. :func:`synth_davis` writes a tiny set of moving shapes in this layout. No torch here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, UnidentifiedImageError

from methods.errors import DataError

RESOLUTION = "480p"  # the frames DINO evaluates on (the other release is "Full-Resolution")
VOID = 255  # the annotations' void label: background for the semi-supervised evaluation
_FRAME = re.compile(r"^(\d{5})\.jpg$")


def davis_palette() -> np.ndarray:
    """``[256, 3]`` uint8: the palette of DAVIS annotations (PASCAL VOC's bit-interleaved colour map: 0 black,
    1 (128, 0, 0), 2 (0, 128, 0), ...; the UVC ``palette.txt`` DINO downloads holds the same colours)."""
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def read_indexed(path: Path) -> np.ndarray:
    """The index map ``[H, W]`` uint8 of a palette (``P``) or grey (``L``) PNG; anything else is a one-line error."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(f"{path}: a {img.mode} image, not an indexed (palette) annotation PNG")
            return np.array(img)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable annotation ({type(err).__name__}: {err})") from None


def write_indexed(path: Path, labels: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write ``labels [H, W]`` (values 0..255) as a palette PNG with the DAVIS palette (``imwrite_indexed``)."""
    if labels.ndim != 2:
        raise ValueError(f"an index map is 2-D, got shape {labels.shape}")
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette((davis_palette() if palette is None else palette).ravel().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")


@dataclass(frozen=True)
class DavisSequence:
    """One scanned sequence: ``frames[t]`` is annotated by ``annotations[t]``; objects are ids 1..``n_objects``."""

    name: str
    frames: tuple[Path, ...]
    annotations: tuple[Path, ...]
    n_objects: int
    size: tuple[int, int]  # (H, W) of every frame and annotation

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class DavisSplit:
    """The sequences of ``ImageSets/2017/<split>.txt``, checked."""

    root: Path
    split: str
    imageset: Path
    sequences: tuple[DavisSequence, ...]

    @property
    def n_frames(self) -> int:
        return sum(len(s) for s in self.sequences)

    @property
    def n_objects(self) -> int:
        return sum(s.n_objects for s in self.sequences)

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for seq in self.sequences:
            h.update(f"\n{seq.name}\t{seq.n_objects}".encode())
            for p in (*seq.frames, *seq.annotations):
                h.update(f"\n{p.relative_to(self.root).as_posix()}\t{p.stat().st_size}".encode())
        return h.hexdigest()[:16]

    def fingerprint(self) -> str:
        """Relative paths and sizes of every frame and annotation, and the object counts."""
        return self._fingerprint

    def imageset_sha256(self) -> str:
        return hashlib.sha256(self.imageset.read_bytes()).hexdigest()


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable frame ({type(err).__name__}: {err})") from None


def _frames(folder: Path) -> tuple[Path, ...]:
    """``folder/%05d.jpg`` in order; a gap in the numbering (or a stray name) is an error naming the file."""
    names = sorted(p.name for p in folder.iterdir() if p.suffix == ".jpg")
    if not names:
        raise DataError(f"{folder}: no frames (expected {folder}/00000.jpg, 00001.jpg, ...)")
    for t, name in enumerate(names):
        m = _FRAME.match(name)
        if m is None:
            raise DataError(f"{folder / name}: not a DAVIS frame name (expected five digits, e.g. {t:05d}.jpg)")
        if int(m.group(1)) != t:
            missing = f"{t:05d}.jpg"
            raise DataError(f"{folder / name}: frames are numbered with a gap ({missing} is missing before it)")
    return tuple(folder / n for n in names)


def scan_sequence(root: Path, name: str) -> DavisSequence:
    """Scan and check one sequence (see the module docstring); reads every annotation once."""
    frame_dir = root / "JPEGImages" / RESOLUTION / name
    ann_dir = root / "Annotations" / RESOLUTION / name
    if not frame_dir.is_dir():
        raise DataError(f"{frame_dir}: sequence folder listed in ImageSets but missing")
    frames = _frames(frame_dir)
    first = ann_dir / "00000.png"
    if not first.is_file():
        raise DataError(f"{first}: sequence {name} has no first-frame annotation (the input of the task)")
    annotations = tuple(ann_dir / (f.stem + ".png") for f in frames)
    size = _image_size(frames[0])
    first_labels = read_indexed(first)
    objects = first_labels[first_labels != VOID]
    n_objects = int(objects.max()) if objects.size else 0
    if n_objects == 0:
        raise DataError(f"{first}: the first-frame annotation has no object (indices 1..K)")
    for frame, ann in zip(frames, annotations, strict=True):
        if not ann.is_file():
            raise DataError(f"{ann}: missing annotation for frame {frame.name} (every frame is scored)")
        labels = first_labels if ann == first else read_indexed(ann)
        if labels.shape != size or _image_size(frame) != size:
            raise DataError(
                f"{ann}: annotation {labels.shape[1]}x{labels.shape[0]} and frame {frame.name} "
                f"{_image_size(frame)[1]}x{_image_size(frame)[0]}, but the sequence is {size[1]}x{size[0]}"
            )
        top = labels[labels != VOID]
        if top.size and int(top.max()) > n_objects:
            raise DataError(
                f"{ann}: palette index {int(top.max())} exceeds the {n_objects} object(s) of the first frame"
            )
    return DavisSequence(name, frames, annotations, n_objects, size)


def scan_davis(root: Path | str, split: str = "val") -> DavisSplit:
    """Scan ``root`` (the ``DAVIS/`` folder) for the sequences of ``ImageSets/2017/<split>.txt``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    imageset = root / "ImageSets" / "2017" / f"{split}.txt"
    if not imageset.is_file():
        raise DataError(f"{imageset}: missing sequence list (expected the DAVIS-2017 layout under {root})")
    names = [line.strip() for line in imageset.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{imageset}: empty sequence list")
    if len(set(names)) != len(names):
        raise DataError(f"{imageset}: a sequence is listed twice")
    return DavisSplit(root, split, imageset, tuple(scan_sequence(root, n) for n in names))


# ------------------------------------------------------------------------------------------------ synthetic
_OBJECT_COLOURS = ((230, 40, 40), (40, 90, 230), (240, 210, 30), (40, 200, 80))


def _background(h: int, w: int, rng: np.random.Generator) -> Image.Image:
    """Low-frequency colour blobs over grey: texture that is neither flat nor like the objects."""
    coarse = rng.integers(90, 170, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BILINEAR)
    return img.filter(ImageFilter.GaussianBlur(3))


def synth_davis(
    out: Path, seed: int = 0, n_frames: int = 8, size: tuple[int, int] = (128, 224), objects: tuple[int, ...] = (2, 3)
) -> Path:
    """Write ``out`` as a DAVIS root: one sequence per entry of ``objects`` (that many moving shapes: discs,
    squares and rings of distinct colours drifting across a textured background), ``n_frames`` JPEG frames of
    ``size`` = (H, W), palette annotations for every frame, ``ImageSets/2017/val.txt``."""
    rng = np.random.default_rng(seed)
    h, w = size
    names = []
    for s, k in enumerate(objects):
        name = f"synth-shapes-{s}"
        names.append(name)
        bg = _background(h, w, rng)
        # Start positions spread over the frame, velocities of a few pixels per frame, radii of ~1.5 patches.
        starts = [(int(rng.integers(24, h - 24)), int((i + 0.5) * w / k)) for i in range(k)]
        vel = [(float(rng.uniform(-3, 3)), float(rng.uniform(-4, 4))) for _ in range(k)]
        radii = [int(rng.integers(16, 22)) for _ in range(k)]
        for t in range(n_frames):
            img = bg.copy()
            labels = Image.new("L", (w, h), 0)
            draw, ldraw = ImageDraw.Draw(img), ImageDraw.Draw(labels)
            for i in range(k):
                cy = int(np.clip(starts[i][0] + vel[i][0] * t, radii[i], h - radii[i]))
                cx = int(np.clip(starts[i][1] + vel[i][1] * t, radii[i], w - radii[i]))
                r = radii[i]
                box = (cx - r, cy - r, cx + r, cy + r)
                colour = _OBJECT_COLOURS[i % len(_OBJECT_COLOURS)]
                if i % 3 == 0:
                    draw.ellipse(box, fill=colour)
                    ldraw.ellipse(box, fill=i + 1)
                elif i % 3 == 1:
                    draw.rectangle(box, fill=colour)
                    ldraw.rectangle(box, fill=i + 1)
                else:
                    draw.ellipse(box, fill=colour)
                    draw.ellipse((cx - r // 2, cy - r // 2, cx + r // 2, cy + r // 2), fill=(250, 250, 250))
                    ldraw.ellipse(box, fill=i + 1)
            frame = out / "JPEGImages" / RESOLUTION / name / f"{t:05d}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            img.save(frame, quality=95)
            write_indexed(out / "Annotations" / RESOLUTION / name / f"{t:05d}.png", np.array(labels))
    imageset = out / "ImageSets" / "2017" / "val.txt"
    imageset.parent.mkdir(parents=True, exist_ok=True)
    imageset.write_text("".join(f"{n}\n" for n in names))
    return out
