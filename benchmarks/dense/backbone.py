"""The engine-neutral detector/segmenter backbone: an :class:`~methods.Encoder` made trainable (no mm* imports).

:class:`EncoderBackbone` turns an encoder into a backbone (``forward_dense`` as a tuple) and prepares it for
fine-tuning (a copy, unfrozen, with drop-path and optionally re-split attention heads). Configs stay plain data:
they name the encoder by :func:`encoder_ref`, and the live encoder the harness built is found by its key.
:mod:`benchmarks.dense.mm_glue` registers the class in mmdet's and mmseg's registries under :data:`BACKBONE_TYPE`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from methods import Encoder, build_encoder
from methods.errors import VitbenchError

if TYPE_CHECKING:
    from methods.base import EncoderSpec

# The name under which mm_glue registers EncoderBackbone in both engines' MODELS registries (no dots: mmengine
# reads "a.B" as "module B of registry scope a").
BACKBONE_TYPE = "VitbenchEncoderBackbone"
# Where the encoder's parameters sit in a detector/segmenter built around EncoderBackbone: an encoder parameter
# ``model.blocks.0.attn.qkv.weight`` is the engine's ``backbone.encoder.model.blocks.0.attn.qkv.weight``.
ENCODER_PREFIX = "backbone.encoder."

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


def scaled_indices(indices: Sequence[int], num_blocks: int, reference_depth: int = 12) -> tuple[int, ...]:
    """Block indices given for a ``reference_depth``-block ViT, at the same fractions of a ``num_blocks``-block one:
    ``round((i + 1) * num_blocks / reference_depth) - 1`` (halves round up). (2, 5, 8, 11) for 12 blocks is
    (3, 7, 11, 15) for 16 and (5, 11, 17, 23) for 24."""
    out = tuple(int(math.floor((i + 1) * num_blocks / reference_depth + 0.5)) - 1 for i in indices)
    if any(not 0 <= i < num_blocks for i in out) or len(set(out)) != len(out):
        raise VitbenchError(
            f"block indices {list(indices)} (for {reference_depth} blocks) do not fit {num_blocks} blocks"
        )
    return out


def dense_spec(spec: EncoderSpec, vit_indices: Sequence[int] | None) -> EncoderSpec:
    """``spec`` with the dense maps a protocol asks for: for a plain ViT (``family == "vit"``, every block at the
    patch stride and width) the blocks :func:`scaled_indices` picks from ``vit_indices``; any other encoder, or
    ``vit_indices=None``, keeps the adapter's own maps (a hierarchical encoder's stages)."""
    if vit_indices is None or spec.family != "vit":
        return spec
    idx = scaled_indices(vit_indices, spec.num_blocks)
    n = len(idx)
    return dataclasses.replace(
        spec, indices=idx, channels=(spec.block_dim,) * n, reductions=(int(spec.reductions[0]),) * n
    )


def paramwise_cfg(
    spec: EncoderSpec, no_decay_keys: Sequence[str], layer_decay: float, layer_ids: Mapping[str, int] | None
) -> dict[str, Any]:
    """mmengine's ``paramwise_cfg``: no weight decay on parameters whose name contains a ``no_decay_keys`` entry,
    and, for a plain ViT with ``layer_decay != 1``, one custom key per encoder parameter with BEiT's layer-wise lr.

    ``layer_ids`` is :meth:`methods.Encoder.layer_ids` (0 = embeddings, ``i + 1`` = block ``i``, ``L + 1`` = after
    the last of ``L`` blocks); a parameter at layer ``j`` trains at ``lr * layer_decay ** (L + 1 - j)``, the neck and
    heads at ``lr``. The keys are full parameter names (``backbone.encoder.model.blocks.3.attn.qkv.weight``), which
    mmengine matches before the shorter no-decay substrings.
    """
    custom: dict[str, dict[str, float]] = {k: {"decay_mult": 0.0} for k in no_decay_keys}
    if layer_decay != 1.0 and spec.family == "vit":
        if not layer_ids:
            raise VitbenchError("layer_decay is set but no layer ids of the encoder's parameters were given")
        top = spec.num_blocks + 1
        for name, layer in layer_ids.items():
            decay = 0.0 if any(k in name for k in no_decay_keys) else 1.0
            custom[ENCODER_PREFIX + name] = {"lr_mult": layer_decay ** (top - layer), "decay_mult": decay}
    return {"custom_keys": custom}


def layer_decay_groups(cfg: Mapping[str, Any]) -> dict[float, list[str]]:
    """lr multiplier -> the encoder parameters at it, read back from a generated config (for the record / tests)."""
    groups: dict[float, list[str]] = {}
    for key, val in cfg["optim_wrapper"]["paramwise_cfg"]["custom_keys"].items():
        if key.startswith(ENCODER_PREFIX) and "lr_mult" in val:
            groups.setdefault(val["lr_mult"], []).append(key[len(ENCODER_PREFIX) :])
    return dict(sorted(groups.items()))


def check_dense_input(encoder: Encoder, divisor: int, device: str, why: str) -> None:
    """Fail early, naming the encoder, if ``forward_dense`` cannot take a non-native input size.

    Dense tasks feed images at their own (padded) sizes, multiples of ``divisor``. An encoder whose attention windows
    or position tables were fixed at construction would otherwise crash deep inside the first training step. Runs
    one ``[1, C, 2 * divisor, 3 * divisor]`` forward and checks the maps against ``spec.channels``/``reductions``.
    """
    h, w = 2 * divisor, 3 * divisor
    try:
        with torch.inference_mode():
            feats = encoder.forward_dense(torch.zeros(1, encoder.spec.in_chans, h, w, device=device))
    except Exception as err:  # any failure here means the same failure later, inside the engine
        i = encoder.identity
        raise VitbenchError(
            f"{i.method}:{i.variant} ({i.arch}): forward_dense fails on a {h}x{w} input ({type(err).__name__}: "
            f"{str(err)[:120]}); {why} padded to multiples of {divisor}, so this encoder's adapter must accept "
            "them (e.g. pad to its windows instead of fixing img_size)"
        ) from None
    got = [tuple(f.shape[1:]) for f in feats]
    want = [(c, h // r, w // r) for c, r in zip(encoder.spec.channels, encoder.spec.reductions)]
    if got != want:
        raise VitbenchError(
            f"{encoder.identity.arch}: forward_dense gave maps {got} for a {h}x{w} input; its spec "
            f"(channels, reductions) promises {want}"
        )


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
    m: Any  # timm attention modules: plain-int attributes, which nn.Module's typing does not know
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
    ``vit_indices`` picks the blocks a plain ViT returns (see :func:`dense_spec`; None: the adapter's own).
    """

    def __init__(
        self,
        encoder: Mapping[str, Any],
        drop_path_rate: float = 0.0,
        num_heads: int | None = None,
        vit_indices: Sequence[int] | None = None,
    ) -> None:
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
        enc.spec = dense_spec(enc.spec, vit_indices)
        self.drop_path_blocks = set_drop_path(enc, drop_path_rate)
        self.num_heads_changed = set_num_heads(enc, num_heads) if num_heads else 0
        self.encoder = enc

    def init_weights(self) -> None:
        """The encoder arrives with its pretrained (or seeded random) weights: nothing to initialise."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[B, 3, H, W] -> tuple of [B, C_i, H / r_i, W / r_i]`` (``forward_dense``)."""
        return tuple(self.encoder.forward_dense(x))
