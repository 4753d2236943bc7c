"""Copy-detection arithmetic as DINO's ``eval_copy_detection.py`` does it: PCA whitening, top-k search, Holidays AP.

numpy only. ``score_ap_from_ranks`` is the Holidays evaluation package's ``score_ap_from_ranks_1`` (trapezoids
under the precision-recall curve); :class:`Whitening` is DINO's ``utils.PCA`` as the script trains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def score_ap_from_ranks(ranks: Sequence[int], n_positives: int) -> float:
    """AP of one query: ``ranks`` are the 0-based ranks of its positives in the returned list (ascending),
    ``n_positives`` how many exist. Each found positive adds a trapezoid of width 1 / n_positives between the
    precision before it (1 at rank 0, else found / rank) and after it ((found + 1) / (rank + 1))."""
    if n_positives <= 0:
        raise ValueError("a query needs at least one positive")
    ap = 0.0
    step = 1.0 / n_positives
    for found, rank in enumerate(ranks):
        before = 1.0 if rank == 0 else found / rank
        after = (found + 1) / (rank + 1)
        ap += (before + after) * step / 2.0
    return ap


def mean_ap(ranked: np.ndarray, positives: Sequence[Sequence[int]]) -> float:
    """mAP in percent: ``ranked [Q, k]`` database indices per query, best first; ``positives[q]`` the indices that
    are correct for query q. Positives beyond the returned k count as not found."""
    if len(ranked) != len(positives):
        raise ValueError(f"{len(ranked)} ranked lists for {len(positives)} queries")
    total = 0.0
    for row, pos in zip(ranked, positives, strict=True):
        wanted = set(pos)
        total += score_ap_from_ranks([r for r, j in enumerate(row) if int(j) in wanted], len(wanted))
    return 100.0 * total / len(positives)


@dataclass(frozen=True)
class Whitening:
    """``x -> diag(eigval^-power) V^T (x - mean)`` learned on a feature set (DINO's ``PCA(dim, whit=power)``)."""

    mean: np.ndarray  # [D]
    projection: np.ndarray  # [k, D]

    @classmethod
    def fit(cls, feats: np.ndarray, power: float = 0.5, dim: int | None = None, rel_eps: float = 1e-5) -> Whitening:
        """From ``feats [N, D]``: eigen-decomposition of the *uncentred* second moment ``feats^T feats / N`` (as
        DINO's script computes the covariance), eigenvalues below ``rel_eps`` x the largest raised to it, the
        ``dim`` leading components (None: all). Computed in float64."""
        x = np.asarray(feats, dtype=np.float64)
        second = x.T @ x / x.shape[0]
        vals, vecs = np.linalg.eigh(second)
        vals = np.maximum(vals, vals.max() * rel_eps)
        order = np.argsort(vals)[::-1][: dim or len(vals)]
        vals, vecs = vals[order], vecs[:, order]
        return cls(mean=x.mean(axis=0), projection=(vecs / vals**power).T)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``[N, D] -> [N, k]``."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.projection.T


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def search(queries: np.ndarray, database: np.ndarray, k: int) -> np.ndarray:
    """``[Q, min(k, N)]`` indices of the most cosine-similar database rows per query, best first (ties: lower
    index first)."""
    sim = l2_normalise(queries) @ l2_normalise(database).T
    k = min(k, database.shape[0])
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]
