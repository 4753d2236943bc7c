"""Partial-label masks: each training label kept with probability p, drawn once from the seed, nested across p.

One uniform draw ``u[i, c]`` per (image, class) decides every proportion: the label is kept at p iff ``u < p``, so
a label kept at p is kept at every larger p (DualCoOp's ``torch.rand(N, C) < p``, but seeded and shared). With
``min_known = k > 0`` each image also keeps its k known labels with the smallest draws whatever p — still nested,
since those are the same labels at every p. Labels already unknown (-1) in the data stay unknown.
"""

from __future__ import annotations

import numpy as np


def label_draws(n: int, c: int, seed: int) -> np.ndarray:
    """``[n, c]`` float64 uniform draws in [0, 1) from ``seed`` (numpy's PCG64)."""
    return np.random.default_rng([seed, 0x5EED]).random((n, c))


def partial_targets(targets: np.ndarray, p: float, draws: np.ndarray, min_known: int = 1) -> np.ndarray:
    """``targets [N, C]`` in {1, 0, -1} with the labels not kept at proportion ``p`` set to -1 (int8)."""
    known = targets >= 0
    keep = known & (draws < p)
    if min_known > 0:
        # Rank each image's known labels by their draw; the first min_known are kept whatever p.
        ranked = np.where(known, draws, np.inf)
        order = np.argsort(ranked, axis=1, kind="stable")[:, :min_known]
        forced = np.zeros_like(keep)
        np.put_along_axis(forced, order, True, axis=1)
        keep |= forced & known
    out = np.where(keep, targets, -1).astype(np.int8)
    return out


def mask_stats(full: np.ndarray, masked: np.ndarray) -> dict[str, float]:
    """Kept fraction of the known labels, and how many images have no known label left."""
    known = full >= 0
    kept = masked >= 0
    return {
        "kept_fraction": float(kept.sum() / max(1, known.sum())),
        "images_all_unknown": float((~kept.any(axis=1)).sum()),
    }
