"""The ImageNet-style probe protocols (k-NN, linear grid, per-layer linear): torch-free frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from benchmarks.protocol import Protocol

DINOV2_LRS = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


@dataclass(frozen=True)
class KnnProtocol(Protocol):
    """DINO's ``eval_knn.py``: weighted vote of the k nearest L2-normalised train features, weight exp(sim / T).
    k is capped at the train-set size (the probe card records ``effective_k``)."""

    NAME: ClassVar[str] = "dino-knn"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 64}

    ks: tuple[int, ...] = (10, 20, 100, 200)
    headline_k: int = 20
    temperature: float = 0.07
    resolution: int | None = None  # None: the encoder's native eval size (224 for most)


@dataclass(frozen=True)
class LinearProtocol(Protocol):
    """A dinov2-style grid of linear heads on cached features (DINO's ``eval_linear.py`` recipes, dinov2's lrs).

    Recipes are CLS of the last ``n`` blocks for each ``n`` in ``n_last_blocks``, each with and without the
    avg-pooled patch tokens of the last block. Which blocks exist is the encoder's: a hierarchical encoder exposes
    only its last stage at the probe width, so recipes with ``n`` > 1 are not built for it (the probe card lists the
    recipes trained). Heads train on 1 - ``holdout_fraction`` of train, the best hold-out top-1 is selected, and
    its last-epoch weights are evaluated on val. Not DINO's ``eval_linear.py`` protocol (``linear-dino``): no
    augmentation, a grid instead of one lr, 90 % of train, last epoch instead of the best epoch on val.
    """

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


# ------------------------------------------------------------------------------------------------ linear-dino
@dataclass(frozen=True)
class LinearDinoProtocol(Protocol):
    """DINO's ``eval_linear.py`` (facebookresearch/dino), field by field:

    - one linear layer (N(0, 0.01) weights, zero bias, no BatchNorm) on frozen features, trained with SGD momentum
      ``momentum`` 0.9, ``weight_decay`` 0, lr = ``lr`` (1e-3) x global batch / 256, ``batch_size`` 1024
      (128 per GPU x 8), ``epochs`` 100, ``CosineAnnealingLR(T_max=epochs, eta_min=0)`` stepped once per epoch;
    - every epoch, train images go through ``RandomResizedCrop(resolution)`` (bilinear, scale 0.08-1) +
      horizontal flip + the encoder's mean/std, and features are recomputed by the frozen encoder (no cache);
      all of train is used (DistributedSampler over the whole split);
    - val uses the encoder's eval transform (DINO's Resize 256 bicubic + CenterCrop 224 for its own weights);
      it is evaluated after every epoch (``val_freq`` 1) and the reported top-1 is the **best over epochs**
      (``best_acc``); top-5 is the best epoch's.
    - features, per architecture as DINO's README and ``--n_last_blocks``/``--avgpool_patchtokens`` help say:
      plain ViTs narrower than 768 (ViT-S) concatenate the normalised CLS token of the last 4 blocks; ViT-B and
      wider the last block's CLS + the average of its normalised patch tokens. ``n_last_blocks`` / ``avgpool``
      override that rule (``avgpool`` only with one block, as DINO's code allows). Encoders without a CLS token use
      their probe token (the patch mean); hierarchical and CNN encoders their global feature (``forward_global``,
      DINO's ResNet-50 path).
    - DDP through torchrun: each rank sees 1/world of train, the head is wrapped in DistributedDataParallel;
      a checkpoint is written after every epoch and an interrupted run resumes from it.
    """

    NAME: ClassVar[str] = "dino-eval-linear"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 32, "epochs": 3, "batch_size": 16, "lr": 0.5}

    epochs: int = 100
    batch_size: int = 1024  # global: 128 per GPU x 8 GPUs
    lr: float = 1e-3  # base lr, x batch_size / 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    n_last_blocks: int | None = None  # None: DINO's per-architecture rule (see above)
    avgpool: bool | None = None
    resolution: int | None = None  # None: the encoder's native size (224)


# ------------------------------------------------------------------------------------------------ imagenet-finetune
@dataclass(frozen=True)
class FinetuneRecipe:
    """One paper's end-to-end ImageNet fine-tuning recipe (torch-free data; :class:`FinetuneProtocol` picks one).

    lr = ``blr`` x global batch / ``lr_batch``. ``schedule``: "step" = per-iteration linear warmup from
    ``warmup_lr`` then half-cosine to ``min_lr`` over the remaining iterations (MAE ``lr_sched``, BEiT
    ``cosine_scheduler``); "step-total" = timm ``CosineLRScheduler`` per iteration whose cosine spans all
    iterations, warmup included (SimMIM/MFM); "epoch" = timm's scheduler stepped per epoch (DeiT).
    ``scale_min_lr``: ``warmup_lr`` and ``min_lr`` also scale with the batch (SimMIM/MFM). ``layer_decay`` None:
    no layer-wise decay. ``global_pool`` "avg" = mean patch token + a fresh ``fc_norm`` (the pretrained final norm
    unused), "token" = the normalised CLS. The fresh head is ``trunc_normal(std=head_init_std)``, bias 0.
    ``ema_decay`` None: no EMA. ``repeated_aug``: repeats per image of DeiT's repeated-augmentation sampler (0 = off).
    """

    name: str
    source: str
    epochs: int
    batch_size: int
    blr: float
    lr_batch: int
    layer_decay: float | None
    drop_path: float
    warmup_epochs: int
    warmup_lr: float = 0.0
    min_lr: float = 1e-6
    scale_min_lr: bool = False
    schedule: str = "step"
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float | None = None
    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float | None = None
    interpolation: str = "bicubic"
    reprob: float = 0.25
    remode: str = "pixel"
    recount: int = 1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    global_pool: str = "avg"
    head_init_std: float = 2e-5
    ema_decay: float | None = None
    repeated_aug: int = 0


_MAE = "facebookresearch/mae FINETUNE.md + main_finetune.py (util/lr_decay.py, util/lr_sched.py)"
_BEIT = (
    "bytedance/ibot evaluation/README.md + run.sh imagenet_cls (BEiT's run_class_finetuning.py: lr 4e-3 at "
    "128 x 8, not scaled; the README says the lr was swept, the swept values are not published)"
)
_MFM = "Jiahao000/MFM configs/vit_*/finetune__*.yaml, config.py, main_finetune.py, lr_scheduler.py (SimMIM)"
_DEIT = "facebookresearch/moco-v3 README (DeiT repo, all default DeiT configs; ViT-B 150 epochs) + deit main.py"

FINETUNE_RECIPES: dict[str, FinetuneRecipe] = {
    r.name: r
    for r in (
        # MAE: blr 5e-4 (B) / 1e-3 (L, H) x bs/256, bs 1024 (32 x 32 GPUs), layer decay 0.65 / 0.75, drop path
        # 0.1 / 0.2 / 0.3, wd 0.05, warmup 5, min_lr 1e-6, reprob 0.25, mixup 0.8, cutmix 1.0, smoothing 0.1,
        # RandAugment rand-m9-mstd0.5-inc1, global pool, head trunc_normal(2e-5), no EMA, no grad clipping.
        FinetuneRecipe("mae-vitb", _MAE, 100, 1024, 5e-4, 256, 0.65, 0.1, 5),
        FinetuneRecipe("mae-vitl", _MAE, 50, 1024, 1e-3, 256, 0.75, 0.2, 5),
        FinetuneRecipe("mae-vith", _MAE, 50, 1024, 1e-3, 256, 0.75, 0.3, 5),
        # iBOT (BEiT's code): 100 epochs (B) / 200 (S), warmup 20, layer decay 0.65 / 0.75, drop path 0.2 / 0.1,
        # --use_cls (CLS head), head init 0.02 x init_scale 0.001, min_lr 1e-6, mixup 0.8 / cutmix 1.0.
        FinetuneRecipe("ibot-vits", _BEIT, 200, 1024, 1e-3, 256, 0.75, 0.1, 20, global_pool="token"),
        FinetuneRecipe("ibot-vitb", _BEIT, 100, 1024, 1e-3, 256, 0.65, 0.2, 20, global_pool="token"),
        # MFM (SimMIM's fine-tuning code): base lr 2e-3 x bs/512, bs 2048 (128 x 16 GPUs, docs/FINETUNE.md),
        # warmup and min lr 2.5e-7 x bs/512, layer decay 0.8, drop path 0.1, mean pooling, 100 (B) / 200 (S) epochs.
        FinetuneRecipe(
            "mfm-vitb", _MFM, 100, 2048, 2e-3, 512, 0.8, 0.1, 5, 2.5e-7, 2.5e-7, True, "step-total", color_jitter=0.0
        ),
        FinetuneRecipe(
            "mfm-vits", _MFM, 200, 2048, 2e-3, 512, 0.8, 0.1, 5, 2.5e-7, 2.5e-7, True, "step-total", color_jitter=0.0
        ),
        # DeiT's defaults (MoCo v3): lr 5e-4 x bs/512, bs 1024, no layer decay, drop path 0.1, warmup 5 from 1e-6,
        # min_lr 1e-5, per-epoch cosine, color jitter 0.3 (unused with RandAugment), repeated augmentation (3),
        # EMA 0.99996 (kept, not what DeiT reports), CLS head with timm's init; 300 epochs (S) / 150 (B).
        FinetuneRecipe(
            "deit-vits",
            _DEIT,
            300,
            1024,
            5e-4,
            512,
            None,
            0.1,
            5,
            1e-6,
            1e-5,
            False,
            "epoch",
            color_jitter=0.3,
            global_pool="token",
            head_init_std=0.02,
            ema_decay=0.99996,
            repeated_aug=3,
        ),
        FinetuneRecipe(
            "deit-vitb",
            _DEIT,
            150,
            1024,
            5e-4,
            512,
            None,
            0.1,
            5,
            1e-6,
            1e-5,
            False,
            "epoch",
            color_jitter=0.3,
            global_pool="token",
            head_init_std=0.02,
            ema_decay=0.99996,
            repeated_aug=3,
        ),
    )
}

# "auto": the recipe family of the paper the weights come from, which the encoder carries (its adapter's
# ``Variant.finetune_recipe``: MAE and SemMAE "mae", iBOT "ibot", MFM "mfm", MoCo v3 "deit"); MAE's for an encoder whose
# paper publishes none (the most common recipe among the seed papers). The harness never looks at the method. The
# size comes from the width: 384 -> S, 768 -> B, 1024 -> L, 1280 -> H; a family without that size uses its nearest one
# (stated in the record's probe card).
DEFAULT_FINETUNE_FAMILY = "mae"
_SIZE_BY_WIDTH = {384: "vits", 768: "vitb", 1024: "vitl", 1280: "vith"}
_SIZES = ("vits", "vitb", "vitl", "vith")


def finetune_recipe_name(family: str | None, embed_dim: int) -> str:
    """The "auto" recipe of an encoder of width ``embed_dim`` whose paper's recipe family is ``family`` (the
    encoder's ``finetune_recipe``; None: :data:`DEFAULT_FINETUNE_FAMILY`)."""
    from methods.errors import VitbenchError

    family = family or DEFAULT_FINETUNE_FAMILY
    want = _SIZE_BY_WIDTH.get(embed_dim, "vitb" if embed_dim < 1024 else "vitl")
    have = [s for s in _SIZES if f"{family}-{s}" in FINETUNE_RECIPES]
    if not have:
        families = sorted({r.rsplit("-", 1)[0] for r in FINETUNE_RECIPES})
        raise VitbenchError(
            f"fine-tuning recipe family {family!r} (the encoder's finetune_recipe) has no recipe; families: "
            f"{', '.join(families)}; or pass --set recipe=NAME"
        )
    size = min(have, key=lambda s: (abs(_SIZES.index(s) - _SIZES.index(want)), _SIZES.index(s)))
    return f"{family}-{size}"


# The protocol fields that, set, override the recipe's value of the same name.
_RECIPE_OVERRIDES: tuple[str, ...] = ("epochs", "batch_size", "blr", "layer_decay", "drop_path", "warmup_epochs")
_RECIPE_OVERRIDES += ("weight_decay", "mixup", "cutmix", "smoothing", "reprob", "global_pool")


@dataclass(frozen=True)
class FinetuneProtocol(Protocol):
    """End-to-end ImageNet fine-tuning with each paper's own recipe, built from timm's parts: ``create_transform``
    (RandAugment, random erasing), ``Mixup`` (mixup/cutmix + label smoothing, ``SoftTargetCrossEntropy``),
    ``create_optimizer_v2`` (AdamW, layer-wise lr decay from the model's ``group_matcher``, no weight decay on
    1-D parameters and ``no_weight_decay()``), ``CosineLRScheduler``, ``ModelEmaV3``, stochastic depth; DDP
    through torchrun, a checkpoint after every epoch, resume after a kill.

    ``recipe`` "auto" picks the recipe of the paper the weights come from (:func:`finetune_recipe_name`); a name
    from :data:`FINETUNE_RECIPES` forces one. Every other field left at None takes the recipe's value; set, it
    overrides it (the record's probe card holds the resolved recipe). Val is evaluated after every epoch with the
    encoder's eval transform and the reported ``top1`` is the best epoch's (the papers' "max accuracy");
    ``last_top1`` is the final epoch's. Differences from the papers' code: the final ``norm`` of a CLS-pooled ViT
    gets the last block's lr scale under timm's ``group_matcher`` (BEiT/iBOT give it 1.0); fp16 autocast on CUDA.
    """

    NAME: ClassVar[str] = "imagenet-finetune"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 32, "epochs": 2, "batch_size": 16, "warmup_epochs": 1, "blr": 1e-3}

    recipe: str = "auto"
    epochs: int | None = None
    batch_size: int | None = None  # global, over all GPUs (and accumulation steps)
    blr: float | None = None
    layer_decay: float | None = None
    drop_path: float | None = None
    warmup_epochs: int | None = None
    weight_decay: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    smoothing: float | None = None
    reprob: float | None = None
    global_pool: str | None = None
    resolution: int | None = None  # None: the encoder's native size

    def __post_init__(self) -> None:
        from methods.errors import VitbenchError

        if self.recipe != "auto" and self.recipe not in FINETUNE_RECIPES:
            raise VitbenchError(f"--set recipe={self.recipe}: unknown; recipes: auto, {', '.join(FINETUNE_RECIPES)}")
        if self.global_pool not in (None, "avg", "token"):
            raise VitbenchError(f"--set global_pool={self.global_pool}: expected avg or token")

    def resolve(self, family: str | None, embed_dim: int) -> FinetuneRecipe:
        """The recipe this run trains with: ``recipe`` (or the "auto" one of recipe family ``family`` at width
        ``embed_dim``, see :func:`finetune_recipe_name`) with the fields set here overriding it."""
        import dataclasses

        name = finetune_recipe_name(family, embed_dim) if self.recipe == "auto" else self.recipe
        changes = {f: getattr(self, f) for f in _RECIPE_OVERRIDES if getattr(self, f) is not None}
        return dataclasses.replace(FINETUNE_RECIPES[name], **changes)


# ------------------------------------------------------------------------------------------------ released classifiers
# ImageNet-C (Hendrycks & Dietterich, ICLR 2019): the 15 corruptions of the mCE benchmark, the 4 held-out extras, and
# AlexNet's top-1 error on each of the 15, averaged over severities 1-5: the normaliser of the Corruption Error. The
# errors are google-research/augmix imagenet.py @ 9b9824c (ALEXNET_ERR, "Raw AlexNet errors taken from
# https://github.com/hendrycks/robustness"; AugMix and ImageNet-C share their first author).
IMAGENET_C_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
IMAGENET_C_EXTRAS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALEXNET_ERR = dict(
    zip(
        IMAGENET_C_CORRUPTIONS,
        (0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816)
        + (0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500),
        strict=True,
    )
)


@dataclass(frozen=True)
class SupervisedProtocol(Protocol):
    """``imagenet-supervised``: top-1 / top-5 of a *released classifier* (the backbone with the head its authors
    trained and released) on the 50,000 ImageNet-1k val images.

    - Data: ``val/<wnid>/`` (ImageFolder) or the flat ``val/ILSVRC2012_val_*.JPEG`` with the devkit's
      ``ILSVRC2012_validation_ground_truth.txt`` (devkit ids mapped to wnids); labels in the sorted-wnid order every
      released head here was trained in (``benchmarks/data/imagenet.py``, ``imagenet_classes.py``).
    - Transform: the variant's own eval transform from its ``data_config`` (resize the short side to
      ``floor(size / crop_pct)``, center crop ``size``, interpolation, mean/std), built by timm's
      ``create_transform`` - what each authors' evaluation does: DeiT ``datasets.py`` (crop 0.875, bicubic), MAE
      ``util/datasets.py`` (224/256, bicubic), MFM ``data/data_finetune.py`` (256/224 resize, bicubic), GC ViT and
      SP-ViT through timm's ``resolve_data_config`` on their ``default_cfgs`` (GC ViT 0.875 or 1.0 per model,
      SP-ViT 0.9 for S, 1.0 for M/L; 384 px for the ``*384`` fine-tuned variants). The values per variant and their
      sources are in ``methods/<method>.py``, checked by ``tests/methods/test_eval_transforms.py``.
    - Scores: the model's own head on its features (``Encoder.forward_logits``; SP-ViT adds ``0.5 * max`` of its
      token-label head, as its inference does); top-1 = argmax over the 1000 classes, top-5 likewise. On a GPU the
      forward runs under fp16 autocast, as timm's ``validate.py --amp`` and DeiT's / MAE's eval loops do.
    - ``resolution``: None = the variant's own input size; another value rescales the whole transform (and is
      another protocol hash, never ranked with the standard one).
    """

    NAME: ClassVar[str] = "imagenet-supervised"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {}  # the smoke setting is the task on synthetic data (GC ViT's windows fix its 224 px)

    resolution: int | None = None


@dataclass(frozen=True)
class ImageNetAProtocol(SupervisedProtocol):
    """ImageNet-A (Hendrycks et al., CVPR 2021, hendrycks/natural-adv-examples): 7,500 adversarially filtered
    natural images of 200 ImageNet classes, ``imagenet-a.tar`` layout ``<wnid>/<image>``. As the authors' ``eval.py``
    scores a 1000-way model: the logits are restricted to the 200 classes (``indices_in_1k``, sorted-wnid order) and
    top-1 is the argmax among them (top-5 likewise). Transform and head as ``imagenet-supervised`` (the authors'
    script uses Resize(256) + CenterCrop(224); the variant's own transform is used, as for val)."""

    NAME: ClassVar[str] = "imagenet-a"
    VERSION: ClassVar[int] = 1


@dataclass(frozen=True)
class ImageNetRProtocol(SupervisedProtocol):
    """ImageNet-R (Hendrycks et al., ICCV 2021, hendrycks/imagenet-r): 30,000 renditions of 200 ImageNet classes,
    ``imagenet-r.tar`` layout ``<wnid>/<image>``; logits restricted to the 200 (``imagenet_r_mask`` in the authors'
    ``eval.py``), top-1 / top-5 among them. Transform and head as ``imagenet-supervised``."""

    NAME: ClassVar[str] = "imagenet-r"
    VERSION: ClassVar[int] = 1


@dataclass(frozen=True)
class ImageNetSketchProtocol(SupervisedProtocol):
    """ImageNet-Sketch (Wang et al., NeurIPS 2019, HaohanWang/ImageNet-Sketch): 50,889 black-and-white sketches of
    all 1000 classes (the README says 50 per class; flips and rotations fill classes that had fewer), the ``sketch/``
    folder of ``ImageNet-Sketch.zip`` with ``<wnid>/`` folders; top-1 / top-5 over the 1000 classes."""

    NAME: ClassVar[str] = "imagenet-sketch"
    VERSION: ClassVar[int] = 1


@dataclass(frozen=True)
class ImageNetV2Protocol(SupervisedProtocol):
    """ImageNetV2 matched-frequency (Recht et al., ICML 2019, modestyachts/ImageNetV2): 10,000 new test images, 10
    per class, ``imagenetv2-matched-frequency-format-val/<k>/<hash>.jpeg`` where ``k`` is the class index (the
    authors' loader reads ``int(parent.name)``; a text-sorted ImageFolder would mislabel the classes). The
    threshold-0.7 and top-images variants are other datasets: a paper-track run on a folder named after one of them
    is refused. Top-1 / top-5 over the 1000 classes."""

    NAME: ClassVar[str] = "imagenetv2"
    VERSION: ClassVar[int] = 1


@dataclass(frozen=True)
class ImageNetCProtocol(SupervisedProtocol):
    """ImageNet-C (Hendrycks & Dietterich, ICLR 2019, hendrycks/robustness): val under 15 corruptions x 5
    severities (50,000 images each, ``<corruption>/<severity>/<wnid>/``).

    - Per corruption c: the top-1 error E_{c,s} at each severity; the Corruption Error CE_c = mean_s E_{c,s} /
      AlexNet's mean error on c (:data:`ALEXNET_ERR`), which is the standard sum_s E_{c,s} / sum_s E^AlexNet_{c,s}
      when all five severities are used (the paper setting); mCE = mean of CE_c over the listed standard
      corruptions, in % (AugMix ``imagenet.py::compute_mce``). The 4 extras have no AlexNet normaliser: they get
      ``top1_<c>`` only. ``top1`` is the mean accuracy over every (corruption, severity) evaluated.
    - Transform and head as ``imagenet-supervised``. The images are already 224 x 224 center crops; the variant's
      eval transform resizes them to ``224 / crop_pct`` and crops 224 again, as AugMix's and timm's evaluations do
      (hendrycks/robustness ``ImageNet-C/test.py`` only center-crops).
    """

    NAME: ClassVar[str] = "imagenet-c"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"corruptions": ("gaussian_noise", "fog", "contrast"), "severities": (1, 5)}

    corruptions: tuple[str, ...] = IMAGENET_C_CORRUPTIONS
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)

    def __post_init__(self) -> None:
        from methods.errors import VitbenchError

        unknown = [c for c in self.corruptions if c not in (*IMAGENET_C_CORRUPTIONS, *IMAGENET_C_EXTRAS)]
        if unknown or not self.corruptions:
            raise VitbenchError(
                f"--set corruptions: {unknown[0] if unknown else 'empty'} is not an ImageNet-C corruption; the 19 are "
                f"{', '.join((*IMAGENET_C_CORRUPTIONS, *IMAGENET_C_EXTRAS))}"
            )
        if not self.severities or any(s not in (1, 2, 3, 4, 5) for s in self.severities):
            raise VitbenchError(f"--set severities: {list(self.severities)}; ImageNet-C's severities are 1..5")
