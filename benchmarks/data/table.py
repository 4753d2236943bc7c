"""Synthetic sets in the probe engine's generic table layout (:func:`benchmarks.probe.data.scan_table`).

- ``multilabel``: RGB JPEGs, each with one to three of four coloured shapes; a label per shape present, and in
  train a seeded 10 % of the labels unknown (-1), as partial-label training sets have.
- ``multiband``: 14-band ``.npy`` arrays named like Sentinel-1/2 bands, stored in torchgeo's order (S1 first,
  then S2 with B8A after B08) — not DINO-MM's (S2 first) — so reading them exercises the by-name band mapping.
  Values are in sensor units (BigEarthNet's per-band mean plus noise; S1 in dB), so an encoder's declared band
  scaling (DINO-MM's stretch) sees realistic inputs; each label raises its own pair of bands by a 2-std blob.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# torchgeo's BigEarthNet order: S1 (VH, VV) then S2 sorted by name with B8A after B08 (protocols_wave2.md).
MULTIBAND_BANDS = ("VH", "VV", "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
_SHAPE_CLASSES = ("red_disc", "green_square", "blue_triangle", "yellow_cross")
_BAND_CLASSES = ("water", "forest", "urban", "crops")


def _write_table(out: Path, split: str, classes: tuple[str, ...], rows: list[tuple[str, list[int]]]) -> None:
    with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", *classes])
        for path, labels in rows:
            w.writerow([path, *labels])


def _labels(rng: random.Random, n_classes: int) -> list[int]:
    k = rng.randint(1, min(3, n_classes))
    on = set(rng.sample(range(n_classes), k))
    return [1 if c in on else 0 for c in range(n_classes)]


def _hide(rng: random.Random, labels: list[int], fraction: float) -> list[int]:
    return [-1 if rng.random() < fraction else v for v in labels]


def synth_multilabel(out: Path | str, seed: int = 0, n_train: int = 48, n_val: int = 24, size: int = 64) -> Path:
    """Write ``out/{train,val}.csv`` and ``out/images/*.jpg`` (see the module docstring)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    colours = ((220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 40))
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for i in range(n):
            labels = _labels(rng, len(_SHAPE_CLASSES))
            img = Image.new("RGB", (size, size), (235, 235, 235))
            d = ImageDraw.Draw(img)
            for c, on in enumerate(labels):
                if not on:
                    continue
                r = size // 6
                cx, cy = (size // 4 + (c % 2) * size // 2, size // 4 + (c // 2) * size // 2)
                cx += rng.randint(-3, 3)
                cy += rng.randint(-3, 3)
                if c == 0:
                    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colours[c])
                elif c == 1:
                    d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colours[c])
                elif c == 2:
                    d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colours[c])
                else:
                    d.rectangle((cx - r, cy - 2, cx + r, cy + 2), fill=colours[c])
                    d.rectangle((cx - 2, cy - r, cx + 2, cy + r), fill=colours[c])
            name = f"images/{split}_{i:04d}.jpg"
            img.save(out / name, quality=92)
            rows.append((name, _hide(rng, labels, 0.1) if split == "train" else labels))
        _write_table(out, split, _SHAPE_CLASSES, rows)
    return out


def synth_multiband(out: Path | str, seed: int = 0, n_train: int = 48, n_val: int = 24, size: int = 32) -> Path:
    """Write ``out/bands.txt``, ``out/{train,val}.csv`` and ``out/patches/*.npy`` ``[14, size, size]`` float32."""
    out = Path(out)
    (out / "patches").mkdir(parents=True, exist_ok=True)
    (out / "bands.txt").write_text("\n".join(MULTIBAND_BANDS) + "\n", encoding="utf-8")
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    # Label c shows in two bands: one S2 band and, for two of the labels, one S1 band too.
    signature = {0: ("B02", "VV"), 1: ("B08", "B8A"), 2: ("B11", "VH"), 3: ("B04", "B05")}
    from benchmarks.data.bigearthnet import BAND_MEAN, BAND_STD

    mean = np.array([BAND_MEAN[b] for b in MULTIBAND_BANDS], dtype=np.float32)[:, None, None]
    std = np.array([BAND_STD[b] for b in MULTIBAND_BANDS], dtype=np.float32)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size]
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for i in range(n):
            labels = _labels(rng, len(_BAND_CLASSES))
            noise = nrng.normal(0.0, 0.3, size=(len(MULTIBAND_BANDS), size, size)).astype(np.float32)
            arr = mean + noise * std
            for c, on in enumerate(labels):
                if on:
                    cy, cx = rng.randint(size // 4, 3 * size // 4), rng.randint(size // 4, 3 * size // 4)
                    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 5) ** 2)).astype(np.float32)
                    for band in signature[c]:
                        k = MULTIBAND_BANDS.index(band)
                        arr[k] += 2.0 * blob * std[k, 0, 0]
            name = f"patches/{split}_{i:04d}.npy"
            np.save(out / name, arr)
            rows.append((name, labels))
        _write_table(out, split, _BAND_CLASSES, rows)
    return out
