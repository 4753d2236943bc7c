"""The mmseg 1.2 ``EncoderDecoder`` model config (Semantic FPN or UperNet head), generated from an EncoderSpec.

Nothing here imports mm*: like :mod:`benchmarks.dense.mmdet_config`, the config is plain dicts written in full
(no ``_base_`` chains) from an :class:`~methods.EncoderSpec` and the neck plan of :mod:`benchmarks.dense.neck`.
This module builds the model part only; the data pipeline, schedule and evaluator belong to the protocol of the
task that uses it (ADE20K), which adds them next to ``model``.

The two heads of the papers (DESIGN.md § Dense tasks), layouts as in mmseg's ``fpn_r50.py``/``upernet_r50.py``
and XCiT's/SelfPatch's ViT configs:

- ``semfpn`` (Semantic FPN, Kirillov et al. 2019): simple pyramid for a plain ViT, then ``FPN`` (4 outputs,
  ``neck_channels`` wide) and ``FPNHead`` (``channels`` = 128) over strides 4/8/16/32;
- ``upernet`` (UperNet, Xiao et al. 2018): simple pyramid for a plain ViT (no neck for a hierarchical encoder),
  then ``UPerHead`` (PPM scales 1/2/3/6, ``channels`` = 512) and an ``FCNHead`` auxiliary on the stride-16
  level (``in_index`` 2, 256 channels, loss weight 0.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from benchmarks.dense.backbone import BACKBONE_TYPE
from benchmarks.dense.neck import PYRAMID_TYPE, NeckPlan, pad_divisor, plan_neck
from methods.errors import VitbenchError

if TYPE_CHECKING:
    from methods.base import EncoderSpec

SEG_HEADS = ("semfpn", "upernet")
# The decode head's width per head (mmseg's configs): FPNHead 128, UPerHead 512.
HEAD_CHANNELS = {"semfpn": 128, "upernet": 512}
AUX_INDEX = 2  # UperNet's auxiliary FCN head reads the third level (stride 16), as in mmseg's and BEiT's configs


def plan_seg_neck(
    spec: EncoderSpec, head: str, pyramid_strides: Sequence[int] = (4, 8, 16, 32), neck_channels: int = 256
) -> NeckPlan:
    """The neck of ``head`` for ``spec``: Semantic FPN puts an FPN of ``len(pyramid_strides)`` outputs after the
    (simple) pyramid; UperNet, which has its own top-down path, takes the pyramid as it is."""
    if head not in SEG_HEADS:
        raise VitbenchError(f"unknown segmentation head {head!r} (expected one of {', '.join(SEG_HEADS)})")
    if head == "semfpn":
        return plan_neck(spec, pyramid_strides, neck_channels, len(pyramid_strides))
    return plan_neck(spec, pyramid_strides, fpn_channels=None)


def _loss(weight: float) -> dict[str, Any]:
    return {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": weight}


def build_mmseg_config(
    spec: EncoderSpec,
    head: str,
    *,
    num_classes: int,
    encoder_ref: Mapping[str, Any],
    mean: Sequence[float],
    std: Sequence[float],
    crop_size: tuple[int, int] = (512, 512),
    pyramid_strides: Sequence[int] = (4, 8, 16, 32),
    neck_channels: int = 256,
    channels: int | None = None,
    aux_channels: int = 256,
    aux_loss_weight: float = 0.4,
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout_ratio: float = 0.1,
    drop_path_rate: float = 0.0,
    num_heads: int | None = None,
    sync_bn: bool = True,
    slide_stride: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """``{"default_scope": "mmseg", "model": EncoderDecoder}`` for ``head`` ("semfpn" | "upernet"), plain data.

    ``encoder_ref`` names the encoder as in :func:`benchmarks.dense.backbone.encoder_ref`; ``mean``/``std`` are its
    input statistics on the 0..1 scale. ``crop_size`` is the training crop ``(h, w)``: the data preprocessor pads
    training batches to it, and test images to a multiple of every stride in play. ``channels`` is the decode
    head's width (None: 128 for Semantic FPN, 512 for UperNet). ``slide_stride`` switches inference from whole
    images to ``crop_size`` windows at that stride (UperNet's ADE20K setting: (341, 341) for 512 crops).
    """
    plan = plan_seg_neck(spec, head, pyramid_strides, neck_channels)
    divisor = pad_divisor(spec, plan)
    if any(c % divisor for c in crop_size):
        raise VitbenchError(f"crop_size {tuple(crop_size)} is not a multiple of {divisor}, the stride the neck needs")
    norm = {"type": "SyncBN" if sync_bn else "BN", "requires_grad": True}
    width = HEAD_CHANNELS[head] if channels is None else channels
    levels = list(range(len(plan.out_strides)))
    pyramid = {
        "type": PYRAMID_TYPE,
        "in_channels": list(plan.in_channels),
        "scales": list(plan.scales),
        "norm": norm["type"],
    }
    common = {"num_classes": num_classes, "norm_cfg": norm, "align_corners": False, "dropout_ratio": dropout_ratio}
    model: dict[str, Any] = {
        "type": "EncoderDecoder",
        # Builds in mmseg's scope even when another scope (mmdet, after a detection run) is the current default.
        "_scope_": "mmseg",
        "data_preprocessor": {
            "type": "SegDataPreProcessor",
            "mean": [255.0 * m for m in mean],
            "std": [255.0 * s for s in std],
            "bgr_to_rgb": True,
            "pad_val": 0,
            "seg_pad_val": 255,
            "size": tuple(crop_size),
            "test_cfg": {"size_divisor": divisor},
        },
        "backbone": {
            "type": BACKBONE_TYPE,
            "encoder": dict(encoder_ref),
            "drop_path_rate": drop_path_rate,
            "num_heads": num_heads,
        },
    }
    if head == "semfpn":
        fpn = {
            "type": "FPN",
            "in_channels": list(plan.in_channels),
            "out_channels": neck_channels,
            "num_outs": plan.fpn_num_outs,
        }
        model["neck"] = [pyramid, fpn] if plan.kind == "simple_pyramid+fpn" else fpn
        model["decode_head"] = {
            "type": "FPNHead",
            "in_channels": [neck_channels] * len(levels),
            "in_index": levels,
            "feature_strides": list(plan.out_strides),
            "channels": width,
            **common,
            "loss_decode": _loss(1.0),
        }
    else:
        if plan.kind == "simple_pyramid":
            model["neck"] = pyramid
        model["decode_head"] = {
            "type": "UPerHead",
            "in_channels": list(plan.in_channels),
            "in_index": levels,
            "pool_scales": tuple(pool_scales),
            "channels": width,
            **common,
            "loss_decode": _loss(1.0),
        }
        model["auxiliary_head"] = {
            "type": "FCNHead",
            "in_channels": plan.in_channels[AUX_INDEX],
            "in_index": AUX_INDEX,
            "channels": aux_channels,
            "num_convs": 1,
            "concat_input": False,
            **common,
            "loss_decode": _loss(aux_loss_weight),
        }
    model["train_cfg"] = {}
    model["test_cfg"] = (
        {"mode": "whole"}
        if slide_stride is None
        else {"mode": "slide", "crop_size": tuple(crop_size), "stride": tuple(slide_stride)}
    )
    return {"default_scope": "mmseg", "model": model}
