"""Linear heads for any target, a whole grid trained in one pass (dinov2's ``eval/linear.py`` idea).

A :class:`Target` says what the labels are and how a head is scored:

- ``single``: class indices ``[N]``; cross-entropy; top-1 / top-5 (%).
- ``multi``: ``[N, C]`` in {1, 0, -1}; BCE-with-logits or ASL (Ridnik et al., as DualCoOp trains), with -1
  (unknown, partial labels) masked out of the loss; mAP (%) = macro average precision over classes that have a
  positive, and micro AP, from torchmetrics with unknown labels ignored.

:func:`train_head_grid` trains one head per (feature recipe, learning rate) on the same mini-batches: all heads of
a recipe live in one ``[D, H*C]`` matrix, and per-head learning rates come from scaling each head's loss by its
lr under one SGD optimiser with lr 1 — with momentum and no weight decay the update is then exactly
``lr_h * momentum-buffer(grad_h)``, as if each head had its own optimiser (weight decay is applied per head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.checkpoint import Checkpoint
from benchmarks.distributed import DistInfo, all_sum
from benchmarks.probe.rows import Rows, as_rows
from benchmarks.progress import progress_bar


class _Heads(torch.nn.Module):
    """The grid's heads as one module (what DDP wraps): features per recipe in, logits per recipe out."""

    def __init__(self, heads: list[torch.nn.Linear]) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleList(heads)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [h(x) for h, x in zip(self.heads, xs, strict=True)]


@dataclass(frozen=True)
class Target:
    """``kind`` "single" | "multi"; ``loss`` "ce" (single) | "bce" | "asl" (multi). ASL's defaults are DualCoOp's
    (gamma_neg 2, gamma_pos 1, clip 0.05)."""

    kind: str
    num_classes: int
    loss: str = ""  # "": CE for single-label, BCE for multi-label
    gamma_neg: float = 2.0
    gamma_pos: float = 1.0
    clip: float = 0.05

    def __post_init__(self) -> None:
        ok = {"single": ("ce",), "multi": ("bce", "asl")}
        if not self.loss and self.kind in ok:
            object.__setattr__(self, "loss", ok[self.kind][0])
        if self.kind not in ok or self.loss not in ok[self.kind]:
            raise ValueError(
                f"target {self.kind!r} with loss {self.loss!r}: expected single/ce, multi/bce or multi/asl"
            )

    @property
    def selection_metric(self) -> str:
        return "top1" if self.kind == "single" else "mAP"

    def head_losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-head mean loss ``[H]`` of ``logits [B, H, C]`` against ``y`` (``[B]`` or ``[B, C]`` with -1)."""
        if self.kind == "single":
            h = logits.shape[1]
            return F.cross_entropy(logits.permute(0, 2, 1), y[:, None].expand(-1, h), reduction="none").mean(0)
        total, count = self._masked_sums(logits, y)
        # Mean over known labels, per head: unknown (-1) labels contribute neither loss nor count.
        return total / count.clamp(min=1)

    def head_loss_sums(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Multi-label: the per-head masked loss *sum* ``[H]`` (not divided by the number of known labels), so that
        the ranks of a DDP group can divide by the global count (:func:`train_head_grid`)."""
        return self._masked_sums(logits, y)[0]

    def _masked_sums(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = logits.shape[1]
        y = y[:, None, :].expand(-1, h, -1)
        known = (y >= 0).to(logits.dtype)
        pos = (y > 0).to(logits.dtype)
        if self.loss == "bce":
            per = F.binary_cross_entropy_with_logits(logits, pos, reduction="none")
        else:
            p = torch.sigmoid(logits)
            p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p  # asymmetric clipping of negatives
            eps = 1e-8
            loss_pos = pos * (1 - p).pow(self.gamma_pos) * torch.log(p.clamp(min=eps))
            loss_neg = (1 - pos) * p_neg.pow(self.gamma_neg) * torch.log((1 - p_neg).clamp(min=eps))
            per = -(loss_pos + loss_neg)
        return (per * known).sum(dim=(0, 2)), known.sum(dim=(0, 2))

    @torch.no_grad()
    def evaluate(self, logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Metrics (%) of ``logits [N, C]`` against ``y``."""
        if self.kind == "single":
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            return {
                "top1": 100.0 * (top[:, 0] == y).float().mean().item(),
                "top5": 100.0 * (top == y[:, None]).any(1).float().mean().item(),
            }
        return multilabel_ap(logits, y)


def per_class_ap(scores: torch.Tensor, y: torch.Tensor) -> dict[int, float]:
    """Average precision (fraction) of each class with at least one known positive, from torchmetrics'
    ``binary_average_precision`` with unknown labels (-1) ignored; ``scores`` ``[N, C]``, ``y`` ``[N, C]``."""
    from torchmetrics.functional.classification import binary_average_precision

    yi = y.long()
    return {
        c: float(binary_average_precision(scores[:, c].float(), yi[:, c], ignore_index=-1))
        for c in range(scores.shape[1])
        if (yi[:, c] == 1).any()
    }


def micro_ap(scores: torch.Tensor, y: torch.Tensor) -> float:
    """Micro-averaged AP (fraction): every known (sample, class) pair pooled into one ranking, as scikit-learn's
    ``average_precision_score(average='micro')``; 0 when no pair is positive (scikit-learn's value then)."""
    from torchmetrics.functional.classification import binary_average_precision

    yi = y.long().flatten()
    if not (yi == 1).any():
        return 0.0
    return float(binary_average_precision(scores.float().flatten(), yi, ignore_index=-1))


def multilabel_ap(scores: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Macro ``mAP`` over the classes that have at least one known positive, and ``micro_AP`` (both %).

    torchmetrics computes average precision with ``ignore_index=-1`` (unknown labels dropped). A class without a
    positive has no defined AP: it is left out of the macro mean, and counted in ``n_classes_without_positive``.
    """
    per = per_class_ap(scores, y)
    return {
        "mAP": 100.0 * float(np.mean(list(per.values()))) if per else 0.0,
        "micro_AP": 100.0 * micro_ap(scores, y),
        "n_classes_without_positive": float(scores.shape[1] - len(per)),
    }


def multilabel_metrics(
    logits: torch.Tensor, y: torch.Tensor, threshold: float = 0.5, batch_size: int | None = None
) -> dict[str, float]:
    """The multi-label report (all %) of ``logits [N, C]`` against ``y [N, C]`` in {1, 0, -1}, from torchmetrics
    with unknown labels (-1) ignored:

    - ``mAP_macro`` / ``mAP_micro``: average precision per class averaged over the classes with a known positive /
      over all (sample, class) pairs pooled; ``AP_c<i>``: class ``i``'s AP, for each class with a positive;
    - ``F1_macro`` / ``F1_micro``: F1 of ``sigmoid(logits) >= threshold`` (a class with no positive and no
      prediction scores 0, as scikit-learn's ``zero_division=0``);
    - ``mAP_micro_batchavg`` (when ``batch_size``): micro AP computed on consecutive batches of ``batch_size``
      samples and averaged weighted by batch size — what DINO-MM's ``linear_dino_B14.py`` logs (sklearn
      ``average_precision_score(average='micro')`` per val batch, ``MetricLogger`` weighted by ``n``); a batch
      without any positive counts 0, as scikit-learn scores it.
    """
    from torchmetrics.functional.classification import multilabel_f1_score

    yi = y.long()
    c = logits.shape[1]
    probs = torch.sigmoid(logits.float())
    base = multilabel_ap(logits, yi)
    out = {"mAP_macro": base["mAP"], "mAP_micro": base["micro_AP"]}
    out.update({f"AP_c{c:02d}": 100.0 * ap for c, ap in per_class_ap(logits, yi).items()})
    for avg in ("macro", "micro"):
        f1 = multilabel_f1_score(probs, yi, num_labels=c, threshold=threshold, average=avg, ignore_index=-1)
        out[f"F1_{avg}"] = 100.0 * float(f1)
    if batch_size is not None:
        total = 0.0
        for s in range(0, len(yi), batch_size):
            yb = yi[s : s + batch_size]
            total += 100.0 * micro_ap(logits[s : s + batch_size], yb) * len(yb)
        out["mAP_micro_batchavg"] = total / max(1, len(yi))
    out["n_classes_without_positive"] = base["n_classes_without_positive"]
    return out


def holdout_split(targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, holdout) indices. Single-label: stratified — ``fraction`` of each class, at least one sample, at most
    all but one (singleton classes stay in fit). Multi-label: a seeded random ``fraction`` of the samples."""
    rng = np.random.default_rng(seed)
    if targets.ndim == 2:
        perm = rng.permutation(len(targets))
        k = min(max(1, round(fraction * len(perm))), len(perm) - 1)
        return np.sort(perm[k:]), np.sort(perm[:k])
    fit_idx, hold_idx = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1) if len(idx) > 1 else 0
        hold_idx.append(idx[:k])
        fit_idx.append(idx[k:])
    return np.sort(np.concatenate(fit_idx)), np.sort(np.concatenate(hold_idx))


def train_head_grid(
    feats: Rows | dict[str, torch.Tensor],
    targets: torch.Tensor,
    target: Target | int,
    lrs: tuple[float, ...],
    epochs: int,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    seed: int,
    device: str,
    progress: bool = True,
    *,
    schedule: str = "cosine",
    scale_lr: bool = True,
    dist: DistInfo | None = None,
    checkpoint: Checkpoint | None = None,
) -> dict[str, torch.nn.Linear]:
    """Train one linear head per (recipe in ``feats``, lr); return them keyed ``"<recipe>@lr=<lr>"``.

    ``feats`` is :class:`~benchmarks.probe.rows.Rows` (recipes built per mini-batch from the memory-mapped cache:
    memory does not grow with N) or ``{recipe: [N, D_recipe]}`` in memory; ``targets`` ``[N]`` (single) or
    ``[N, C]`` (multi). ``target`` may be a class count, meaning a single-label CE target. Learning rates are scaled
    by ``batch_size / 256`` (DINO's rule; ``scale_lr=False`` takes them as given); the schedule is cosine per
    iteration (``"constant"``: none); heads start from N(0, 0.01), bias 0.

    The heads' initial weights are drawn from torch's *global* generator (callers seed it: :func:`fit_grid` and the
    backdoor victim call ``torch.manual_seed(seed)`` first); only the sampler has its own generator. Drawing the
    init from ``gen`` instead would be cleaner but would change every committed linear record, so it stays.

    ``dist`` of several ranks: the heads train under DDP, each rank on its share of every global batch, with its
    loss weighted so that DDP's average of the ranks' gradients is the one-process gradient up to float summation
    order: single-label by the rank's share of the batch, multi-label by dividing the rank's masked loss sum by the
    global number of known labels of the batch (one ``all_sum`` per step). ``checkpoint``: the heads, optimiser,
    schedule and sampler state are saved after every epoch, and a rerun of the same run resumes from the last one
    (``kill -9`` loses at most one epoch).
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule {schedule!r}: expected 'cosine' or 'constant'")
    if isinstance(target, int):
        target = Target("single", target)
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    num_classes = target.num_classes
    gen = torch.Generator().manual_seed(seed)
    rows = as_rows(feats)
    n = targets.shape[0]
    if len(rows) != n:
        raise ValueError(f"{len(rows)} feature rows but {n} targets")
    scaled = torch.tensor([lr * batch_size / 256 if scale_lr else lr for lr in lrs], device=device)
    heads = {}
    for recipe, dim in rows.dims.items():
        w = torch.nn.Linear(dim, len(lrs) * num_classes).to(device)
        torch.nn.init.normal_(w.weight, std=0.01, generator=None)  # DINO's LinearClassifier init
        torch.nn.init.zeros_(w.bias)
        heads[recipe] = w
    grid: torch.nn.Module = _Heads(list(heads.values()))
    if world > 1:  # the same heads on every rank (same seed); DDP averages the gradients of each rank's share
        grid = torch.nn.parallel.DistributedDataParallel(grid, device_ids=[device] if "cuda" in device else None)
    params = [p for w in heads.values() for p in w.parameters()]
    opt = torch.optim.SGD(params, lr=1.0, momentum=momentum)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch, eta_min=0)
        if schedule == "cosine"
        else torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)
    )
    start = 0
    if checkpoint is not None and (state := checkpoint.load(device)) is not None:
        for w, sd in zip(heads.values(), state["heads"], strict=True):
            w.load_state_dict(sd)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start = int(state["epoch"])
    y_all = targets.to(device)
    with progress_bar(
        total=epochs, desc="train heads", enabled=progress and rank == 0, unit="epoch", initial=start
    ) as bar:
        for epoch in range(start, epochs):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, batch_size):
                idx = perm[s : s + batch_size]
                # Every rank draws the same permutation and takes every world-th image of the global batch; its mean
                # loss is weighted by its share, so DDP's average of the ranks' gradients is the global batch's.
                share = 1.0
                if world > 1:
                    share = math.ceil((len(idx) - rank) / world) * world / len(idx)
                    idx = idx[rank::world]
                y = y_all[idx.to(device)]
                xs = rows.take(idx)
                logits_all = grid([xs[r].to(device, dtype=torch.float32) for r in heads])
                known = 0.0  # multi-label under DDP: the global batch's number of known labels
                if world > 1 and target.kind == "multi":
                    known = all_sum([float((y >= 0).sum())], dist or DistInfo())[0]
                loss = torch.zeros((), device=device)
                for w, logits in zip(heads.values(), logits_all, strict=True):
                    if len(idx) == 0:  # a batch smaller than the world: this rank still joins the all-reduce
                        loss = loss + 0.0 * logits.sum()
                    else:
                        logits = logits.view(len(idx), len(lrs), num_classes)  # [B, H, C]
                        if world == 1:
                            head_loss = (target.head_losses(logits, y) * scaled).sum()
                        elif target.kind == "multi":  # world x this rank's sum / the global count: DDP averages
                            sums = target.head_loss_sums(logits, y)
                            head_loss = (sums * scaled).sum() * world / max(known, 1.0)
                        else:
                            head_loss = (target.head_losses(logits, y) * scaled).sum() * share
                        loss = loss + head_loss
                    if weight_decay:
                        wv = w.weight.view(len(lrs), num_classes, -1)
                        loss = loss + 0.5 * weight_decay * (scaled * wv.pow(2).sum(dim=(1, 2))).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if checkpoint is not None:
                checkpoint.save(
                    {
                        "epoch": epoch + 1,
                        "heads": [w.state_dict() for w in heads.values()],
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": gen.get_state(),
                    },
                    dist or DistInfo(),
                )
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
def evaluate_head(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, target: Target) -> dict[str, float]:
    return target.evaluate(head(x.float()), y)


@torch.no_grad()
def evaluate_heads(
    heads: dict[str, torch.nn.Linear], rows: Rows | dict[str, torch.Tensor], y: torch.Tensor, target: Target
) -> dict[str, dict[str, float]]:
    """Each head's metrics (``"<recipe>@..."`` names its recipe in ``rows``) over all rows, read a chunk at a time:
    every recipe's features once for all of its heads. Single-label keeps two booleans per row and head, multi-label
    the logits (average precision ranks all of them); the values equal :meth:`Target.evaluate` on the whole split."""
    rows = as_rows(rows)
    by_recipe: dict[str, list[str]] = {}
    for name in heads:
        by_recipe.setdefault(name.split("@")[0], []).append(name)
    kept: dict[str, list[tuple[torch.Tensor, ...]]] = {name: [] for name in heads}
    for start, xs in rows.chunks():
        for recipe, names in by_recipe.items():
            x = xs[recipe].float()
            yb = y[start : start + len(x)]
            for name in names:
                logits = heads[name](x)
                if target.kind == "single":
                    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
                    kept[name].append((top[:, 0] == yb, (top == yb[:, None]).any(1)))
                else:
                    kept[name].append((logits,))
    out: dict[str, dict[str, float]] = {}
    for name, parts in kept.items():
        if target.kind == "single":
            none = torch.zeros(0, dtype=torch.bool)
            hit1, hit5 = (torch.cat([p[i] for p in parts]) if parts else none for i in (0, 1))
            out[name] = {"top1": 100.0 * hit1.float().mean().item(), "top5": 100.0 * hit5.float().mean().item()}
        else:
            logits = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, target.num_classes)
            out[name] = target.evaluate(logits, y)
    return out


def accuracy(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Top-1 / top-5 (%) of ``head`` on features ``[N, D]``."""
    m = evaluate_head(head, x, y, Target("single", head.out_features))
    return m["top1"], m["top5"]
