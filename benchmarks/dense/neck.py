"""Engine-neutral dense pieces: the neck planned from an encoder's spec, the simple pyramid that realises it.

Both engines' config builders (:mod:`~benchmarks.dense.mmdet_config`, :mod:`~benchmarks.dense.mmseg_config`) start
from :func:`plan_neck`; :class:`SimplePyramid` is a plain torch module that :mod:`~benchmarks.dense.mm_glue`
registers in mmdet's and mmseg's registries under :data:`PYRAMID_TYPE`. No mm* imports.

The neck follows from ``spec.reductions`` (DESIGN.md § Dense tasks):

- **plain ViT** (one map per requested block, all at the patch stride ``r``): the XCiT/SelfPatch simple pyramid
  turns the four maps into strides 4/8/16/32 (for ``r = 16``: 2x deconv, deconv, identity, max-pool), then FPN;
- **hierarchical** (maps already at several strides, e.g. GC ViT's 4/8/16/32): FPN directly.

A head that builds its own top-down path (UperNet) takes the pyramid without an FPN (``fpn_channels=None``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from methods.errors import VitbenchError

if TYPE_CHECKING:
    from methods.base import EncoderSpec

# The name under which mm_glue registers SimplePyramid in both engines' MODELS registries. No dots: mmengine reads
# "a.B" as "module B of registry scope a".
PYRAMID_TYPE = "VitbenchSimplePyramid"


# ------------------------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class NeckPlan:
    """How the encoder's maps become the head's pyramid; written into the record's probe card.

    ``scales[i]`` is the resize factor of map ``i`` in the simple pyramid (4.0 = two 2x deconvs, 0.5 = a 2x2
    max-pool); empty when the maps are used as they are. ``fpn_channels``/``fpn_num_outs`` are None without FPN.
    """

    kind: str  # "simple_pyramid+fpn" | "fpn" | "simple_pyramid" | "identity" (the last two: no FPN)
    in_channels: tuple[int, ...]
    in_strides: tuple[int, ...]
    out_strides: tuple[int, ...]  # strides FPN (or the head) sees; RoI extractors use these
    scales: tuple[float, ...]
    ops: tuple[str, ...]  # human-readable per level, e.g. "deconv2x-bn-gelu-deconv2x"
    fpn_channels: int | None
    fpn_num_outs: int | None

    @property
    def anchor_strides(self) -> tuple[int, ...]:
        """The strides of the head's inputs: FPN's extra outputs come from stride-2 max-pooling of its last level."""
        n_extra = (self.fpn_num_outs or len(self.out_strides)) - len(self.out_strides)
        extra = tuple(self.out_strides[-1] * 2 ** (i + 1) for i in range(n_extra))
        return self.out_strides + extra

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_channels": list(self.in_channels),
            "in_strides": list(self.in_strides),
            "out_strides": list(self.out_strides),
            "scales": list(self.scales),
            "ops": list(self.ops),
            "fpn_channels": self.fpn_channels,
            "fpn_num_outs": self.fpn_num_outs,
            "anchor_strides": list(self.anchor_strides),
        }


def _pyramid_op(scale: float) -> str:
    if scale > 1:
        n = int(math.log2(scale))
        return "-bn-gelu-".join(["deconv2x"] * n)
    if scale == 1:
        return "identity"
    return f"maxpool{int(round(1 / scale))}x"


def plan_neck(
    spec: EncoderSpec,
    pyramid_strides: Sequence[int] = (4, 8, 16, 32),
    fpn_channels: int | None = 256,
    fpn_num_outs: int = 5,
) -> NeckPlan:
    """Choose the neck from ``spec.reductions``.

    All reductions equal (a plain ViT: every block at the patch stride) -> simple pyramid to ``pyramid_strides``
    then FPN; otherwise (a hierarchical encoder) -> FPN on the maps as they are, which must then have strictly
    increasing strides. ``fpn_channels=None``: no FPN (the head has its own top-down path, as UperNet).
    """
    red = tuple(int(r) for r in spec.reductions)
    chans = tuple(int(c) for c in spec.channels)
    fpn = fpn_channels is not None
    if not red or len(red) != len(chans):
        raise VitbenchError(f"{spec.arch}: spec has {len(chans)} channels but {len(red)} reductions")
    if fpn and fpn_num_outs < len(red):
        raise VitbenchError(f"fpn_num_outs={fpn_num_outs} < {len(red)} encoder maps")
    if len(set(red)) == 1:
        r = red[0]
        if len(red) != len(pyramid_strides):
            raise VitbenchError(
                f"{spec.arch}: a plain ViT needs one dense index per pyramid level: {len(red)} maps "
                f"(indices {list(spec.indices)}) for strides {list(pyramid_strides)}"
            )
        scales = tuple(r / s for s in pyramid_strides)
        for s, f in zip(pyramid_strides, scales):
            if f <= 0 or not math.log2(f).is_integer():
                raise VitbenchError(
                    f"{spec.arch}: patch stride {r} cannot reach pyramid stride {s} by 2x deconvs or pooling "
                    "(needs a power-of-two ratio)"
                )
        return NeckPlan(
            "simple_pyramid+fpn" if fpn else "simple_pyramid",
            chans,
            red,
            tuple(int(s) for s in pyramid_strides),
            scales,
            tuple(_pyramid_op(f) for f in scales),
            fpn_channels,
            fpn_num_outs if fpn else None,
        )
    if any(b <= a for a, b in zip(red, red[1:])):
        raise VitbenchError(f"{spec.arch}: hierarchical maps need increasing strides, got {list(red)}")
    kind = "fpn" if fpn else "identity"
    return NeckPlan(kind, chans, red, red, (), ("identity",) * len(red), fpn_channels, fpn_num_outs if fpn else None)


def pad_divisor(spec: EncoderSpec, plan: NeckPlan) -> int:
    """Inputs are padded to a multiple of every stride in play (patch size, pyramid strides)."""
    return math.lcm(int(spec.size_divisor), *plan.in_strides, *plan.out_strides)


# ------------------------------------------------------------------------------------------------ the pyramid
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


# ------------------------------------------------------------------------------------------------ configs
def to_jsonable(obj: Any) -> Any:
    """Tuples -> lists, Paths -> strings, recursively: the config as stored in the record."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)
