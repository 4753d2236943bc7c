"""Multi-label recognition protocols (partial labels, zero-shot): torch-free frozen dataclasses.

Sources, field by field (``DC`` = DualCoOp's code, github.com/sunxm2357/DualCoOp at its single commit 49e71d7;
``paper`` = arXiv 2206.09541; ``wave2`` = shared/reference/protocols_wave2.md § Multi-label):

- ``proportions``: Table 1's label proportions 10 % ... 90 % (DC ``-pp``). Each (image, class) label is kept with
  probability p, otherwise unknown (-1) (DC ``torch.rand(...) < partial``). DC draws the masks unseeded; here they
  come from the run's seed and are nested (a label kept at p is kept at every larger p). ``min_known``: labels kept
  per image whatever the draw (DC: 0, an image may lose every label; default 1 here, so no image is all unknown —
  the labels with the smallest draws are kept, which keeps the masks nested). Unknown labels are left out of the
  loss. Only train is masked; test labels are complete.
- ``head``: how the encoder is adapted. ``"dualcoop"``: DualCoOp's prompt learning on the encoder's image-text
  towers (``Encoder.image_text``, CLIP); ``"linear"``: a grid of linear heads on frozen features (the probe
  engine), for any encoder; ``"auto"`` (default): ``dualcoop`` for encoders with a text tower, ``linear`` for the
  rest. The record's probe card says which ran.
- Linear heads: the ``linear`` task's recipes (CLS of the last 1 / 4 blocks, +/- avg-pooled patches) and its
  lr grid shape, trained with ``loss`` — ``"asl"``, the asymmetric loss DualCoOp trains with (gamma- 2, gamma+ 1,
  clip 0.05: DC ``utils/build_cfg.py``, wave2), or ``"bce"`` as the baseline — with unknown labels masked out.
  Features are cached from the encoder's eval transform at ``resolution`` (None: its native size).
- DualCoOp (``prompt_*`` fields): frozen CLIP, learnable positive and negative contexts of ``n_ctx_pos`` /
  ``n_ctx_neg`` tokens (DC default 16 / 16; class-specific per class with ``csc``, DC ``--csc``; the README's
  example runs without it and advises against it at small p), initialised N(0, 0.02); region features of the last
  stage scored against both prompts (20 x cosine), aggregated by a class-wise softmax over regions of the positive
  scores, times 5 (DC ``models/dualcoop.py``; the ``--logit_scale 100`` option is never used there); DualCoOp's
  ASL on the softmax of (negative, positive) logits with detached focusing weights, summed over known labels and
  multiplied by ``loss_w`` (DC ``utils/asymmetric_loss.py``). ``loss_w``: the README's example value (0.03 at p =
  0.5 on COCO; "larger loss_w for smaller pp", the per-p values are unpublished): scaled as 0.5 / p, i.e. constant
  per known label — an assumption. SGD momentum 0.9, weight decay 5e-4 (Dassl's defaults DC inherits), batch 32,
  50 epochs, cosine per epoch after 1 warmup epoch at a constant 1e-5 (DC ``configs/models/rn101_ep50.yaml``);
  lr 0.002 for COCO, 0.001 for VOC (README), 0.001 for NUS-WIDE (its zero-shot lr; none is given for partial
  labels). Input ``prompt_resolution`` 448 (README training command), square resize without crop, CLIP's
  mean/std (DC ``test_transform``).
- Selection: DC selects the best epoch on the test set (``VAL_SPLIT == TEST_SPLIT``, wave2). Here the epoch (or
  the linear head) with the best mAP on ``holdout_fraction`` of train — its labels masked like the rest of train —
  is reported, and what the official test-set selection would have reported is recorded next to it
  (``extra.official_selection``).
- Deviation (probe card): DualCoOp trains on RandAugment + Cutout views of every image (DC
  ``dataloaders/*``); here the frozen visual tower's region features are cached once from the test transform, so
  prompts train without augmentation.
- Metric: mAP = mean over classes of non-interpolated AP (DC ``utils/helper.py``) on the test set, per proportion
  (``mAP_p10`` ...) and averaged over proportions (``mAP``, the table's "Avg."). A class without a positive in the
  test set has no AP and is left out of the mean (DC would count it as 0; real test sets have none).

Zero-shot (:class:`CocoZslProtocol`, :class:`NusWideZslProtocol`): class-agnostic prompts (``csc`` does not apply:
unseen classes have no context of their own) of 64 + 64 tokens learned on the seen classes, then put in front of
the unseen class names (README ``train_zsl.py``); RN50 at 224 px; ``loss_w`` 0.01; lr 0.002 (COCO) / 0.001
(NUS-WIDE); each step's ASL loss on ``num_train_cls`` random seen classes when there are more (DC default 100:
NUS-WIDE's 925). ZSL ranks the unseen classes only, GZSL seen + unseen (DC ``val_zsl.py``); metrics: overall
precision / recall / F1 of the top-k ranked labels for k = 3 and 5 (DC ``calc_F1``) and mAP. The held-out part of
train has only seen classes, so the epoch is selected on its seen-class mAP (DC: the best test F1, recorded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from benchmarks.classification.protocols import DINOV2_LRS
from benchmarks.protocol import Protocol
from methods.errors import VitbenchError

PROPORTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_SMOKE_LINEAR = {"resolution": 64, "epochs": 30, "batch_size": 16, "lrs": (0.1, 1.0)}
_SMOKE_PROMPT = {"prompt_resolution": 64, "prompt_epochs": 2, "prompt_batch_size": 16, "n_ctx_pos": 4, "n_ctx_neg": 4}


@dataclass(frozen=True)
class PartialLabelProtocol(Protocol):
    """Partial-label multi-label recognition (DualCoOp Table 1); fields and sources in the module docstring."""

    NAME: ClassVar[str] = "partial-label"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {**_SMOKE_LINEAR, **_SMOKE_PROMPT}

    proportions: tuple[float, ...] = PROPORTIONS
    min_known: int = 1
    head: Literal["auto", "linear", "dualcoop"] = "auto"
    holdout_fraction: float = 0.1
    # linear heads on frozen features
    loss: Literal["asl", "bce"] = "asl"
    gamma_neg: float = 2.0
    gamma_pos: float = 1.0
    clip: float = 0.05
    lrs: tuple[float, ...] = DINOV2_LRS
    n_last_blocks: tuple[int, ...] = (1, 4)
    avgpool: tuple[bool, ...] = (False, True)
    epochs: int = 100
    batch_size: int = 1024
    momentum: float = 0.9
    weight_decay: float = 0.0
    resolution: int | None = None
    # DualCoOp prompt learning
    prompt_resolution: int = 448
    n_ctx_pos: int = 16
    n_ctx_neg: int = 16
    csc: bool = False
    prompt_lr: float = 0.002
    prompt_epochs: int = 50
    prompt_batch_size: int = 32
    prompt_momentum: float = 0.9
    prompt_weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    loss_w: float = 0.03
    loss_w_scaling: Literal["inverse_p", "constant"] = "inverse_p"  # inverse_p: loss_w * 0.5 / p

    def __post_init__(self) -> None:
        if not self.proportions or any(not 0 < p <= 1 for p in self.proportions):
            raise VitbenchError(f"--set proportions={list(self.proportions)}: each must be in (0, 1]")
        if len({round(100 * p) for p in self.proportions}) != len(self.proportions):
            raise VitbenchError(f"--set proportions={list(self.proportions)}: whole percents, each once")

    def loss_weight(self, p: float) -> float:
        return self.loss_w * (0.5 / p if self.loss_w_scaling == "inverse_p" else 1.0)


@dataclass(frozen=True)
class VocPartialProtocol(PartialLabelProtocol):
    """VOC 2007 trainval -> test (DC ``configs/datasets/voc2007.yaml``); lr 0.001 (README). ``difficult``: objects
    marked difficult are skipped, so a class present only as difficult is a negative (DC ``pascal_voc.py``);
    ``"ignore"`` makes it unknown in train and test instead (the VOC devkit's convention)."""

    NAME: ClassVar[str] = "voc-partial"
    prompt_lr: float = 0.001
    difficult: Literal["negative", "ignore"] = "negative"


@dataclass(frozen=True)
class CocoPartialProtocol(PartialLabelProtocol):
    """MS-COCO 2014 train2014 -> val2014 (DC ``configs/datasets/coco.yaml``); lr 0.002 (README)."""

    NAME: ClassVar[str] = "coco-partial"


@dataclass(frozen=True)
class NusWidePartialProtocol(PartialLabelProtocol):
    """NUS-WIDE Train -> Test over the 81 concepts; lr 0.001 (assumed: the README's NUS-WIDE lr is zero-shot's)."""

    NAME: ClassVar[str] = "nuswide-partial"
    prompt_lr: float = 0.001


@dataclass(frozen=True)
class ZeroShotProtocol(Protocol):
    """Zero-shot multi-label recognition with DualCoOp prompts (module docstring)."""

    NAME: ClassVar[str] = "zero-shot-multilabel"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 64, "epochs": 2, "batch_size": 16, "n_ctx_pos": 4, "n_ctx_neg": 4}

    resolution: int = 224
    n_ctx_pos: int = 64
    n_ctx_neg: int = 64
    lr: float = 0.002
    epochs: int = 50
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    loss_w: float = 0.01
    gamma_neg: float = 2.0
    gamma_pos: float = 1.0
    clip: float = 0.05
    num_train_cls: int = 100
    top_k: tuple[int, ...] = (3, 5)
    holdout_fraction: float = 0.1


@dataclass(frozen=True)
class CocoZslProtocol(ZeroShotProtocol):
    """MS-COCO 48 seen / 17 unseen (DC ``configs/datasets/coco.yaml`` ``ZS_*`` files); lr 0.002."""

    NAME: ClassVar[str] = "coco-zsl"


@dataclass(frozen=True)
class NusWideZslProtocol(ZeroShotProtocol):
    """NUS-WIDE 925 seen tags / 81 unseen concepts; lr 0.001 (README)."""

    NAME: ClassVar[str] = "nuswide-zsl"
    lr: float = 0.001
