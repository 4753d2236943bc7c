"""The torch modules the dense harness puts around an :class:`~methods.Encoder` (no mm* imports).

:class:`EncoderBackbone` turns an encoder into a detector backbone (``forward_dense`` as a tuple) and prepares it
for fine-tuning; :class:`SimplePyramid` is the XCiT/SelfPatch pyramid that turns a plain ViT's single-stride maps
into strides 4/8/16/32. :mod:`benchmarks.dense.mm_glue` registers both in mmdet's registry; keeping them free
of mm* lets the default test suite check their shapes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from methods import Encoder, build_encoder
from methods.errors import VitbenchError

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
    """A detector backbone around an :class:`~methods.Encoder`: ``[B, 3, H, W] -> (map_0, ..., map_k)`` with
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
                encoder["method"], encoder["variant"], weights=encoder["weights"], seed=int(encoder.get("seed", 0))
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


class SimplePyramid(nn.Module):
    """XCiT/SelfPatch's pyramid for a plain ViT: resizes map ``i`` by ``scales[i]``, keeping its channels.

    A factor of 2^k > 1 is k stride-2 transposed convs with norm + GELU between them (4x: deconv, BN, GELU,
    deconv); 1 is the identity; 2^-k is a 2^k x 2^k max-pool. With ViT/16 maps ``[B, D, H/16, W/16]`` and scales
    (4, 2, 1, 0.5) the outputs are ``[B, D, H/4, W/4]``, ``[B, D, H/8, W/8]``, ``[B, D, H/16, W/16]``,
    ``[B, D, H/32, W/32]``.
    """

    def __init__(self, in_channels: Sequence[int], scales: Sequence[float], norm: str = "SyncBN") -> None:
        super().__init__()
        if len(in_channels) != len(scales):
            raise ValueError(f"{len(in_channels)} input maps but {len(scales)} scales")
        # SyncBN as in SelfPatch; torch's SyncBatchNorm acts as plain BN outside a multi-process group.
        norm_cls = {"SyncBN": nn.SyncBatchNorm, "BN": nn.BatchNorm2d}[norm]
        self.levels = nn.ModuleList()
        for c, s in zip(in_channels, scales):
            k = math.log2(s)
            if not k.is_integer():
                raise ValueError(f"scale {s} is not a power of two")
            if k > 0:
                layers: list[nn.Module] = []
                for j in range(int(k)):
                    if j:
                        layers += [norm_cls(c), nn.GELU()]
                    layers.append(nn.ConvTranspose2d(c, c, kernel_size=2, stride=2))
                self.levels.append(nn.Sequential(*layers))
            elif k == 0:
                self.levels.append(nn.Identity())
            else:
                f = int(round(1 / s))
                self.levels.append(nn.MaxPool2d(kernel_size=f, stride=f))

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``(map_i [B, C_i, h, w]) -> (map_i [B, C_i, h * scales[i], w * scales[i]])``."""
        if len(inputs) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} maps, got {len(inputs)}")
        return tuple(level(x) for level, x in zip(self.levels, inputs))
