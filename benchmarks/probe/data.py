"""Labelled splits for frozen-feature probes, delivered in the encoder's band order and scaling.

A :class:`LabelledSplit` is what every data layout is scanned into: file paths, class names and targets —
``[N]`` class indices (single-label) or ``[N, C]`` with 1 / 0 / -1 = positive / negative / unknown (multi-label,
partial labels). Files are RGB images, or ``.npy`` arrays ``[bands, H, W]`` whose band names the split declares; a
layout whose samples are several files (BigEarthNet: a folder of GeoTIFFs per sample) gives an :class:`ArraySource`
that reads sample ``i`` as such an array and names the files it reads (which fingerprints and content hashes cover).

:class:`ProbeDataset` reads a sample and hands the encoder ``[C, H, W]`` float tensors in *its* declared order
(``DataConfig.band_order``; RGB when None) — bands are matched by name, never by position, and a band the data
lacks is an error unless the caller asks for zeros (a missing modality, as DINO-MM's sensor drop feeds it). Raw
band values are scaled as the encoder declares (``DataConfig.band_scaling``: :func:`apply_stretch`) before a missing
band is zero-filled. An RGB encoder sees multi-band data only through a :class:`ChannelMap` the task chooses
(three named bands, or the bands folded as its input convolution tiled over them). Images go through timm's eval
transform built from the encoder's data config; arrays through the same resize / center-crop / normalise steps
done on tensors (:class:`EvalTransform`), or a random-resized-crop + flip for training (:class:`TrainTransform`).

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
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from methods.base import BandStretch
from methods.errors import DataError

RGB = ("R", "G", "B")
ARRAY_SUFFIXES = (".npy",)


class ArraySource(Protocol):
    """Reads the samples of a layout whose sample is several files (must be picklable for DataLoader workers)."""

    def read(self, i: int) -> np.ndarray:
        """Sample ``i`` as ``[len(bands), H, W]`` float32, bands in the split's ``bands`` order."""
        ...

    def files(self, i: int) -> Sequence[Path]:
        """Every file sample ``i`` is read from (under the split's root)."""
        ...


@dataclass(frozen=True, eq=False)
class LabelledSplit:
    """One scanned split. ``paths[i]`` has target ``targets[i]``; ``bands`` names the channels of array files
    (None: RGB images)."""

    root: Path  # the folder paths are fingerprinted relative to
    name: str
    classes: tuple[str, ...]
    paths: tuple[Path, ...]  # one per sample: its file (with a source: the folder or file that names it)
    targets: np.ndarray  # [N] int64 or [N, C] int8 in {1, 0, -1}
    bands: tuple[str, ...] | None = None
    source: ArraySource | None = None  # reads samples made of several files (paths[i] then only names sample i)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.targets):
            raise ValueError(f"{self.root}: {len(self.paths)} paths but {len(self.targets)} targets")
        if self.multilabel and self.targets.shape[1] != len(self.classes):
            raise ValueError(
                f"{self.root}: targets have {self.targets.shape[1]} columns for {len(self.classes)} classes"
            )
        if self.source is not None and self.bands is None:
            raise ValueError(f"{self.root}: a split read from an array source must name its bands")

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
        for i, (path, target) in enumerate(zip(self.paths, self.targets)):
            label = ",".join(map(str, target.tolist())) if self.multilabel else str(int(target))
            if self.source is None:
                h.update(f"\n{path.relative_to(self.root).as_posix()}\t{path.stat().st_size}\t{label}".encode())
            else:
                files = "|".join(
                    f"{f.relative_to(self.root).as_posix()}:{f.stat().st_size}" for f in self.source.files(i)
                )
                h.update(f"\n{files}\t{label}".encode())
        return h.hexdigest()[:16]

    @cached_property
    def _content(self) -> str:
        from benchmarks.features import content_digest

        if self.source is None:
            return content_digest(self.paths)
        return content_digest([f for i in range(len(self)) for f in self.source.files(i)])

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> LabelledSplit:
        """The samples at ``indices`` (in that order), as a split of their own (``name`` defaults to this one's)."""
        idx = [int(i) for i in indices]
        source = None if self.source is None else SubsetSource(self.source, tuple(idx))
        paths = tuple(self.paths[i] for i in idx)
        return LabelledSplit(self.root, name or self.name, self.classes, paths, self.targets[idx], self.bands, source)

    def content_digest(self) -> str:
        """A fast hash of the files' bytes (what the feature cache verifies on reuse); computed once per object."""
        return self._content

    def fingerprint(self) -> str:
        """A content fingerprint: relative paths, sizes and targets (not mtimes, which change on copy).
        Computed once per split object: every cache key and record of a run reuses it."""
        return self._fingerprint


@dataclass(frozen=True)
class SubsetSource:
    """The source of a subset: its sample ``i`` is sample ``indices[i]`` of ``parent``."""

    parent: ArraySource
    indices: tuple[int, ...]

    def read(self, i: int) -> np.ndarray:
        return self.parent.read(self.indices[i])

    def files(self, i: int) -> Sequence[Path]:
        return self.parent.files(self.indices[i])


def nested_fraction(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``int(fraction * n)`` (at least 1) of ``n`` samples, drawn without replacement from a
    permutation seeded by ``seed``: the subsets of one seed are nested (1 % within 10 % within 100 %)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction {fraction}: expected a value in (0, 1]")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: max(1, int(fraction * n))])


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


def apply_stretch(
    x: np.ndarray, names: Sequence[str], stretch: BandStretch, present: Sequence[bool] | None = None
) -> np.ndarray:
    """Scale raw bands ``x [C, H, W]`` (channel ``c`` = band ``names[c]``, the order ``stretch`` is declared in) to
    [0, 1] as :class:`~methods.base.BandStretch` states: per-image quantile clipping of ``stretch.clip_bands``,
    then ``mean +- n_std * std`` -> 0..255, clipped, truncated to integers when ``quantize``, / 255. Channels not
    ``present`` (a missing modality) are left at 0, as the authors zero them after scaling."""
    if len(names) != len(stretch.mean) or x.shape[0] != len(names):
        raise ValueError(f"band scaling for {len(stretch.mean)} bands, data with {x.shape[0]} ({list(names)})")
    out = np.zeros(x.shape, dtype=np.float32)
    for c, name in enumerate(names):
        if present is not None and not present[c]:
            continue
        v = x[c].astype(np.float64)
        if name in stretch.clip_bands:
            lo_q, hi_q = np.quantile(v, stretch.quantiles)
            v = np.clip(v, lo_q, hi_q)
        lo = stretch.mean[c] - stretch.n_std * stretch.std[c]
        v = np.clip((v - lo) / (2 * stretch.n_std * stretch.std[c]) * 255.0, 0.0, 255.0)
        if stretch.quantize:
            v = np.floor(v)
        out[c] = v / 255.0
    return out


@dataclass(frozen=True)
class ChannelMap:
    """How an encoder with 3 input channels sees multi-band data (the task chooses it; the encoder has no band
    order): ``bands`` are read by name, scaled by ``scaling`` (raw values -> [0, 1]; None: as stored), resized and
    normalised, each with the mean/std of the channel it feeds; then output channel ``k`` is
    ``sum_c weights[k][c] * band_c``. ``name`` goes into cache keys and probe cards."""

    name: str
    bands: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]  # [3, len(bands)]
    scaling: BandStretch | None = None

    def __post_init__(self) -> None:
        if any(len(row) != len(self.bands) for row in self.weights):
            raise ValueError(f"channel map {self.name}: every row needs {len(self.bands)} weights")

    @classmethod
    def select(cls, bands: Sequence[str], scaling: BandStretch | None = None, name: str = "rgb") -> ChannelMap:
        """Band ``k`` of ``bands`` feeds channel ``k`` (e.g. B04/B03/B02 -> R/G/B)."""
        n = len(bands)
        return cls(name, tuple(bands), tuple(tuple(float(c == k) for c in range(n)) for k in range(n)), scaling)

    @classmethod
    def tile(
        cls, bands: Sequence[str], scaling: BandStretch | None = None, channels: int = 3, name: str = "tile"
    ) -> ChannelMap:
        """The encoder's input convolution repeated over the C bands and scaled by 3 / C (timm's
        ``adapt_input_conv``: filter slice ``c % 3`` serves band ``c``). The first layer being linear, that equals
        feeding channel ``k`` the sum of its bands times 3 / C, which is what this map computes (one band: the
        filters summed, i.e. the band fed to every channel, as timm does)."""
        n = len(bands)
        if n == 1:
            return cls(name, tuple(bands), ((1.0,),) * channels, scaling)
        w = tuple(tuple(channels / n if c % channels == k else 0.0 for c in range(n)) for k in range(channels))
        return cls(name, tuple(bands), w, scaling)

    def source_channel(self, c: int) -> int:
        """The output channel band ``c`` feeds (whose mean/std normalise it)."""
        return max(range(len(self.weights)), key=lambda k: abs(self.weights[k][c]))

    @property
    def desc(self) -> str:
        return f"{self.name}:{','.join(self.bands)}:{self.weights}:{self.scaling}"


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


@dataclass(frozen=True)
class TrainTransform:
    """Training augmentation: RandomResizedCrop to ``size`` (``scale``, ``ratio``, bilinear), horizontal flip with
    probability 0.5 when ``hflip``, then normalise with ``mean``/``std`` — torchvision's and cvtorchvision's
    defaults, as DINO-MM's scripts use them. Random state comes from torch's global generator."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True

    @property
    def desc(self) -> str:
        return f"rrc{self.size}-scale{self.scale}-flip{self.hflip}-mean{self.mean}-std{self.std}"

    def image(self) -> Callable[[Image.Image], torch.Tensor]:
        from torchvision import transforms as T

        steps = [T.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio)]
        steps += [T.RandomHorizontalFlip()] if self.hflip else []
        return T.Compose([*steps, T.ToTensor(), T.Normalize(self.mean, self.std)])

    def array(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode, RandomResizedCrop
        from torchvision.transforms import functional as TF

        top, left, h, w = RandomResizedCrop.get_params(x, list(self.scale), list(self.ratio))
        x = TF.resized_crop(x, top, left, h, w, [self.size, self.size], InterpolationMode.BILINEAR, antialias=True)
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        mean = torch.tensor(self.mean, dtype=x.dtype)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype)[:, None, None]
        return (x - mean) / std


class ProbeDataset(Dataset):
    """``(image [C, H, W], target)`` of a :class:`LabelledSplit`, in the encoder's band order.

    ``encoder_bands`` is ``DataConfig.band_order`` (None = an RGB encoder) and ``scaling`` its
    ``DataConfig.band_scaling``; ``missing`` as :func:`band_index`. Multi-band data reaches an RGB encoder only
    through a ``channel_map`` (then ``transform`` normalises each of its bands, and its own ``scaling`` applies).
    ``transform`` is an :class:`EvalTransform` or a :class:`TrainTransform`.
    """

    def __init__(
        self,
        split: LabelledSplit,
        transform: EvalTransform | TrainTransform,
        encoder_bands: Sequence[str] | None = None,
        missing: str = "error",
        scaling: BandStretch | None = None,
        channel_map: ChannelMap | None = None,
    ) -> None:
        self.split = split
        self.transform = transform
        self.index: list[int | None] | None = None
        self.channel_map = channel_map
        self.scaling = scaling
        self.names: tuple[str, ...] = ()
        if split.bands is None:
            if encoder_bands is not None and tuple(encoder_bands) != RGB:
                raise DataError(
                    f"{split.root}: RGB images, but the encoder expects bands {list(encoder_bands)}; "
                    "give it data with those bands"
                )
            self._image = transform.image()
            return
        if channel_map is not None:
            if encoder_bands is not None:
                raise ValueError("a channel map adapts multi-band data to an RGB encoder; this one has a band order")
            self.names, self.scaling = channel_map.bands, channel_map.scaling
        elif encoder_bands is None:
            raise DataError(
                f"{split.root}: {len(split.bands)}-band data ({', '.join(split.bands)}) for an RGB encoder; "
                "the task must choose an adaptation (e.g. map B04/B03/B02 to RGB)"
            )
        else:
            self.names = tuple(encoder_bands)
        if self.scaling is not None and len(self.scaling.mean) != len(self.names):
            raise ValueError(f"band scaling for {len(self.scaling.mean)} bands, {len(self.names)} bands to feed")
        self.index = band_index(split.bands, self.names, missing)
        self._fold = (
            None if channel_map is None else torch.tensor(channel_map.weights, dtype=torch.float32)
        )  # [3, len(bands)]

    @property
    def desc(self) -> str:
        """What besides the transform determines the tensors (feature-cache keys include it)."""
        if self.index is None:
            return ""
        out = f"-bands{self.index}"
        if self.scaling is not None:
            out += f"-scaling{self.scaling}"
        if self.channel_map is not None:
            out += f"-map{self.channel_map.desc}"
        return out

    def __len__(self) -> int:
        return len(self.split)

    def content_digest(self) -> str:
        return self.split.content_digest()

    def _read(self, i: int) -> np.ndarray:
        assert self.split.bands is not None
        n = len(self.split.bands)
        if self.split.source is None:
            return load_array(self.split.paths[i], n)
        arr = np.asarray(self.split.source.read(i), dtype=np.float32)
        if arr.ndim != 3 or arr.shape[0] != n:
            raise DataError(f"{self.split.paths[i]}: read {list(arr.shape)}, expected [{n} bands, H, W]")
        return arr

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor | int]:
        t = self.split.targets[i]
        target: torch.Tensor | int = torch.from_numpy(t.astype(np.float32)) if self.split.multilabel else int(t)
        if self.index is None:
            return self._image(load_rgb(self.split.paths[i])), target
        arr = self._read(i)
        x = np.zeros((len(self.index), *arr.shape[1:]), dtype=np.float32)
        for k, j in enumerate(self.index):
            if j is not None:
                x[k] = arr[j]
        if self.scaling is not None:  # scaled before zero-filling: a missing band is 0 in the scaled space
            x = apply_stretch(x, self.names, self.scaling, [j is not None for j in self.index])
        out = self.transform.array(torch.from_numpy(x))
        if self._fold is not None:
            out = torch.einsum("kc,chw->khw", self._fold, out)
        return out, target


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
