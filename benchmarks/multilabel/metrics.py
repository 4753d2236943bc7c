"""Multi-label metrics: macro mAP (the probe engine's) and DualCoOp's overall precision / recall / F1 at top k.

mAP is :func:`benchmarks.probe.heads.multilabel_ap`: per class the non-interpolated average precision (the mean of
the precisions at the ranks of its positives, as DualCoOp's ``utils/helper.py`` and sklearn's
``average_precision_score`` compute it), averaged over the classes that have a positive; unknown labels (-1) are
dropped. Top-k (DualCoOp's ``calc_F1``, from the zero-shot literature): every image predicts its k highest-scoring
labels; over all images, precision = hits / predictions, recall = hits / positives, F1 their harmonic mean.
"""

from __future__ import annotations

import torch

from benchmarks.probe.heads import multilabel_ap

__all__ = ["multilabel_ap", "topk_prf"]


@torch.no_grad()
def topk_prf(scores: torch.Tensor, y: torch.Tensor, k: int) -> tuple[float, float, float]:
    """``(precision, recall, F1)`` in % of the top-``k`` labels of ``scores [N, C]`` against ``y [N, C]`` (1 =
    positive). k is capped at C. An F1 of two zeros is 0."""
    k = min(k, scores.shape[1])
    top = scores.float().topk(k, dim=1).indices  # [N, k]
    pos = y == 1
    hits = float(pos.gather(1, top).sum())
    predictions = top.numel()
    positives = float(pos.sum())
    precision = hits / predictions if predictions else 0.0
    recall = hits / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return 100.0 * precision, 100.0 * recall, 100.0 * f1
