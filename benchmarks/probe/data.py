"""Labelled splits for frozen-feature probes, delivered in the encoder's band order and scaling.

A :class:`LabelledSplit` is what every data layout is scanned into: file paths, class names and targets —
``[N]`` class indices (single-label) or ``[N, C]`` with 1 / 0 / -1 = positive / negative / unknown (multi-label,
partial labels). Files are RGB images, or ``.npy`` arrays ``[bands, H, W]`` whose band names the split declares.

:class:`ProbeDataset` reads a file and hands the encoder ``[C, H, W]`` float tensors in *its* declared order
(``DataConfig.band_order``; RGB when None) — bands are matched by name, never by position, and a band the data
lacks is an error unless the caller asks for zeros (a missing modality, as DINO-MM's sensor drop feeds it).
Images go through timm's eval transform built from the encoder's data config; arrays through the same
resize / center-crop / normalise steps done on tensors.

The generic table layout (:func:`scan_table`): ``root/<split>.csv`` with a header ``path,<class 1>,...,<class C>``
(values 1, 0 or -1) and, for arrays, ``root/bands.txt`` (one band name a line, in file order).
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from methods.errors import DataError

RGB = ("R", "G", "B")
ARRAY_SUFFIXES = (".npy",)


@dataclass(frozen=True, eq=False)
class LabelledSplit:
    """One scanned split. ``paths[i]`` has target ``targets[i]``; ``bands`` names the channels of array files
    (None: RGB images)."""

    root: Path  # the folder paths are fingerprinted relative to
    name: str
    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    targets: np.ndarray  # [N] int64 or [N, C] int8 in {1, 0, -1}
    bands: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.targets):
            raise ValueError(f"{self.root}: {len(self.paths)} paths but {len(self.targets)} targets")
        if self.multilabel and self.targets.shape[1] != len(self.classes):
            raise ValueError(
                f"{self.root}: targets have {self.targets.shape[1]} columns for {len(self.classes)} classes"
            )

    @property
    def multilabel(self) -> bool:
        return self.targets.ndim == 2

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def samples(self) -> list[tuple[Path, Any]]:
        """``(path, target)`` pairs (class index for single-label splits)."""
        return [(p, t.tolist() if self.multilabel else int(t)) for p, t in zip(self.paths, self.targets)]

    @property
    def labels(self) -> list[int]:
        if self.multilabel:
            raise TypeError(f"{self.root}: a multi-label split has no single label per sample")
        return [int(t) for t in self.targets]

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(self.classes).encode())
        if self.bands is not None:  # RGB splits keep the fingerprint they had before bands existed
            h.update(f"\nbands={','.join(self.bands)}".encode())
        for path, target in zip(self.paths, self.targets):
            label = ",".join(map(str, target.tolist())) if self.multilabel else str(int(target))
            h.update(f"\n{path.relative_to(self.root).as_posix()}\t{path.stat().st_size}\t{label}".encode())
        return h.hexdigest()[:16]

    @cached_property
    def _content(self) -> str:
        from benchmarks.features import content_digest

        return content_digest(self.paths)

    def content_digest(self) -> str:
        """A fast hash of the files' bytes (what the feature cache verifies on reuse); computed once per object."""
        return self._content

    def fingerprint(self) -> str:
        """A content fingerprint: relative paths, sizes and targets (not mtimes, which change on copy).
        Computed once per split object: every cache key and record of a run reuses it."""
        return self._fingerprint


# ------------------------------------------------------------------------------------------------ reading
_WIDE_MODES = {"I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 16}  # bit depth PIL reads them at


def _to_8bit(img: Image.Image, path: Path) -> Image.Image:
    """A 16-bit image scaled to 8 bits by its real depth (``>> 8``), not clipped to white by ``convert``."""
    arr = np.asarray(img)
    if img.mode == "I" and (arr.min() < 0 or arr.max() > 0xFFFF):
        raise DataError(f"{path}: a 32-bit integer image; convert it to 8 or 16 bits per channel")
    return Image.fromarray((arr.astype(np.uint32) >> 8).astype(np.uint8), mode="L")


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            if img.mode in _WIDE_MODES:
                return _to_8bit(img, path).convert("RGB")
            if img.mode == "F":
                raise DataError(f"{path}: a floating-point image; convert it to 8 or 16 bits per channel")
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable image ({type(err).__name__}: {err}); remove or replace it") from None


def load_array(path: Path, n_bands: int) -> np.ndarray:
    """A ``[bands, H, W]`` float32 array from ``.npy``; read without pickle."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable array ({type(err).__name__}: {err})") from None
    if arr.ndim != 3 or arr.shape[0] != n_bands:
        raise DataError(f"{path}: expected an array [{n_bands} bands, H, W], got shape {list(arr.shape)}")
    return arr.astype(np.float32, copy=False)


def band_index(data_bands: Sequence[str], encoder_bands: Sequence[str], missing: str = "error") -> list[int | None]:
    """For each band the encoder expects, its position in the data (None = feed zeros).

    ``missing="error"`` refuses data without one of the encoder's bands, naming them; ``"zeros"`` feeds zeros.
    """
    pos = {b: i for i, b in enumerate(data_bands)}
    absent = [b for b in encoder_bands if b not in pos]
    if absent and missing != "zeros":
        raise DataError(
            f"the data has bands {list(data_bands)} but the encoder expects {list(encoder_bands)}; missing: "
            f"{', '.join(absent)} (zero-filling a missing modality must be asked for)"
        )
    return [pos.get(b) for b in encoder_bands]


@dataclass(frozen=True)
class EvalTransform:
    """The encoder's eval preprocessing: resize the short side to ``size / crop_pct``, center-crop ``size``,
    normalise with ``mean``/``std``. ``desc`` names it in feature-cache keys."""

    size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def desc(self) -> str:
        return (
            f"resize{int(self.size / self.crop_pct)}-{self.interpolation}-center{self.size}-mean{self.mean}"
            f"-std{self.std}"
        )

    def image(self) -> Callable[[Image.Image], torch.Tensor]:
        """timm's eval transform for PIL images (what the authors' eval scripts do for RGB)."""
        from timm.data import create_transform

        return create_transform(
            input_size=(3, self.size, self.size),
            is_training=False,
            interpolation=self.interpolation,
            mean=self.mean,
            std=self.std,
            crop_pct=self.crop_pct,
            crop_mode="center",
        )

    def array(self, x: torch.Tensor) -> torch.Tensor:
        """The same steps on a ``[C, H, W]`` float tensor (multi-band data PIL cannot hold)."""
        short = int(math.floor(self.size / self.crop_pct))
        h, w = x.shape[-2:]
        nh, nw = (short, max(1, int(short * w / h))) if h <= w else (max(1, int(short * h / w)), short)
        mode = "bilinear" if self.interpolation == "bilinear" else self.interpolation
        kwargs = {"align_corners": False, "antialias": True} if mode in ("bilinear", "bicubic") else {}
        x = F.interpolate(x[None], size=(nh, nw), mode=mode, **kwargs)[0]
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        x = x[:, top : top + self.size, left : left + self.size]
        mean = torch.tensor(self.mean, dtype=x.dtype)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype)[:, None, None]
        return (x - mean) / std


class ProbeDataset(Dataset):
    """``(image [C, H, W], target)`` of a :class:`LabelledSplit`, in the encoder's band order.

    ``encoder_bands`` is ``DataConfig.band_order`` (None = an RGB encoder). ``missing`` as :func:`band_index`.
    """

    def __init__(
        self,
        split: LabelledSplit,
        transform: EvalTransform,
        encoder_bands: Sequence[str] | None = None,
        missing: str = "error",
    ) -> None:
        self.split = split
        self.transform = transform
        self.index: list[int | None] | None = None
        if split.bands is None:
            if encoder_bands is not None and tuple(encoder_bands) != RGB:
                raise DataError(
                    f"{split.root}: RGB images, but the encoder expects bands {list(encoder_bands)}; "
                    "give it data with those bands"
                )
            self._image = transform.image()
        else:
            if encoder_bands is None:
                raise DataError(
                    f"{split.root}: {len(split.bands)}-band data ({', '.join(split.bands)}) for an RGB encoder; "
                    "the task must choose an adaptation (e.g. map B04/B03/B02 to RGB)"
                )
            self.index = band_index(split.bands, encoder_bands, missing)

    def __len__(self) -> int:
        return len(self.split)

    def content_digest(self) -> str:
        return self.split.content_digest()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor | int]:
        path = self.split.paths[i]
        t = self.split.targets[i]
        target: torch.Tensor | int = torch.from_numpy(t.astype(np.float32)) if self.split.multilabel else int(t)
        if self.index is None:
            return self._image(load_rgb(path)), target
        assert self.split.bands is not None
        arr = torch.from_numpy(load_array(path, len(self.split.bands)))
        zeros = torch.zeros_like(arr[0])
        x = torch.stack([arr[j] if j is not None else zeros for j in self.index])
        return self.transform.array(x), target


# ------------------------------------------------------------------------------------------------ table layout
def read_bands(root: Path) -> tuple[str, ...] | None:
    f = Path(root) / "bands.txt"
    if not f.is_file():
        return None
    bands = tuple(line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    if not bands or len(set(bands)) != len(bands):
        raise DataError(f"{f}: expected one distinct band name a line")
    return bands


def scan_table(root: Path | str, split: str, classes: tuple[str, ...] | None = None) -> LabelledSplit:
    """Scan ``root/<split>.csv`` (header ``path,<classes...>``; cells 1 / 0 / -1) into a multi-label split.

    Raises :class:`DataError` naming the file and line for a missing file, a header whose classes differ from
    ``classes`` (train's), a value outside {1, 0, -1}, a listed file that is absent, or an array without
    ``bands.txt``.
    """
    root = Path(root)
    table = root / f"{split}.csv"
    if not table.is_file():
        raise DataError(f"{table}: missing split table (expected {root}/{{train,val}}.csv with path,<classes...>)")
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or len(rows[0]) < 2 or rows[0][0] != "path":
        raise DataError(f"{table}: the header must read path,<class 1>,...,<class C>")
    found = tuple(rows[0][1:])
    if classes is not None and found != tuple(classes):
        raise DataError(f"{table}: classes {list(found)} differ from train's {list(classes)}")
    bands = read_bands(root)
    paths: list[Path] = []
    targets = np.zeros((len(rows) - 1, len(found)), dtype=np.int8)
    for n, row in enumerate(rows[1:]):
        line = n + 2
        if len(row) != len(found) + 1:
            raise DataError(f"{table}: line {line} has {len(row)} cells, the header {len(found) + 1}")
        path = root / row[0]
        if not path.is_file():
            raise DataError(f"{table}: line {line} lists {path}, which does not exist")
        if path.suffix in ARRAY_SUFFIXES and bands is None:
            raise DataError(f"{path}: an array needs {root / 'bands.txt'} naming its bands")
        try:
            values = [int(v) for v in row[1:]]
        except ValueError:
            raise DataError(f"{table}: line {line}: labels must be 1, 0 or -1") from None
        if any(v not in (1, 0, -1) for v in values):
            raise DataError(f"{table}: line {line}: labels must be 1, 0 or -1")
        targets[n] = values
        paths.append(path)
    if not paths:
        raise DataError(f"{table}: no samples")
    is_array = paths[0].suffix in ARRAY_SUFFIXES
    return LabelledSplit(root, split, found, tuple(paths), targets, bands if is_array else None)
