"""DualCoOp (Sun, Hu, Saenko; NeurIPS 2022) on any encoder's image-text towers (:class:`methods.image_text.ImageText`).

Written from the paper and its code (github.com/sunxm2357/DualCoOp, ``models/dualcoop.py``,
``utils/asymmetric_loss.py``, ``utils/trainers.py``); CLIP itself is the encoder's (open_clip), never rewritten:

- **Prompts.** For every class a positive and a negative prompt, ``[SOS] ctx_1 ... ctx_n <class name> . [EOS]``,
  whose context vectors are learned (shared by all classes, or one set per class with ``csc``) and whose other
  token embeddings are CLIP's (``MLCPromptLearner``). The text tower runs on these embeddings and its features are
  read at the end token; negative prompts first, then positive ones (``[2K, D]``, L2-normalised).
- **Class-specific region feature aggregation.** The image tower's features of every region of the last stage in
  the joint space (``ImageText.forward_regions``: CLIP's attention pool turned into per-region projections,
  ``[B, R, D]``) are L2-normalised and scored against both prompts, ``20 * cos`` (``[B, 2K, R]``); each class
  weights the regions by the softmax over regions of its positive scores and sums both prompts' scores with those
  weights, times 5: logits ``[B, 2, K]`` (negative, positive). The class probability is the softmax over the pair.
- **Loss.** DualCoOp's ASL on that pair: unknown labels (-1) dropped, negatives' probability shifted by ``clip``,
  focusing weights ``(1 - p_t) ** gamma`` computed without gradient, the sum over labels times ``loss_w``.
- **Training.** Only the contexts learn: SGD with momentum and weight decay, an lr per epoch (constant warmup,
  then cosine over ``epochs``, as Dassl's ``ConstantWarmupScheduler`` + ``CosineAnnealingLR`` step it); each
  step's loss may use a random subset of ``num_train_cls`` training classes (zero-shot NUS-WIDE).

Region features of the frozen image tower are extracted once through the feature cache (:func:`region_features`),
so every epoch (and every label proportion) costs text-tower passes only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from benchmarks.distributed import DistInfo
from benchmarks.features import FeatureKey, default_cache_dir, extract, require_finite
from benchmarks.probe.data import EvalTransform, LabelledSplit, ProbeDataset
from benchmarks.progress import progress_bar
from methods import Encoder
from methods.errors import VitbenchError
from methods.image_text import ImageText

REGION_SCALE = 20.0  # models/dualcoop.py: 20 * conv1d(normalised regions, normalised text)
LOGIT_SCALE = 5.0  # models/dualcoop.py: 5 * (output * w).sum(-1)
CTX_INIT_STD = 0.02  # MLCPromptLearner: nn.init.normal_(ctx, std=0.02)


# ------------------------------------------------------------------------------------------------ region features
@dataclass(frozen=True)
class SquareResize(EvalTransform):
    """DualCoOp's test transform: ``Resize((size, size))`` (aspect not kept, nothing cropped), ToTensor, Normalize."""

    @property
    def desc(self) -> str:
        return f"square{self.size}-{self.interpolation}-mean{self.mean}-std{self.std}"

    def image(self) -> Callable[[Image.Image], torch.Tensor]:
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        return transforms.Compose(
            [
                transforms.Resize((self.size, self.size), interpolation=InterpolationMode(self.interpolation)),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )


def square_transform(encoder: Encoder, size: int) -> SquareResize:
    dc = encoder.data_config
    return SquareResize(size=size, crop_pct=1.0, interpolation=dc.interpolation, mean=tuple(dc.mean), std=tuple(dc.std))


def region_features(
    encoder: Encoder,
    split: LabelledSplit,
    size: int,
    *,
    device: str,
    cache_dir: Path | None,
    progress: bool,
    batch_size: int = 32,
    dist: DistInfo | None = None,
) -> np.ndarray:
    """``[N, R, D]`` fp16 region features (``ImageText.forward_regions``) of ``split`` at ``size`` px, through the
    feature cache (keyed by the weights, the split, the transform and the image-text model). With ``dist`` of
    several ranks each rank extracts 1/world of the images (:func:`benchmarks.features.extract`)."""
    towers = encoder.image_text()
    transform = square_transform(encoder, size)
    dataset = ProbeDataset(split, transform)
    key = FeatureKey(
        encoder.identity.weights_id, split.fingerprint(), split.name, transform.desc, f"regions:{towers.name}"
    )

    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"regions": towers.forward_regions(x)}

    feats = extract(
        fn,
        dataset,
        key,
        cache_dir=cache_dir or default_cache_dir(),
        device=device,
        batch_size=batch_size,
        desc=f"regions {split.name}",
        progress=progress,
        dist=dist,
    )
    return feats["regions"]


# ------------------------------------------------------------------------------------------------ the model
class DualCoOp(nn.Module):
    """Learnable positive / negative contexts for ``classnames`` on frozen ``towers`` (module docstring).

    ``ctx_pos`` / ``ctx_neg``: ``[n_ctx, W]``, or ``[K, n_ctx, W]`` class-specific (``csc``).
    """

    def __init__(
        self,
        towers: ImageText,
        classnames: Sequence[str],
        n_ctx_pos: int,
        n_ctx_neg: int,
        csc: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._towers = (towers,)  # a tuple: the frozen towers are not this module's parameters
        k, w = len(classnames), towers.token_width
        gen = torch.Generator().manual_seed(seed)
        device = next(towers.parameters()).device
        shape_pos = (k, n_ctx_pos, w) if csc else (n_ctx_pos, w)
        shape_neg = (k, n_ctx_neg, w) if csc else (n_ctx_neg, w)
        self.ctx_pos = nn.Parameter((torch.randn(shape_pos, generator=gen) * CTX_INIT_STD).to(device))
        self.ctx_neg = nn.Parameter((torch.randn(shape_neg, generator=gen) * CTX_INIT_STD).to(device))
        self.csc = csc
        names = [n.replace("_", " ") for n in classnames]
        with torch.no_grad():
            for kind, n_ctx in (("pos", n_ctx_pos), ("neg", n_ctx_neg)):
                texts = [" ".join(["X"] * n_ctx) + " " + name + "." for name in names]
                lengths = [n_ctx + towers.token_count(name + ".") + 2 for name in names]
                too_long = [n for n, ln in zip(names, lengths) if ln > towers.context_length]
                if too_long:
                    raise VitbenchError(
                        f"DualCoOp prompt for class {too_long[0]!r} with {n_ctx} context tokens exceeds the text "
                        f"tower's {towers.context_length} tokens"
                    )
                tokens = towers.tokenize(texts)
                emb = towers.embed_tokens(tokens)
                self.register_buffer(f"prefix_{kind}", emb[:, :1].clone())  # [K, 1, W] start token
                self.register_buffer(f"suffix_{kind}", emb[:, 1 + n_ctx :].clone())  # [K, L - 1 - n_ctx, W]
                self.register_buffer(f"tokens_{kind}", tokens)  # [K, L]

    @property
    def towers(self) -> ImageText:
        return self._towers[0]

    def text_features(self, class_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``[2K', D]`` L2-normalised text features of the negative then the positive prompts of ``class_ids``
        (``[K']`` indices into the class names; None: all)."""
        parts, tokens = [], []
        for kind in ("neg", "pos"):
            prefix, suffix, tok = (getattr(self, f"{p}_{kind}") for p in ("prefix", "suffix", "tokens"))
            ctx: torch.Tensor = self.ctx_pos if kind == "pos" else self.ctx_neg
            if class_ids is not None:
                prefix, suffix, tok = prefix[class_ids], suffix[class_ids], tok[class_ids]
                if self.csc:
                    ctx = ctx[class_ids]
            if not self.csc:
                ctx = ctx.unsqueeze(0).expand(prefix.shape[0], -1, -1)
            parts.append(torch.cat([prefix, ctx.to(prefix.dtype), suffix], dim=1))
            tokens.append(tok)
        text = self.towers.encode_embedded(torch.cat(parts), torch.cat(tokens))
        return F.normalize(text.float(), dim=-1)

    def forward(self, regions: torch.Tensor, class_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``regions [B, R, D] -> logits [B, 2, K']`` (negative, positive)."""
        return aggregate(regions, self.text_features(class_ids))


def aggregate(regions: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Class-specific region feature aggregation: ``regions [B, R, D]``, ``text [2K, D]`` (negative prompts, then
    positive; normalised) -> logits ``[B, 2, K]``. The weights over regions are the softmax of the positive
    prompt's scores, applied to both prompts' scores."""
    b = regions.shape[0]
    k = text.shape[0] // 2
    r = F.normalize(regions.float(), dim=-1)
    scores = REGION_SCALE * torch.einsum("brd,kd->bkr", r, text.float())  # [B, 2K, R]
    w = scores[:, k:].softmax(dim=-1)  # [B, K, R]
    out = LOGIT_SCALE * (scores * torch.cat([w, w], dim=1)).sum(dim=-1)  # [B, 2K]
    return out.view(b, 2, k)


def positive_probability(logits: torch.Tensor) -> torch.Tensor:
    """``[B, 2, K] -> [B, K]``: the softmax over (negative, positive), positive side (DualCoOp's score)."""
    return logits.float().softmax(dim=1)[:, 1]


def ranking_score(logits: torch.Tensor) -> torch.Tensor:
    """``[B, 2, K] -> [B, K]``: positive minus negative logit. The positive probability is its sigmoid, so every
    ranking metric (AP, top-k) is the same, but with logits of +-100 the probability rounds to exactly 0 or 1 in
    fp32 and ties images that the difference still orders."""
    logits = logits.float()
    return logits[:, 1] - logits[:, 0]


def dualcoop_asl(
    logits: torch.Tensor, y: torch.Tensor, gamma_neg: float = 2.0, gamma_pos: float = 1.0, clip: float = 0.05
) -> torch.Tensor:
    """DualCoOp's ``AsymmetricLoss`` of ``logits [B, 2, K]`` against ``y [B, K]`` in {1, 0, -1}: a scalar sum over
    the known labels (eps 1e-6, focusing weights without gradient)."""
    prob = logits.float().softmax(dim=1)
    known = y >= 0
    t = y[known].float()
    xs_pos, xs_neg = prob[:, 1][known], prob[:, 0][known]
    if clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    loss = t * torch.log(xs_pos.clamp(min=1e-6)) + (1 - t) * torch.log(xs_neg.clamp(min=1e-6))
    with torch.no_grad():
        pt = xs_pos * t + xs_neg * (1 - t)
        weight = torch.pow(1 - pt, gamma_pos * t + gamma_neg * (1 - t))
    return -(loss * weight).sum()


def epoch_lr(epoch: int, lr: float, epochs: int, warmup_epochs: int, warmup_lr: float) -> float:
    """Dassl's ``ConstantWarmupScheduler(CosineAnnealingLR(T_max=epochs))``, stepped once per epoch: ``warmup_lr``
    for the warmup epochs, then ``lr * (1 + cos(pi * (epoch - warmup) / epochs)) / 2``."""
    if epoch < warmup_epochs:
        return warmup_lr
    return 0.5 * lr * (1 + math.cos(math.pi * (epoch - warmup_epochs) / epochs))


# ------------------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class PromptRecipe:
    """How prompts are learned (the protocol's DualCoOp fields, in one place)."""

    n_ctx_pos: int
    n_ctx_neg: int
    csc: bool
    lr: float
    epochs: int
    batch_size: int
    momentum: float
    weight_decay: float
    warmup_epochs: int
    warmup_lr: float
    loss_w: float
    gamma_neg: float
    gamma_pos: float
    clip: float
    num_train_cls: int | None = None


@dataclass
class EvalSet:
    """Images to score after every epoch: ``regions [N, R, D]`` (cached), ``targets [N, K]`` over ``class_ids``."""

    regions: np.ndarray
    targets: torch.Tensor
    class_ids: list[int]
    rows: np.ndarray | None = None  # a subset of the rows (None: all)


def _rows(regions: np.ndarray, idx: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(regions[idx])).to(device)


@torch.no_grad()
def predict(model: DualCoOp, data: EvalSet, device: str, chunk: int = 64) -> torch.Tensor:
    """``[N, K]`` ranking scores (:func:`ranking_score`) of ``data`` (on the CPU)."""
    ids = torch.tensor(data.class_ids, device=device)
    use_amp = device.startswith("cuda")
    with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
        text = model.text_features(ids)
    rows = data.rows if data.rows is not None else np.arange(len(data.regions))
    out = []
    for s in range(0, len(rows), chunk):
        x = _rows(data.regions, rows[s : s + chunk], device)
        out.append(ranking_score(aggregate(x, text)).cpu())
    # A diverged prompt (or a NaN text tower) would rank every class alike: refused, not scored.
    return require_finite(torch.cat(out), f"DualCoOp's class scores of {len(rows)} images")


def train_prompts(
    model: DualCoOp,
    regions: np.ndarray,
    targets: torch.Tensor,
    rows: np.ndarray,
    class_ids: list[int],
    recipe: PromptRecipe,
    *,
    on_epoch: Callable[[int, DualCoOp], dict[str, float]],
    seed: int,
    device: str,
    progress: bool,
    desc: str = "prompts",
    dist: DistInfo | None = None,
) -> list[dict[str, float]]:
    """Train ``model``'s contexts on the train ``rows`` of ``regions [N, R, D]`` / ``targets [N, C]`` (columns
    ``class_ids`` are trained on); after every epoch ``on_epoch(epoch, model)`` returns that epoch's metrics.

    ``dist`` of several ranks: every rank draws the same permutation (and class subsets) and takes every world-th
    image of each batch; the contexts' gradients are summed over ranks before the step. DualCoOp's loss is a sum
    over the batch's known labels, so the summed gradient is the one-process gradient up to float summation order,
    and every rank keeps the same contexts (and scores the same epochs)."""
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    opt = torch.optim.SGD(
        [model.ctx_pos, model.ctx_neg], lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    gen = torch.Generator().manual_seed(seed)
    use_amp = device.startswith("cuda")
    train_ids = torch.tensor(class_ids)
    history = []
    with progress_bar(total=recipe.epochs, desc=desc, enabled=progress, unit="epoch") as bar:
        for epoch in range(recipe.epochs):
            for group in opt.param_groups:
                group["lr"] = epoch_lr(epoch, recipe.lr, recipe.epochs, recipe.warmup_epochs, recipe.warmup_lr)
            perm = rows[torch.randperm(len(rows), generator=gen).numpy()]
            for s in range(0, len(perm), recipe.batch_size):
                idx = np.sort(perm[s : s + recipe.batch_size])
                if world > 1:
                    idx = idx[rank::world]
                ids = train_ids
                if recipe.num_train_cls is not None and len(ids) > recipe.num_train_cls:
                    ids = ids[torch.randperm(len(ids), generator=gen)[: recipe.num_train_cls]]
                y = targets[torch.from_numpy(idx)][:, ids].to(device)
                x = _rows(regions, idx, device)
                with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                    logits = model(x, ids.to(device))
                loss = recipe.loss_w * dualcoop_asl(logits, y, recipe.gamma_neg, recipe.gamma_pos, recipe.clip)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:  # the global batch's gradient: the loss is a sum, so the ranks' gradients add up
                    for p in (model.ctx_pos, model.ctx_neg):
                        if p.grad is None:
                            p.grad = torch.zeros_like(p)
                        torch.distributed.all_reduce(p.grad)
                opt.step()
            model.eval()
            history.append(on_epoch(epoch, model))
            model.train()
            bar.update(1)
    return history
