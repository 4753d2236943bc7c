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
    recipes trained). Heads train on 1 - ``holdout_fraction`` of train, the best hold-out top-1 is selected.
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
