"""Linear probes on frozen, cached features: a dinov2-style grid of heads trained in one pass.

Features of the blocks a protocol needs are extracted once (``Encoder.forward_probe``: per block, the
normalised CLS token and the mean of the normalised patch tokens) and cached. Then every head of the grid —
learning rates x feature recipes (CLS of the last 1 / last 4 blocks, each with or without the avg-pooled patch
tokens, as DINO's ViT-S and ViT-B recipes) — trains on the same mini-batches. The head with the best top-1 on a
held-out part of train is selected; its val top-1 is reported.

Deviation from DINO's ``eval_linear.py`` (stated in the probe card): features are cached from the eval transform,
so heads train without RandomResizedCrop/flip augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from benchmarks.classification.common import as_tensor, dataset_info, extract_split, load_splits, transform_for
from benchmarks.harness import Harness, RunOutput
from benchmarks.progress import progress_bar
from benchmarks.protocol import Protocol
from benchmarks.records import MetricMeta
from methods import Encoder

DINOV2_LRS = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


@dataclass(frozen=True)
class LinearProtocol(Protocol):
    NAME: ClassVar[str] = "linear-grid"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 64, "epochs": 40, "batch_size": 32, "lrs": (1e-2, 1e-1, 1.0)}

    lrs: tuple[float, ...] = DINOV2_LRS  # base lrs, scaled by batch_size / 256 (DINO's rule)
    n_last_blocks: tuple[int, ...] = (1, 4)
    avgpool: tuple[bool, ...] = (False, True)
    epochs: int = 100  # DINO eval_linear
    batch_size: int = 1024  # DINO: 128 per GPU x 8
    momentum: float = 0.9
    weight_decay: float = 0.0
    holdout_fraction: float = 0.1  # of train, per class, for head selection
    resolution: int | None = None


@dataclass(frozen=True)
class PerLayerProtocol(Protocol):
    """One head per block (probe token and avg-pooled patches separately): SDSSL-style per-layer analyses."""

    NAME: ClassVar[str] = "linear-perlayer"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 64, "epochs": 40, "batch_size": 32, "lrs": (1e-1, 1.0)}

    lrs: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    blocks: tuple[int, ...] | None = None  # None: every block
    epochs: int = 100
    batch_size: int = 1024
    momentum: float = 0.9
    weight_decay: float = 0.0
    holdout_fraction: float = 0.1
    resolution: int | None = None


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, holdout) indices: ``fraction`` of each class, at least one image, at most all but one."""
    rng = np.random.default_rng(seed)
    train_idx, hold_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1) if len(idx) > 1 else 0
        hold_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(hold_idx))


def train_head_grid(
    feats: dict[str, torch.Tensor],
    labels: torch.Tensor,
    num_classes: int,
    lrs: tuple[float, ...],
    epochs: int,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    seed: int,
    device: str,
    progress: bool = True,
) -> dict[str, torch.nn.Linear]:
    """Train one linear head per (recipe in ``feats``, lr); return them keyed ``"<recipe>@lr=<lr>"``.

    ``feats[recipe]`` is ``[N, D_recipe]``. All heads of a recipe live in one ``[D, H*C]`` matrix, so a step
    is one matmul per recipe. Per-head learning rates come from scaling each head's loss by its lr under a
    single SGD optimiser with lr 1: with momentum and no weight decay the update is then exactly
    ``lr_h * momentum-buffer(grad_h)``, as if each head had its own optimiser (weight decay is applied per head).
    """
    gen = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    scaled = torch.tensor([lr * batch_size / 256 for lr in lrs], device=device)
    heads = {}
    for recipe, x in feats.items():
        w = torch.nn.Linear(x.shape[1], len(lrs) * num_classes).to(device)
        torch.nn.init.normal_(w.weight, std=0.01, generator=None)  # DINO's LinearClassifier init
        torch.nn.init.zeros_(w.bias)
        heads[recipe] = w
    params = [p for w in heads.values() for p in w.parameters()]
    opt = torch.optim.SGD(params, lr=1.0, momentum=momentum)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch, eta_min=0)
    y_all = labels.to(device)
    with progress_bar(total=epochs, desc="train heads", enabled=progress, unit="epoch") as bar:
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, batch_size):
                idx = perm[s : s + batch_size]
                y = y_all[idx.to(device)]
                loss = 0.0
                for recipe, w in heads.items():
                    logits = w(feats[recipe][idx].to(device, dtype=torch.float32))
                    logits = logits.view(len(idx), len(lrs), num_classes)  # [B, H, C]
                    ce = torch.nn.functional.cross_entropy(
                        logits.permute(0, 2, 1), y[:, None].expand(-1, len(lrs)), reduction="none"
                    ).mean(0)  # [H]
                    loss = loss + (ce * scaled).sum()
                    if weight_decay:
                        wv = w.weight.view(len(lrs), num_classes, -1)
                        loss = loss + 0.5 * weight_decay * (scaled * wv.pow(2).sum(dim=(1, 2))).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            bar.update(1)
    out = {}
    for recipe, w in heads.items():
        for h, lr in enumerate(lrs):
            lin = torch.nn.Linear(w.in_features, num_classes)
            lin.weight.data = w.weight.data.view(len(lrs), num_classes, -1)[h].detach().cpu().clone()
            lin.bias.data = w.bias.data.view(len(lrs), num_classes)[h].detach().cpu().clone()
            out[f"{recipe}@lr={lr:g}"] = lin
    return out


@torch.no_grad()
def accuracy(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Top-1 / top-5 (%) of ``head`` on features ``[N, D]``."""
    logits = head(x.float())
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return (100.0 * (top[:, 0] == y).float().mean().item(), 100.0 * (top == y[:, None]).any(1).float().mean().item())


def _recipes(tok: torch.Tensor, avg: torch.Tensor, protocol: LinearProtocol) -> dict[str, torch.Tensor]:
    """``tok``/``avg``: ``[N, K, d]`` for the last K blocks. DINO ViT-S = cls_last4; ViT-B = cls_last1+avg."""
    out = {}
    for n_last in protocol.n_last_blocks:
        cls = tok[:, -n_last:].flatten(1)
        for pool in protocol.avgpool:
            out[f"cls_last{n_last}" + ("+avg" if pool else "")] = torch.cat([cls, avg[:, -1]], 1) if pool else cls
    return out


class _LinearBase(Harness):
    synth_kind = "imagefolder"

    def _probe_features(
        self,
        encoder: Encoder,
        data_root: Path,
        blocks: list[int],
        protocol,
        device: str,
        cache_dir: Path | None,
        progress: bool,
    ):
        """Per block ``b``: cached arrays ``tok{b}`` and ``avg{b}`` ``[N, d_b]`` for train and val."""
        train, val = load_splits(data_root)
        groups: dict[int, list[int]] = {}  # stages of hierarchical encoders differ in width: one call per width
        for b, width in zip(blocks, encoder.probe_widths(blocks), strict=True):
            groups.setdefault(width, []).append(b)

        def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
            out = {}
            for group in groups.values():
                tok, avg = encoder.forward_probe(x, group)
                for i, b in enumerate(group):
                    out[f"tok{b}"], out[f"avg{b}"] = tok[:, i], avg[:, i]
            return out

        what = "probe:blocks=" + ",".join(map(str, blocks))
        tr, va = (
            extract_split(encoder, s, fn, what, protocol.resolution, device, cache_dir, progress) for s in (train, val)
        )
        return train, val, tr, va

    @staticmethod
    def _fit_grid(
        recipes: dict[str, torch.Tensor],
        y: torch.Tensor,
        fit_idx: np.ndarray,
        num_classes: int,
        protocol: LinearProtocol | PerLayerProtocol,
        seed: int,
        device: str,
        progress: bool,
    ) -> dict[str, torch.nn.Linear]:
        """Train the protocol's grid of heads on the non-held-out part of train."""
        torch.manual_seed(seed)
        return train_head_grid(
            {r: x[fit_idx] for r, x in recipes.items()},
            y[fit_idx],
            num_classes,
            protocol.lrs,
            protocol.epochs,
            protocol.batch_size,
            protocol.momentum,
            protocol.weight_decay,
            seed,
            device,
            progress,
        )


def _stack(f: dict[str, np.ndarray], kind: str, blocks: list[int]) -> torch.Tensor:
    """``[N, K, d]`` from the per-block arrays of equal width."""
    return torch.stack([as_tensor(f[f"{kind}{b}"]) for b in blocks], dim=1)


class LinearHarness(_LinearBase):
    task = "linear"
    protocol_cls = LinearProtocol
    headline = "top1"
    description = "Grid of linear heads (lr x {CLS last 1/4} x {+avgpool}) on cached frozen features."
    metrics: ClassVar[dict[str, MetricMeta]] = {
        "top1": MetricMeta(),
        "top5": MetricMeta(),
        "holdout_top1": MetricMeta(),
    }

    def run(
        self,
        encoder: Encoder,
        data_root: Path,
        out_dir: Path,
        seed: int,
        device: str,
        protocol: LinearProtocol,
        *,
        cache_dir: Path | None = None,
        progress: bool = True,
    ) -> RunOutput:
        nb = encoder.spec.num_blocks
        # Hierarchical encoders have a handful of stages of different widths: only the last one is probed.
        k = min(max(protocol.n_last_blocks), nb) if encoder.spec.family == "vit" else 1
        blocks = list(range(nb - k, nb))
        if k < max(protocol.n_last_blocks):
            protocol = protocol.replace(n_last_blocks=tuple(n for n in protocol.n_last_blocks if n <= k) or (1,))
        train, val, tr, va = self._probe_features(encoder, data_root, blocks, protocol, device, cache_dir, progress)
        y = as_tensor(tr["labels"]).long()
        fit_idx, hold_idx = holdout_split(y.numpy(), protocol.holdout_fraction, seed)
        recipes = _recipes(_stack(tr, "tok", blocks), _stack(tr, "avg", blocks), protocol)
        heads = self._fit_grid(recipes, y, fit_idx, len(train.classes), protocol, seed, device, progress)
        val_recipes = _recipes(_stack(va, "tok", blocks), _stack(va, "avg", blocks), protocol)
        vy = as_tensor(va["labels"]).long()
        grid = {}
        for name, head in heads.items():
            recipe = name.split("@")[0]
            grid[name] = {
                "holdout_top1": accuracy(head, recipes[recipe][hold_idx], y[hold_idx])[0],
                "val_top1": accuracy(head, val_recipes[recipe], vy)[0],
            }
        best = max(grid, key=lambda n: (grid[n]["holdout_top1"], -len(n)))
        top1, top5 = accuracy(heads[best], val_recipes[best.split("@")[0]], vy)
        _, _, size = transform_for(encoder, protocol.resolution)
        probe = {
            "selected_head": best,
            "blocks": blocks,
            "pooling": f"{encoder.spec.probe_pool} token per block",
            "recipes": list(recipes),
            "resolution": size,
            "normalisation": "final norm on every block",
            "augmentation": "none (features cached from the eval transform)",
            "selection": f"best holdout top-1 on {protocol.holdout_fraction:.0%} of train",
        }
        return RunOutput(
            metrics={"top1": top1, "top5": top5, "holdout_top1": grid[best]["holdout_top1"]},
            dataset=dataset_info(data_root, train, val),
            probe=probe,
            extra={"grid": grid},
        )


class PerLayerLinearHarness(_LinearBase):
    task = "linear-perlayer"
    protocol_cls = PerLayerProtocol
    headline = "top1"
    description = "One linear head per block (token and avg-pooled), for per-layer analyses (SDSSL)."
    metrics: ClassVar[dict[str, MetricMeta]] = {
        "top1": MetricMeta(),
        r"^top1_b\d+$": MetricMeta(),
        r"^top1_avg_b\d+$": MetricMeta(),
    }

    def run(
        self,
        encoder: Encoder,
        data_root: Path,
        out_dir: Path,
        seed: int,
        device: str,
        protocol: PerLayerProtocol,
        *,
        cache_dir: Path | None = None,
        progress: bool = True,
    ) -> RunOutput:
        blocks = list(protocol.blocks) if protocol.blocks is not None else list(range(encoder.spec.num_blocks))
        train, val, tr, va = self._probe_features(encoder, data_root, blocks, protocol, device, cache_dir, progress)
        y = as_tensor(tr["labels"]).long()
        vy = as_tensor(va["labels"]).long()
        fit_idx, hold_idx = holdout_split(y.numpy(), protocol.holdout_fraction, seed)

        def recipes(f: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
            out = {f"b{b}": as_tensor(f[f"tok{b}"]) for b in blocks}
            if encoder.spec.probe_pool == "token":  # otherwise the probe token already is the patch mean
                out.update({f"avg_b{b}": as_tensor(f[f"avg{b}"]) for b in blocks})
            return out

        tr_r, va_r = recipes(tr), recipes(va)
        heads = self._fit_grid(tr_r, y, fit_idx, len(train.classes), protocol, seed, device, progress)
        metrics: dict[str, float] = {}
        selected = {}
        for recipe in tr_r:
            names = [n for n in heads if n.split("@")[0] == recipe]
            best = max(names, key=lambda n: accuracy(heads[n], tr_r[recipe][hold_idx], y[hold_idx])[0])
            selected[recipe] = best
            metrics[f"top1_{recipe}"] = accuracy(heads[best], va_r[recipe], vy)[0]
        metrics["top1"] = metrics[f"top1_b{blocks[-1]}"]
        _, _, size = transform_for(encoder, protocol.resolution)
        probe = {
            "blocks": blocks,
            "pooling": f"{encoder.spec.probe_pool} token and avg-pooled patches per block",
            "resolution": size,
            "normalisation": "final norm on every block",
            "augmentation": "none (features cached from the eval transform)",
        }
        return RunOutput(
            metrics=metrics,
            dataset=dataset_info(data_root, train, val),
            probe=probe,
            extra={"selected_heads": selected},
        )
