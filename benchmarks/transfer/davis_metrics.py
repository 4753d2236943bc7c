"""J (region IoU) and F (boundary F-measure) as the official ``davis2017-evaluation`` package computes them (numpy).

Written from davisvideochallenge/davis2017-evaluation at commit ac7c43f: ``davis2017/metrics.py``
(``db_eval_iou``, ``f_measure``, ``_seg2bmap``), ``davis2017/utils.py`` (``db_statistics``) and
``davis2017/evaluation.py`` (semi-supervised: every object of the first annotation, frames 1 .. T-2). The package
dilates boundaries with OpenCV and scikit-image's ``disk``; here the same disk dilation is computed exactly with
prefix sums (one horizontal run per row of the disk), so neither library is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def region_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """J of two boolean masks ``[H, W]``: |gt & pred| / |gt | pred|, and 1 when both are empty (``db_eval_iou``)."""
    if gt.shape != pred.shape:
        raise ValueError(f"masks differ in shape: {gt.shape} vs {pred.shape}")
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union


def boundary_map(seg: np.ndarray) -> np.ndarray:
    """``_seg2bmap``: the 1-pixel boundary ``[H, W]`` of a mask, offset half a pixel towards the origin.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour (pixels beyond the
    image count as background); the last row compares east only, the last column south only, the corner is 0."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of ``mask [H, W]`` by the disk {(dy, dx): dy^2 + dx^2 <= radius^2} (skimage's ``disk``),
    pixels outside the image contributing nothing (OpenCV's default border for ``dilate``).

    The disk is a union of horizontal runs, one per row offset dy of half-width floor(sqrt(r^2 - dy^2)); a run is a
    window sum over the row's prefix sums, so the cost is O(H W r) whatever the disk's area."""
    h, w = mask.shape
    m = mask.astype(bool)
    if radius <= 0:
        return m.copy()
    csum = np.zeros((h, w + 1), dtype=np.int32)
    np.cumsum(m, axis=1, out=csum[:, 1:])
    cols = np.arange(w)
    runs: dict[int, np.ndarray] = {}
    out = np.zeros_like(m)
    for dy in range(-min(radius, h - 1), min(radius, h - 1) + 1):
        half = math.isqrt(radius * radius - dy * dy)
        if half not in runs:  # rows of the input dilated horizontally by [-half, half]
            lo, hi = np.clip(cols - half, 0, w), np.clip(cols + half + 1, 0, w)
            runs[half] = (csum[:, hi] - csum[:, lo]) > 0
        run = runs[half]
        # out[y] |= run[y + dy]: a source row y + dy reaches the output row y.
        if dy >= 0:
            out[: h - dy] |= run[dy:]
        else:
            out[-dy:] |= run[: h + dy]
    return out


def boundary_radius(shape: tuple[int, int], bound_th: float = 0.008) -> int:
    """The matching tolerance in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * ||(H, W)||)``."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th >= 1 is a pixel count; got {bound_th}")
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm(shape)))


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> float:
    """F of two boolean masks ``[H, W]`` (``f_measure``): boundary precision and recall within the tolerance disk.

    Empty boundaries: none predicted and some true -> P 1, R 0; some predicted and none true -> P 0, R 1; neither ->
    P = R = 1. F = 2PR / (P + R), 0 when P + R = 0."""
    if gt.shape != pred.shape:
        raise ValueError(f"masks differ in shape: {gt.shape} vs {pred.shape}")
    fg, gtb = boundary_map(pred), boundary_map(gt)
    n_fg, n_gt = int(np.count_nonzero(fg)), int(np.count_nonzero(gtb))
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        precision, recall = (1.0, 0.0) if n_fg == 0 else (0.0, 1.0)
    else:
        r = boundary_radius(gt.shape, bound_th)
        # Only pixels within r of a boundary can match: dilate inside the boundaries' bounding box (+ r), exactly.
        ys, xs = np.nonzero(fg | gtb)
        y0, y1 = max(ys.min() - r, 0), min(ys.max() + r + 1, gt.shape[0])
        x0, x1 = max(xs.min() - r, 0), min(xs.max() + r + 1, gt.shape[1])
        fg, gtb = fg[y0:y1, x0:x1], gtb[y0:y1, x0:x1]
        precision = np.count_nonzero(fg & disk_dilate(gtb, r)) / n_fg
        recall = np.count_nonzero(gtb & disk_dilate(fg, r)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class ObjectScore:
    """One object of one sequence: per-frame J and F over the scored frames, and their means (``db_statistics``)."""

    sequence: str
    object_id: int
    j: tuple[float, ...]
    f: tuple[float, ...]

    @property
    def j_mean(self) -> float:
        return float(np.nanmean(self.j))

    @property
    def f_mean(self) -> float:
        return float(np.nanmean(self.f))

    @property
    def key(self) -> str:
        """``<sequence>_<object id>``, the official per-sequence table's row name."""
        return f"{self.sequence}_{self.object_id}"


def score_sequence(
    name: str, gts: list[np.ndarray], preds: list[np.ndarray], n_objects: int, bound_th: float = 0.008
) -> list[ObjectScore]:
    """J and F per object ``1..n_objects`` over the given frames (the caller passes frames 1 .. T-2).

    ``gts`` / ``preds``: index maps ``[H, W]`` per frame; ground-truth void (255) counts as background. A predicted
    id above ``n_objects`` is an error (the official tool stops there too); fewer predicted ids score as empty."""
    if len(gts) != len(preds):
        raise ValueError(f"{name}: {len(gts)} ground-truth frames but {len(preds)} predictions")
    j = np.zeros((n_objects, len(gts)))
    f = np.zeros((n_objects, len(gts)))
    for t, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        gt = np.where(gt == 255, 0, gt)
        for k in range(n_objects):
            g, p = gt == k + 1, pred == k + 1
            j[k, t] = region_iou(g, p)
            f[k, t] = boundary_f(g, p, bound_th)
    return [ObjectScore(name, k + 1, tuple(j[k]), tuple(f[k])) for k in range(n_objects)]


def summarise(scores: list[ObjectScore]) -> dict[str, float]:
    """``J_mean``, ``F_mean`` (means over objects of their per-frame means) and ``JF_mean``, in percent."""
    if not scores:
        raise ValueError("no objects to score")
    j = float(np.mean([s.j_mean for s in scores]))
    f = float(np.mean([s.f_mean for s in scores]))
    return {"JF_mean": 100 * (j + f) / 2, "J_mean": 100 * j, "F_mean": 100 * f}
