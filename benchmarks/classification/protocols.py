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
