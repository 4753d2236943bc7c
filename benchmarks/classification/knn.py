"""Weighted k-NN on L2-normalised global features: DINO's ``eval_knn.py`` protocol.

For each val image the k most cosine-similar train images vote for their class with weight
``exp(similarity / T)``; top-1/top-5 are read off the summed votes. k = 20 is the headline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from benchmarks.classification.common import as_tensor, dataset_info, extract_split, load_splits, transform_for
from benchmarks.harness import Harness, RunOutput
from benchmarks.protocol import Protocol
from benchmarks.records import MetricMeta
from methods import Encoder


@dataclass(frozen=True)
class KnnProtocol(Protocol):
    NAME: ClassVar[str] = "dino-knn"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 64}

    ks: tuple[int, ...] = (10, 20, 100, 200)
    headline_k: int = 20
    temperature: float = 0.07
    resolution: int | None = None  # None: the encoder's native eval size (224 for most)


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
    correct1 = correct5 = 0
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
    task = "knn"
    protocol_cls = KnnProtocol
    headline = "top1"
    synth_kind = "imagefolder"
    description = "Weighted k-NN (k=20, T=0.07) on L2-normalised global features; ImageFolder train -> val."
    metrics: ClassVar[dict[str, MetricMeta]] = {
        "top1": MetricMeta(),
        "top5": MetricMeta(),
        r"^top1_k\d+$": MetricMeta(),
        r"^top5_k\d+$": MetricMeta(),
    }

    def run(
        self,
        encoder: Encoder,
        data_root: Path,
        out_dir: Path,
        seed: int,
        device: str,
        protocol: KnnProtocol,
        *,
        cache_dir: Path | None = None,
        progress: bool = True,
    ) -> RunOutput:
        train, val = load_splits(data_root)

        def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"global": encoder.forward_global(x)}

        feats = [
            extract_split(encoder, s, fn, "global", protocol.resolution, device, cache_dir, progress)
            for s in (train, val)
        ]
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
        _, _, size = transform_for(encoder, protocol.resolution)
        probe = {
            "features": f"forward_global ({encoder.spec.global_pool})",
            "normalisation": "L2",
            "resolution": size,
            "n_train": len(train.samples),
            "n_classes": len(train.classes),
            "effective_k": {str(k): min(k, len(train.samples)) for k in protocol.ks},
        }
        return RunOutput(metrics=metrics, dataset=dataset_info(data_root, train, val), probe=probe)
