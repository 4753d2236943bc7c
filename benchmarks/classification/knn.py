"""Weighted k-NN on L2-normalised global features: DINO's ``eval_knn.py`` protocol.

For each val image the k most cosine-similar train images vote for their class with weight
``exp(similarity / T)``; top-1/top-5 are read off the summed votes. k = 20 is the headline.
"""

from __future__ import annotations

import torch

from benchmarks.classification.common import load_splits, require_train_size
from benchmarks.classification.protocols import KnnProtocol
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.engine import as_tensor, dataset_info, global_features, transform_for

__all__ = ["KnnHarness", "KnnProtocol", "knn_classify"]


@torch.no_grad()
def knn_classify(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int,
    temperature: float,
    num_classes: int,
    chunk: int = 256,
) -> tuple[float, float]:
    """Top-1/top-5 (%) of the weighted vote. Features ``[N, D]`` must already be L2-normalised."""
    k = min(k, train_x.shape[0])
    correct1 = correct5 = 0.0
    for s in range(0, test_x.shape[0], chunk):
        sim = test_x[s : s + chunk] @ train_x.T  # [b, N_train] cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, dtype=sim.dtype, device=sim.device)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
        pred = votes.topk(min(5, num_classes), dim=1).indices
        target = test_y[s : s + chunk, None]
        correct1 += (pred[:, :1] == target).sum().item()
        correct5 += (pred == target).any(dim=1).sum().item()
    n = test_x.shape[0]
    return 100.0 * correct1 / n, 100.0 * correct5 / n


class KnnHarness(Harness):
    """The ``knn`` task: features from ``forward_global``, extracted once per split through the cache."""

    def run(self, ctx: RunContext, protocol: KnnProtocol) -> RunOutput:
        train, val = load_splits(ctx.data_root)
        require_train_size(train, protocol.headline_k, f"the headline k={protocol.headline_k} of the k-NN vote needs")
        encoder = ctx.encoder
        kw = {"resolution": protocol.resolution, "device": ctx.device, "cache_dir": ctx.cache_dir}
        feats = [global_features(encoder, s, progress=ctx.progress, **kw) for s in (train, val)]
        (tx, ty), (vx, vy) = [
            (torch.nn.functional.normalize(as_tensor(f["global"]).float(), dim=1), as_tensor(f["labels"]).long())
            for f in feats
        ]
        metrics: dict[str, float] = {}
        for k in sorted(set(protocol.ks) | {protocol.headline_k}):
            top1, top5 = knn_classify(tx, ty, vx, vy, k, protocol.temperature, len(train.classes))
            metrics[f"top1_k{k}"], metrics[f"top5_k{k}"] = top1, top5
        metrics["top1"] = metrics[f"top1_k{protocol.headline_k}"]
        metrics["top5"] = metrics[f"top5_k{protocol.headline_k}"]
        probe = {
            "features": f"forward_global ({encoder.spec.global_pool})",
            "normalisation": "L2",
            "resolution": transform_for(encoder, protocol.resolution).size,
            "n_train": len(train),
            "n_classes": len(train.classes),
            "effective_k": {str(k): min(k, len(train)) for k in protocol.ks},
        }
        return RunOutput(metrics=metrics, dataset=dataset_info(ctx.data_root, train, val), probe=probe)
