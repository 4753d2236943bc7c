"""ImageNet-1k val and its robustness sets in their released on-disk layouts, scanned into 1000-class splits.

Every split here is labelled with the *standard* ImageNet-1k class index (:data:`~benchmarks.data.imagenet_classes.
WNIDS`, the sorted wnids every released classifier was trained on), so a 1000-way head scores it directly:

- **val, ImageFolder** (``ROOT/val/<wnid>/<image>``): each folder name must be an ImageNet-1k wnid.
- **val, flat** (``ROOT/val/ILSVRC2012_val_00000001.JPEG`` ... as ``ILSVRC2012_img_val.tar`` extracts, plus the
  devkit's ``ILSVRC2012_validation_ground_truth.txt`` at ``ROOT/`` or ``ROOT/ILSVRC2012_devkit_t12/data/``): line
  ``n`` of the ground truth is the devkit's ``ILSVRC2012_ID`` (1..1000, *not* the sorted order) of image ``n``,
  mapped to the standard index through :data:`~benchmarks.data.imagenet_classes.DEVKIT_WNIDS`.
- **ImageNet-A / -R** (``imagenet-a.tar`` / ``imagenet-r.tar``: ``ROOT/<wnid>/<image>`` + ``README.txt``): folders
  must be wnids of the set's 200 (:func:`scan_wnid_folders`).
- **ImageNet-Sketch** (``ImageNet-Sketch.zip``: ``sketch/<wnid>/<image>``): ``--data`` is the ``sketch`` folder.
- **ImageNetV2** (``imagenetv2-matched-frequency-format-val/<k>/<hash>.jpeg``): folder ``k`` is the *standard class
  index* (its authors' loader reads ``int(parent.name)``), so a lexicographic ImageFolder (0, 1, 10, 100, ...) would
  mislabel 990 of the 1000 classes; :func:`scan_imagenetv2` reads the integer.
- **ImageNet-C** (the released tars extract to ``ROOT/<corruption>/<severity 1-5>/<wnid>/<image>``).

Scanning fails with one line naming the folder or file and what to pass instead (:class:`DataError`). The
``synth_*`` functions write tiny sets in each layout (``vitbench data synth imagenet|imagenet-a|...``) with real
wnids, so the wnid -> index mappings are exercised end to end.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.classification.protocols import IMAGENET_C_CORRUPTIONS, IMAGENET_C_EXTRAS
from benchmarks.data.imagefolder import _COLOURS, _SHAPES, IMG_EXTENSIONS, _draw
from benchmarks.data.imagenet_classes import DEVKIT_WNIDS, IMAGENET_A_WNIDS, IMAGENET_R_WNIDS, INDEX, WNIDS
from benchmarks.probe.data import LabelledSplit
from methods.errors import DataError

GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
GROUND_TRUTH_PLACES = (GROUND_TRUTH, f"ILSVRC2012_devkit_t12/data/{GROUND_TRUTH}")
_FLAT_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
CORRUPTIONS, EXTRA_CORRUPTIONS = IMAGENET_C_CORRUPTIONS, IMAGENET_C_EXTRAS


def _is_image(name: str) -> bool:
    return name.endswith(IMG_EXTENSIONS) or name.lower().endswith(IMG_EXTENSIONS)


def _entries(folder: Path) -> list[os.DirEntry]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    return sorted((e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name)


def _split(root: Path, name: str, samples: list[tuple[Path, int]]) -> LabelledSplit:
    paths = tuple(p for p, _ in samples)
    targets = np.array([t for _, t in samples], dtype=np.int64)
    return LabelledSplit(root, name, WNIDS, paths, targets)


def _class_folders(folder: Path, label_of: dict[str, int], expected: str, instead: str) -> list[tuple[Path, int]]:
    """``folder/<class>/<image>`` -> (path, standard index); every class folder name must be in ``label_of``."""
    dirs = [e for e in _entries(folder) if e.is_dir()]
    if not dirs:
        raise DataError(f"{folder}: no class folders (expected {folder}/<{expected}>/<image>)")
    unknown = [e.name for e in dirs if e.name not in label_of]
    if unknown:
        raise DataError(
            f"{folder}: class folders {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} are not "
            f"{expected}s; {instead}"
        )
    samples: list[tuple[Path, int]] = []
    for d in dirs:
        files = [Path(e.path) for e in _entries(Path(d.path)) if e.is_file() and _is_image(e.name)]
        if not files:
            raise DataError(f"{d.path}: empty class folder (no {'/'.join(IMG_EXTENSIONS[:3])}... images)")
        samples.extend((p, label_of[d.name]) for p in files)
    return samples


_NOT_WNIDS = (
    "a 1000-way ImageNet head scores val/<wnid>/ folders (n01440764 ...) or the flat val with the devkit's ground "
    "truth; for your own classes train a head with --task linear"
)


# ------------------------------------------------------------------------------------------------ ImageNet-1k val
def find_ground_truth(root: Path) -> Path | None:
    """The devkit's ``ILSVRC2012_validation_ground_truth.txt`` under ``root`` (None if absent)."""
    for place in GROUND_TRUTH_PLACES:
        if (root / place).is_file():
            return root / place
    return None


def read_ground_truth(path: Path) -> list[int]:
    """The devkit ids (1..1000), one per line, of ``ILSVRC2012_val_<n>.JPEG`` for n = 1, 2, ..."""
    ids = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        s = line.strip()
        if not s.isdigit() or not 1 <= int(s) <= 1000:
            raise DataError(f"{path}: line {n} is {s[:20]!r}, expected an ILSVRC2012_ID in 1..1000")
        ids.append(int(s))
    if not ids:
        raise DataError(f"{path}: empty ground-truth file")
    return ids


def scan_imagenet_val(root: Path | str) -> tuple[LabelledSplit, str]:
    """ImageNet-1k val under ``root`` in either layout -> (split labelled 0..999 in sorted-wnid order, layout name
    ``"imagefolder"`` or ``"flat+devkit"``)."""
    root = Path(root)
    val = root / "val"
    if not val.is_dir():
        raise DataError(
            f"{val}: missing (expected {root}/val/<wnid>/<image>, or {root}/val/ILSVRC2012_val_*.JPEG with "
            f"{root}/{GROUND_TRUTH_PLACES[1]})"
        )
    entries = _entries(val)
    dirs = [e for e in entries if e.is_dir()]
    images = [e for e in entries if e.is_file() and _is_image(e.name)]
    if dirs and images:
        raise DataError(
            f"{val}: holds both class folders ({dirs[0].name}) and images ({images[0].name}); use one layout"
        )
    if dirs or not images:
        return _split(val, "val", _class_folders(val, INDEX, "ImageNet-1k wnid", _NOT_WNIDS)), "imagefolder"
    gt_path = find_ground_truth(root)
    if gt_path is None:
        raise DataError(
            f"{val}: flat val images but no ground truth: put the devkit's {GROUND_TRUTH} (ILSVRC2012_devkit_t12.tar.gz"
            f", data/) at {root / GROUND_TRUTH_PLACES[1]}, or sort val into val/<wnid>/ folders"
        )
    gt = read_ground_truth(gt_path)
    samples: list[tuple[Path, int]] = []
    for e in images:
        m = _FLAT_NAME.fullmatch(e.name)
        if m is None:
            raise DataError(f"{e.path}: not an ILSVRC2012_val_<8 digits>.JPEG name, so it has no ground-truth line")
        n = int(m[1])
        if not 1 <= n <= len(gt):
            raise DataError(f"{e.path}: image {n}, but {gt_path} has {len(gt)} lines")
        samples.append((Path(e.path), INDEX[DEVKIT_WNIDS[gt[n - 1] - 1]]))
    return _split(val, "val", samples), "flat+devkit"


# ------------------------------------------------------------------------------------------------ robustness sets
def scan_wnid_folders(root: Path | str, wnids: tuple[str, ...], what: str) -> LabelledSplit:
    """``root/<wnid>/<image>`` for a set over ``wnids`` (ImageNet-A/-R: their 200, Sketch: all 1000)."""
    root = Path(root)
    label_of = {w: INDEX[w] for w in wnids}
    instead = f"pass the {what} folder itself (it holds {len(wnids)} <wnid>/ folders, e.g. {wnids[0]})"
    return _split(root, what, _class_folders(root, label_of, f"{what} wnid", instead))


def scan_imagenet_a(root: Path | str) -> LabelledSplit:
    return scan_wnid_folders(root, IMAGENET_A_WNIDS, "imagenet-a")


def scan_imagenet_r(root: Path | str) -> LabelledSplit:
    return scan_wnid_folders(root, IMAGENET_R_WNIDS, "imagenet-r")


def scan_imagenet_sketch(root: Path | str) -> LabelledSplit:
    return scan_wnid_folders(root, WNIDS, "imagenet-sketch")


def scan_imagenetv2(root: Path | str) -> LabelledSplit:
    """``root/<k>/<image>`` with ``k`` the standard class index 0..999 (read as an integer, never sorted as text)."""
    root = Path(root)
    label_of = {str(k): k for k in range(1000)}
    instead = "pass an imagenetv2-*-format-val folder, whose folders are the class indices 0..999"
    return _split(root, "imagenetv2", _class_folders(root, label_of, "class index 0..999", instead))


def scan_imagenet_c(root: Path | str, corruptions: tuple[str, ...], severities: tuple[int, ...]) -> list[LabelledSplit]:
    """One split per (corruption, severity), named ``<corruption>/<severity>``, from ``root/<c>/<s>/<wnid>/``."""
    root = Path(root)
    known = set(CORRUPTIONS) | set(EXTRA_CORRUPTIONS)
    bad = [c for c in corruptions if c not in known]
    if bad:
        raise DataError(
            f"ImageNet-C has no corruption {bad[0]!r}; the 19 are: {', '.join((*CORRUPTIONS, *EXTRA_CORRUPTIONS))}"
        )
    splits = []
    for c in corruptions:
        for s in severities:
            folder = root / c / str(s)
            if not folder.is_dir():
                raise DataError(
                    f"{folder}: missing (ImageNet-C extracts to ROOT/<corruption>/<severity 1-5>/<wnid>/<image>; "
                    f"pass that ROOT, with all of {c}'s severities {list(severities)})"
                )
            samples = _class_folders(folder, INDEX, "ImageNet-1k wnid", "ImageNet-C keeps val's <wnid>/ folders")
            splits.append(LabelledSplit(root, f"{c}/{s}", WNIDS, *_paths_targets(samples)))
    return splits


def _paths_targets(samples: list[tuple[Path, int]]) -> tuple[tuple[Path, ...], np.ndarray]:
    return tuple(p for p, _ in samples), np.array([t for _, t in samples], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ synthetic
# Real wnids that are in ImageNet-A and -R too (sorted indices 6, 11, 13, 22), one drawing style each.
SYNTH_WNIDS = ("n01498041", "n01531178", "n01534433", "n01614925")


def _draw_class(k: int, rng: random.Random, size: int = 64) -> Image.Image:
    return _draw(_SHAPES[k % len(_SHAPES)], _COLOURS[k % len(_COLOURS)], size, rng)


def synth_imagenet(out: Path, seed: int = 0, n_train: int = 6, n_val: int = 3) -> Path:
    """``out/{train,val}/<wnid>/`` (ImageFolder, real wnids) and the same val images as ``out/flat/val/
    ILSVRC2012_val_<n>.JPEG`` with ``out/flat/ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt``
    (devkit ids). Val numbers are shuffled across classes, as in the real val, so a layout that assumed file order =
    class order would score differently. ``--data out`` reads the ImageFolder val, ``--data out/flat`` the flat one."""
    rng = random.Random(seed)
    devkit_id = {w: i + 1 for i, w in enumerate(DEVKIT_WNIDS)}
    for k, wnid in enumerate(SYNTH_WNIDS):
        folder = out / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            _draw_class(k, rng).save(folder / f"{wnid}_{i + 1}.JPEG", quality=92)
    order = [w for w in SYNTH_WNIDS for _ in range(n_val)]
    rng.shuffle(order)
    flat = out / "flat" / "val"
    flat.mkdir(parents=True, exist_ok=True)
    gt = out / "flat" / GROUND_TRUTH_PLACES[1]
    gt.parent.mkdir(parents=True, exist_ok=True)
    for n, wnid in enumerate(order, start=1):
        name = f"ILSVRC2012_val_{n:08d}.JPEG"
        (out / "val" / wnid).mkdir(parents=True, exist_ok=True)
        _draw_class(SYNTH_WNIDS.index(wnid), rng).save(out / "val" / wnid / name, quality=92)
        shutil.copyfile(out / "val" / wnid / name, flat / name)
    gt.write_text("".join(f"{devkit_id[w]}\n" for w in order), encoding="utf-8")
    return out


def _synth_folders(out: Path, names: tuple[str, ...], seed: int, n: int, ext: str) -> Path:
    rng = random.Random(seed)
    for k, name in enumerate(names):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _draw_class(k, rng).save(folder / f"{i:04d}{ext}", quality=92)
    return out


def synth_imagenet_a(out: Path, seed: int = 0) -> Path:
    """``out/<wnid>/*.jpg`` + ``README.txt``, as ``imagenet-a.tar`` extracts (4 of its 200 wnids)."""
    _synth_folders(out, SYNTH_WNIDS, seed, 3, ".jpg")
    (out / "README.txt").write_text("synthetic ImageNet-A layout (vitbench data synth imagenet-a)\n")
    return out


def synth_imagenet_r(out: Path, seed: int = 0) -> Path:
    """``out/<wnid>/*.jpg`` + ``README.txt``, as ``imagenet-r.tar`` extracts (4 of its 200 wnids)."""
    _synth_folders(out, SYNTH_WNIDS, seed, 3, ".jpg")
    (out / "README.txt").write_text("synthetic ImageNet-R layout (vitbench data synth imagenet-r)\n")
    return out


def synth_imagenet_sketch(out: Path, seed: int = 0) -> Path:
    """``out/<wnid>/*.JPEG``, the ``sketch/`` folder of ``ImageNet-Sketch.zip``."""
    return _synth_folders(out, SYNTH_WNIDS, seed, 3, ".JPEG")


def synth_imagenetv2(out: Path, seed: int = 0) -> Path:
    """``out/<k>/*.jpeg`` with ``k`` the standard index, as ``imagenetv2-matched-frequency-format-val``; the four
    classes' indices (6, 11, 13, 22) sort differently as text than as numbers."""
    return _synth_folders(out, tuple(str(INDEX[w]) for w in SYNTH_WNIDS), seed, 3, ".jpeg")


def synth_imagenet_c(out: Path, seed: int = 0) -> Path:
    """``out/<corruption>/<severity>/<wnid>/*.JPEG`` for all 19 corruptions x 5 severities (1 image per class)."""
    for i, c in enumerate((*CORRUPTIONS, *EXTRA_CORRUPTIONS)):
        for s in range(1, 6):
            _synth_folders(out / c / str(s), SYNTH_WNIDS, seed * 1000 + i * 10 + s, 1, ".JPEG")
    return out
