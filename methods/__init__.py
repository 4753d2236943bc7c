"""vitbench method adapters: official checkpoints -> one :class:`Encoder` interface.

>>> from methods import build_encoder
>>> enc = build_encoder("dino", "vits16", weights="random")
>>> enc.forward_global(torch.randn(2, 3, 224, 224)).shape
torch.Size([2, 384])
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from methods.errors import CheckpointError, UnknownNameError, UnsafeCheckpointError, VitbenchError
from methods.registry import get_adapter, list_methods, register

if TYPE_CHECKING:
    from methods.base import DataConfig, Encoder, EncoderSpec, MethodAdapter, Paper, Variant

__all__ = [
    "CheckpointError",
    "DataConfig",
    "Encoder",
    "EncoderSpec",
    "MethodAdapter",
    "Paper",
    "UnknownNameError",
    "UnsafeCheckpointError",
    "Variant",
    "VitbenchError",
    "build_encoder",
    "get_adapter",
    "list_methods",
    "parse_method",
    "register",
]
_LAZY = {"DataConfig", "Encoder", "EncoderSpec", "MethodAdapter", "Paper", "Variant"}


def __getattr__(name: str) -> Any:
    """The encoder classes import torch and timm: load them on first use, so that reading records, building the
    leaderboard or listing methods does not pay for it."""
    if name in _LAZY:
        return getattr(importlib.import_module("methods.base"), name)
    raise AttributeError(f"module 'methods' has no attribute {name!r}")


def parse_method(ref: str) -> tuple[str, str | None]:
    """``"dino:vitb16" -> ("dino", "vitb16")``; ``"dino" -> ("dino", None)`` (the default variant)."""
    name, _, variant = ref.partition(":")
    return name, (variant or None)


def build_encoder(
    name: str,
    variant: str | None = None,
    weights: str | Path | None = None,
    seed: int = 0,
    classifier: bool = False,
    *,
    resample_pos_embed: bool = False,
) -> Encoder:
    """Build ``name``'s ``variant`` with ``weights`` (a path, URL, ``hf-hub:`` id, ``"random"``, or None for the
    variant's pinned URL). ``name`` may carry the variant as ``"method:variant"``. ``classifier``: keep the head the
    authors released (``Encoder.forward_logits``); an error for a backbone-only variant. ``resample_pos_embed``:
    accept a position table of any grid, resampled (the load report says so)."""
    if variant is None:
        name, variant = parse_method(name)
    return get_adapter(name).build(variant, weights, seed, classifier=classifier, resample_pos_embed=resample_pos_embed)
