"""The engine-neutral detector/segmenter backbone: an :class:`~methods.Encoder` made trainable (no mm* imports).

:class:`EncoderBackbone` turns an encoder into a backbone (``forward_dense`` as a tuple) and prepares it for
fine-tuning (a copy, unfrozen, with drop-path and optionally re-split attention heads). Configs stay plain data:
they name the encoder by :func:`encoder_ref`, and the live encoder the harness built is found by its key.
:mod:`benchmarks.dense.mm_glue` registers the class in mmdet's and mmseg's registries under :data:`BACKBONE_TYPE`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from methods import Encoder, build_encoder
from methods.errors import VitbenchError

# The name under which mm_glue registers EncoderBackbone in both engines' MODELS registries (no dots: mmengine
# reads "a.B" as "module B of registry scope a").
BACKBONE_TYPE = "VitbenchEncoderBackbone"

# Encoders built by the harness in this process, by key: the generated config names the key (configs stay plain
# data), and a config used outside ``vitbench run`` rebuilds the encoder from its method/variant/weights instead.
_LIVE_ENCODERS: dict[str, Encoder] = {}


def encoder_key(encoder: Encoder) -> str:
    """A stable key for ``encoder``: method, variant and weights identity (sha256, or arch + seed if random)."""
    i = encoder.identity
    return f"{i.method}:{i.variant}@{i.weights_id}"


def register_live_encoder(encoder: Encoder) -> str:
    """Make ``encoder`` available to :class:`EncoderBackbone` in this process; returns its key."""
    key = encoder_key(encoder)
    _LIVE_ENCODERS[key] = encoder
    return key


def encoder_ref(encoder: Encoder) -> dict[str, Any]:
    """What the generated config stores about the encoder: enough to rebuild it, plus the in-process key."""
    i = encoder.identity
    return {
        "key": encoder_key(encoder),
        "method": i.method,
        "variant": i.variant,
        "weights": i.weights_source,
        "sha256": i.weights_sha256,
        "seed": i.seed,
        **({"resample_pos_embed": True} if i.load_report and i.load_report.resample_pos_embed else {}),
    }


def set_drop_path(module: nn.Module, rate: float) -> int:
    """Stochastic depth with timm's linear decay rule (0 at the first block, ``rate`` at the last).

    A "block" is any submodule holding timm's ``drop_path``/``drop_path1``/``drop_path2`` slots, in definition
    order, so ViT, GC ViT and ResNet blocks are all found without knowing their classes. Returns the number of
    blocks; ``rate == 0`` turns stochastic depth off.
    """
    from timm.layers import DropPath

    names = ("drop_path", "drop_path1", "drop_path2")
    blocks = [m for m in module.modules() if any(isinstance(getattr(m, n, None), nn.Module) for n in names)]
    for i, block in enumerate(blocks):
        p = rate * i / max(len(blocks) - 1, 1)
        for n in names:
            if isinstance(getattr(block, n, None), nn.Module):
                setattr(block, n, DropPath(p) if p > 0 else nn.Identity())
    return len(blocks)


def set_num_heads(module: nn.Module, num_heads: int) -> int:
    """Re-split every timm ViT self-attention into ``num_heads`` heads (same weights, new head partition).

    SelfPatch's official detection config runs its 6-head ViT-S with 8 heads; this reproduces it. Only
    attention without per-head parameters can be re-split (qkv [3 * D, D] is head-agnostic; a per-head q/k norm
    is not). Returns the number of attention modules changed.
    """
    n = 0
    for m in module.modules():
        if not (hasattr(m, "num_heads") and hasattr(m, "head_dim") and isinstance(getattr(m, "qkv", None), nn.Linear)):
            continue
        dim = m.num_heads * m.head_dim
        if dim % num_heads:
            raise VitbenchError(f"backbone_num_heads={num_heads} does not divide the attention width {dim}")
        if not isinstance(getattr(m, "q_norm", nn.Identity()), nn.Identity):
            raise VitbenchError("backbone_num_heads: attention with a per-head q/k norm cannot be re-split")
        m.num_heads, m.head_dim = num_heads, dim // num_heads
        m.scale = m.head_dim**-0.5
        n += 1
    if n == 0:
        raise VitbenchError("backbone_num_heads is set but the encoder has no timm ViT attention to re-split")
    return n


class EncoderBackbone(nn.Module):
    """A detector/segmenter backbone around an :class:`~methods.Encoder`: ``[B, 3, H, W] -> (map_0, ..., map_k)``,
    ``map_i`` of shape ``[B, spec.channels[i], H / spec.reductions[i], W / spec.reductions[i]]``.

    ``encoder`` is the config's reference (see :func:`encoder_ref`). The live encoder registered under its key is
    *copied* (the caller's frozen encoder stays untouched), unfrozen, and given ``drop_path_rate`` and, if set,
    ``num_heads``; without a live one the encoder is rebuilt from method/variant/weights, and the sha256 must match.
    """

    def __init__(self, encoder: Mapping[str, Any], drop_path_rate: float = 0.0, num_heads: int | None = None) -> None:
        super().__init__()
        live = _LIVE_ENCODERS.get(str(encoder.get("key")))
        if live is not None:
            enc = copy.deepcopy(live)
        else:
            enc = build_encoder(
                encoder["method"],
                encoder["variant"],
                weights=encoder["weights"],
                seed=int(encoder.get("seed", 0)),
                resample_pos_embed=bool(encoder.get("resample_pos_embed", False)),
            )
            if encoder.get("sha256") and enc.identity.weights_sha256 != encoder["sha256"]:
                raise VitbenchError(
                    f"weights {encoder['weights']}: sha256 {enc.identity.weights_sha256} differs "
                    f"from the config's {encoder['sha256']}"
                )
        enc.requires_grad_(True)
        self.drop_path_blocks = set_drop_path(enc, drop_path_rate)
        self.num_heads_changed = set_num_heads(enc, num_heads) if num_heads else 0
        self.encoder = enc

    def init_weights(self) -> None:
        """The encoder arrives with its pretrained (or seeded random) weights: nothing to initialise."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[B, 3, H, W] -> tuple of [B, C_i, H / r_i, W / r_i]`` (``forward_dense``)."""
        return tuple(self.encoder.forward_dense(x))
