"""Protocols of the COCO detection tasks and the mmdet configs generated from them, in plain Python.

Nothing here imports mm*: a config is a nested ``dict`` built from an :class:`~methods.EncoderSpec` and a flat
protocol dataclass, so it can be generated, inspected and tested without the compiled stack. There are no
``_base_`` chains: :func:`build_mmdet_config` writes every field, and the harness saves the result next to the
record (as JSON in the record and as an mmengine ``.py`` dump in the work folder).

The neck follows from ``spec.reductions`` (DESIGN.md § Dense tasks):

- **plain ViT** (one map per requested block, all at the patch stride ``r``): the XCiT/SelfPatch simple pyramid
  turns the four maps into strides 4/8/16/32 (for ``r = 16``: 2x deconv, deconv, identity, max-pool), then FPN;
- **hierarchical** (maps already at several strides, e.g. GC ViT's 4/8/16/32): FPN directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.protocol import Protocol
from methods.base import EncoderSpec
from methods.errors import VitbenchError

# DETR-style multi-scale training (Swin/XCiT/SelfPatch/GC ViT detection configs): short side in 480..800 step 32.
DETR_SCALES: tuple[int, ...] = tuple(range(480, 801, 32))

# Names under which mm_glue registers its modules in mmdet's MODELS registry. No dots: mmengine reads
# "a.B" as "module B of registry scope a".
BACKBONE_TYPE = "VitbenchEncoderBackbone"
PYRAMID_TYPE = "VitbenchSimplePyramid"


# ------------------------------------------------------------------------------------------------ protocols
@dataclass(frozen=True)
class CocoDetProtocol(Protocol):
    """Mask R-CNN + FPN, 1x schedule: SelfPatch's COCO protocol (papers_part1.md § SelfPatch (b)).

    From ``alinlab/SelfPatch`` ``detection/configs/selfpatch/mask_rcnn_vit_small_12_p16_1x_coco.py`` (mmdet 2.x):
    12 epochs, LR x0.1 at epochs 8 and 11, linear warmup over 1000 iterations from 0.001x; AdamW lr 5e-5,
    betas (0.9, 0.999), weight decay 0.05 except parameters whose name contains ``pos_embed``/``cls_token``/
    ``norm``; drop-path 0.05; DETR-style augmentation (flip, then either a multi-scale resize with short side
    480..800 and long side <= 1333, or resize 400/500/600 + random crop 384..600 + multi-scale resize); test at
    (1333, 800); fp16; SyncBN in the pyramid.

    **LR scaling rule.** The config sets ``lr = 1e-4 / 2`` with 1 image per GPU, i.e. Swin's 1e-4 at batch 16
    halved for a total batch of 8 (8 GPUs x 1; the GPU count is not stated, 8 is the XCiT/Swin setting).
    We therefore read ``lr`` as the rate for ``base_batch_size = 8`` and scale it linearly with the real total
    batch, ``lr_eff = lr * world_size * batch_per_gpu / base_batch_size`` (mmengine's ``auto_scale_lr``), so
    8 GPUs x 1 image reproduce the paper exactly. The effective lr is written into the record.

    **Attention heads.** SelfPatch's official detection config builds the ViT-S backbone with ``num_heads=8``
    (copied from XCiT-S12) although it was pretrained with 6; the weights load either way because qkv is
    [1152, 384]. ``backbone_num_heads=None`` (default) keeps the pretrained head count, which is faithful to
    pretraining; ``backbone_num_heads=8`` reproduces the official config (and, presumably, the paper's number).

    Evaluation happens once, after the last epoch (the mmdet 2.x config evaluated every epoch and the paper
    reports the final one).
    """

    NAME: ClassVar[str] = "selfpatch-coco-maskrcnn-fpn-1x"
    VERSION: ClassVar[int] = 1
    # The smoke setting: 2 epochs of 128-px images, batch 2, a short warmup and a higher lr so that a few
    # iterations move the heads. It exercises every code path of the paper setting (multi-scale + crop branch,
    # checkpoint per epoch, resume) on CPU in tens of seconds.
    SMOKE: ClassVar[dict[str, Any]] = {
        "epochs": 2,
        "lr_steps": (2,),
        "warmup_iters": 2,
        "lr": 2e-4,
        "base_batch_size": 2,
        "batch_per_gpu": 2,
        "train_scales": (96, 112, 128),
        "crop_prescales": (80, 96, 112),
        "crop_size": (64, 96),
        "max_size": 160,
        "test_scale": (160, 128),
        "amp": False,
        "num_workers": 0,
        "log_interval": 1,
        # Narrower heads and fewer RoIs: at full width the mask head alone costs ~10 s per CPU iteration once the
        # RPN finds the (large) synthetic objects and most of the 512 sampled RoIs become positives.
        "fpn_channels": 64,
        "fc_channels": 256,
        "rcnn_samples": 64,
        "proposals": 200,
    }

    detector: str = "mask_rcnn"  # "mask_rcnn" | "cascade_mask_rcnn"
    bbox_head: str = "shared2fc"  # "shared2fc" (mmdet default, L1) | "4conv1fc_giou" (Swin/GC ViT cascade)
    epochs: int = 12
    lr_steps: tuple[int, ...] = (8, 11)  # epochs after which the lr is multiplied by 0.1
    warmup_iters: int = 1000
    warmup_ratio: float = 0.001
    lr: float = 5e-5  # for base_batch_size images per step; scaled linearly (see the class docstring)
    base_batch_size: int = 8
    batch_per_gpu: int = 1
    scale_lr: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.05
    no_decay_keys: tuple[str, ...] = ("pos_embed", "cls_token", "norm")  # substrings of parameter names
    drop_path_rate: float = 0.05
    backbone_num_heads: int | None = None  # None: as pretrained; 8: SelfPatch's official config for ViT-S
    pyramid_strides: tuple[int, ...] = (4, 8, 16, 32)
    fpn_channels: int = 256  # also the width of the RPN, RoI features and mask head convs (mmdet: 256)
    fpn_num_outs: int = 5
    fc_channels: int = 1024  # box head fully connected width
    rcnn_samples: int = 512  # RoIs sampled per image for the box/mask heads (25% positive)
    proposals: int = 1000  # RPN proposals kept per image (train and test; nms_pre is twice this in training)
    train_scales: tuple[int, ...] = DETR_SCALES  # short sides of the multi-scale branch
    crop_prescales: tuple[int, ...] = (400, 500, 600)  # short sides before the random crop
    crop_size: tuple[int, int] = (384, 600)  # (min, max) side of the random crop, 'absolute_range'
    max_size: int = 1333  # long-side cap of every resize
    test_scale: tuple[int, int] = (1333, 800)  # (long, short)
    flip_prob: float = 0.5
    sync_bn: bool = True  # SyncBN in the pyramid / conv heads (falls back to BN in a single process)
    amp: bool = True  # fp16 mixed precision on CUDA (ignored on CPU)
    train_split: str = "train2017"
    val_split: str = "val2017"
    num_workers: int = 2
    checkpoint_interval: int = 1  # epochs; the last two checkpoints are kept for resume
    log_interval: int = 50


@dataclass(frozen=True)
class CocoMaskRcnn3xProtocol(CocoDetProtocol):
    """GC ViT's Mask R-CNN 3x protocol (papers_part2.md § GC ViT; NVlabs/GCVit ``detection/configs/gcvit/
    mask_rcnn_gcvit_tiny_3x_coco.py``, mmdet 2.19): 36 epochs, steps 27/33, warmup 2500 iterations, AdamW 1e-4
    at a total batch of 16 (8 GPUs x 2, the mmdet ``coco_instance`` default), wd 0.05 except relative position
    bias tables and norms, drop-path 0.2 (GC ViT-T), same DETR-style augmentation, fp16, test at (1333, 800)."""

    NAME: ClassVar[str] = "gcvit-coco-maskrcnn-3x"
    VERSION: ClassVar[int] = 1

    epochs: int = 36
    lr_steps: tuple[int, ...] = (27, 33)
    warmup_iters: int = 2500
    lr: float = 1e-4
    base_batch_size: int = 16
    batch_per_gpu: int = 2
    no_decay_keys: tuple[str, ...] = ("relative_position_bias_table", "rel_pos", "norm")
    drop_path_rate: float = 0.2


@dataclass(frozen=True)
class CocoCascade3xProtocol(CocoMaskRcnn3xProtocol):
    """GC ViT's Cascade Mask R-CNN 3x protocol: as :class:`CocoMaskRcnn3xProtocol`, with three cascade stages of
    Swin-style ``4conv1fc`` box heads (SyncBN, GIoU loss x10, decoded-box regression)."""

    NAME: ClassVar[str] = "gcvit-coco-cascade-3x"
    VERSION: ClassVar[int] = 1

    detector: str = "cascade_mask_rcnn"
    bbox_head: str = "4conv1fc_giou"


# ------------------------------------------------------------------------------------------------ the neck
@dataclass(frozen=True)
class NeckPlan:
    """How the encoder's maps become the detector's pyramid; written into the record's probe card.

    ``scales[i]`` is the resize factor of map ``i`` in the simple pyramid (4.0 = two 2x deconvs, 0.5 = a 2x2
    max-pool); empty for FPN-only.
    """

    kind: str  # "simple_pyramid+fpn" | "fpn"
    in_channels: tuple[int, ...]
    in_strides: tuple[int, ...]
    out_strides: tuple[int, ...]  # strides FPN sees (RoI extractors use these)
    scales: tuple[float, ...]
    ops: tuple[str, ...]  # human-readable per level, e.g. "deconv2x-bn-gelu-deconv2x"
    fpn_channels: int
    fpn_num_outs: int

    @property
    def anchor_strides(self) -> tuple[int, ...]:
        """FPN's extra outputs come from stride-2 max-pooling of its last level."""
        extra = tuple(self.out_strides[-1] * 2 ** (i + 1) for i in range(self.fpn_num_outs - len(self.out_strides)))
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
    spec: EncoderSpec, pyramid_strides: Sequence[int] = (4, 8, 16, 32), fpn_channels: int = 256, fpn_num_outs: int = 5
) -> NeckPlan:
    """Choose the neck from ``spec.reductions``.

    All reductions equal (a plain ViT: every block at the patch stride) -> simple pyramid to ``pyramid_strides``
    then FPN; otherwise (a hierarchical encoder) -> FPN on the maps as they are, which must then have strictly
    increasing strides.
    """
    red = tuple(int(r) for r in spec.reductions)
    chans = tuple(int(c) for c in spec.channels)
    if not red or len(red) != len(chans):
        raise VitbenchError(f"{spec.arch}: spec has {len(chans)} channels but {len(red)} reductions")
    if fpn_num_outs < len(red):
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
            "simple_pyramid+fpn",
            chans,
            red,
            tuple(int(s) for s in pyramid_strides),
            scales,
            tuple(_pyramid_op(f) for f in scales),
            fpn_channels,
            fpn_num_outs,
        )
    if any(b <= a for a, b in zip(red, red[1:])):
        raise VitbenchError(f"{spec.arch}: hierarchical maps need increasing strides, got {list(red)}")
    return NeckPlan("fpn", chans, red, red, (), ("identity",) * len(red), fpn_channels, fpn_num_outs)


# ------------------------------------------------------------------------------------------------ heads
def _box_coder(stds: Sequence[float]) -> dict[str, Any]:
    return {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": list(stds)}


def _bbox_head(p: CocoDetProtocol, num_classes: int, stds: Sequence[float], norm: str) -> dict[str, Any]:
    kind = p.bbox_head
    common = {
        "in_channels": p.fpn_channels,
        "fc_out_channels": p.fc_channels,
        "roi_feat_size": 7,
        "num_classes": num_classes,
        "bbox_coder": _box_coder(stds),
        "reg_class_agnostic": False,
        "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0},
    }
    if kind == "shared2fc":
        return {"type": "Shared2FCBBoxHead", **common, "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}}
    if kind == "4conv1fc_giou":
        return {
            "type": "ConvFCBBoxHead",
            "num_shared_convs": 4,
            "num_shared_fcs": 1,
            "conv_out_channels": p.fpn_channels,
            **common,
            "reg_decoded_bbox": True,
            "norm_cfg": {"type": norm, "requires_grad": True},
            "loss_bbox": {"type": "GIoULoss", "loss_weight": 10.0},
        }
    raise VitbenchError(f"unknown bbox_head {kind!r} (expected 'shared2fc' or '4conv1fc_giou')")


def _assigner(pos: float, neg: float, min_pos: float, low_quality: bool) -> dict[str, Any]:
    return {
        "type": "MaxIoUAssigner",
        "pos_iou_thr": pos,
        "neg_iou_thr": neg,
        "min_pos_iou": min_pos,
        "match_low_quality": low_quality,
        "ignore_iof_thr": -1,
    }


def _sampler(num: int, pos_fraction: float, gt_as_proposals: bool) -> dict[str, Any]:
    return {
        "type": "RandomSampler",
        "num": num,
        "pos_fraction": pos_fraction,
        "neg_pos_ub": -1,
        "add_gt_as_proposals": gt_as_proposals,
    }


def _roi_extractor(size: int, strides: Sequence[int], channels: int) -> dict[str, Any]:
    return {
        "type": "SingleRoIExtractor",
        "roi_layer": {"type": "RoIAlign", "output_size": size, "sampling_ratio": 0},
        "out_channels": channels,
        "featmap_strides": list(strides),
    }


def _detector(p: CocoDetProtocol, plan: NeckPlan, num_classes: int) -> dict[str, Any]:
    """rpn_head / roi_head / train_cfg / test_cfg of mmdet's Mask R-CNN or Cascade Mask R-CNN (R50-FPN layout)."""
    norm = "SyncBN" if p.sync_bn else "BN"
    strides = plan.out_strides
    rpn_bbox_loss = (
        {"type": "L1Loss", "loss_weight": 1.0}
        if p.detector == "mask_rcnn"
        else {"type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 1.0}
    )
    rpn_head = {
        "type": "RPNHead",
        "in_channels": p.fpn_channels,
        "feat_channels": p.fpn_channels,
        "anchor_generator": {
            "type": "AnchorGenerator",
            "scales": [8],
            "ratios": [0.5, 1.0, 2.0],
            "strides": list(plan.anchor_strides),
        },
        "bbox_coder": _box_coder([1.0] * 4),
        "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0},
        "loss_bbox": rpn_bbox_loss,
    }
    c = p.fpn_channels
    mask_head = {
        "type": "FCNMaskHead",
        "num_convs": 4,
        "in_channels": c,
        "conv_out_channels": c,
        "num_classes": num_classes,
        "loss_mask": {"type": "CrossEntropyLoss", "use_mask": True, "loss_weight": 1.0},
    }
    rpn_train = {
        "assigner": _assigner(0.7, 0.3, 0.3, True),
        "sampler": _sampler(256, 0.5, False),
        "allowed_border": -1,
        "pos_weight": -1,
        "debug": False,
    }
    rpn_test = {
        "nms_pre": p.proposals,
        "max_per_img": p.proposals,
        "nms": {"type": "nms", "iou_threshold": 0.7},
        "min_bbox_size": 0,
    }
    rcnn_test = {
        "score_thr": 0.05,
        "nms": {"type": "nms", "iou_threshold": 0.5},
        "max_per_img": 100,
        "mask_thr_binary": 0.5,
    }
    if p.detector == "mask_rcnn":
        roi_head = {
            "type": "StandardRoIHead",
            "bbox_roi_extractor": _roi_extractor(7, strides, c),
            "bbox_head": _bbox_head(p, num_classes, (0.1, 0.1, 0.2, 0.2), norm),
            "mask_roi_extractor": _roi_extractor(14, strides, c),
            "mask_head": mask_head,
        }
        rcnn_train: Any = {
            "assigner": _assigner(0.5, 0.5, 0.5, True),
            "sampler": _sampler(p.rcnn_samples, 0.25, True),
            "mask_size": 28,
            "pos_weight": -1,
            "debug": False,
        }
        rpn_proposal = {
            "nms_pre": 2 * p.proposals,
            "max_per_img": p.proposals,
            "nms": {"type": "nms", "iou_threshold": 0.7},
            "min_bbox_size": 0,
        }
        det_type = "MaskRCNN"
    elif p.detector == "cascade_mask_rcnn":
        stage_stds = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
        roi_head = {
            "type": "CascadeRoIHead",
            "num_stages": 3,
            "stage_loss_weights": [1, 0.5, 0.25],
            "bbox_roi_extractor": _roi_extractor(7, strides, c),
            "bbox_head": [_bbox_head(p, num_classes, s, norm) for s in stage_stds],
            "mask_roi_extractor": _roi_extractor(14, strides, c),
            "mask_head": mask_head,
        }
        rcnn_train = [
            {
                "assigner": _assigner(t, t, t, False),
                "sampler": _sampler(p.rcnn_samples, 0.25, True),
                "mask_size": 28,
                "pos_weight": -1,
                "debug": False,
            }
            for t in (0.5, 0.6, 0.7)
        ]
        # mmdet's cascade config keeps 2000 proposals in training (Mask R-CNN: 1000)
        rpn_proposal = {
            "nms_pre": 2 * p.proposals,
            "max_per_img": 2 * p.proposals,
            "nms": {"type": "nms", "iou_threshold": 0.7},
            "min_bbox_size": 0,
        }
        det_type = "CascadeRCNN"
    else:
        raise VitbenchError(f"unknown detector {p.detector!r} (expected 'mask_rcnn' or 'cascade_mask_rcnn')")
    return {
        "type": det_type,
        "rpn_head": rpn_head,
        "roi_head": roi_head,
        "train_cfg": {"rpn": rpn_train, "rpn_proposal": rpn_proposal, "rcnn": rcnn_train},
        "test_cfg": {"rpn": rpn_test, "rcnn": rcnn_test},
    }


# ------------------------------------------------------------------------------------------------ the config
def pad_divisor(spec: EncoderSpec, plan: NeckPlan) -> int:
    """Inputs are padded to a multiple of every stride in play (patch size, pyramid strides)."""
    return math.lcm(int(spec.size_divisor), *plan.in_strides, *plan.out_strides)


def _pipelines(p: CocoDetProtocol) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """DETR-style train augmentation (mmdet 3 names: ``RandomChoice`` of two branches) and the test resize.

    mmdet reads a ``(long, short)`` scale with ``keep_ratio`` as "short side = short, long side <= long".
    """
    multi = {"type": "RandomChoiceResize", "scales": [(p.max_size, s) for s in p.train_scales], "keep_ratio": True}
    train = [
        {"type": "LoadImageFromFile", "backend_args": None},
        {"type": "LoadAnnotations", "with_bbox": True, "with_mask": True},
        {"type": "RandomFlip", "prob": p.flip_prob},
        {
            "type": "RandomChoice",
            "transforms": [
                [multi],
                [
                    {
                        "type": "RandomChoiceResize",
                        "scales": [(p.max_size, s) for s in p.crop_prescales],
                        "keep_ratio": True,
                    },
                    {
                        "type": "RandomCrop",
                        "crop_type": "absolute_range",
                        "crop_size": tuple(p.crop_size),
                        "allow_negative_crop": True,
                    },
                    multi,
                ],
            ],
        },
        {"type": "PackDetInputs"},
    ]
    test = [
        {"type": "LoadImageFromFile", "backend_args": None},
        {"type": "Resize", "scale": tuple(p.test_scale), "keep_ratio": True},
        {"type": "LoadAnnotations", "with_bbox": True, "with_mask": True},
        {"type": "PackDetInputs", "meta_keys": ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")},
    ]
    return train, test


def ann_file(split: str) -> str:
    """COCO's layout: ``annotations/instances_<split>.json`` next to the ``<split>/`` image folder."""
    return f"annotations/instances_{split}.json"


def build_mmdet_config(
    spec: EncoderSpec,
    protocol: CocoDetProtocol,
    *,
    encoder_ref: Mapping[str, Any],
    classes: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    data_root: Path | str,
    work_dir: Path | str,
    seed: int = 0,
    launcher: str = "none",
    device: str = "cpu",
    resume_from: str | None = None,
) -> dict[str, Any]:
    """The complete mmengine/mmdet config of one run, as plain dicts/lists/tuples.

    ``encoder_ref`` identifies the encoder (method, variant, weights, seed, sha256, and the in-process key under
    which the harness registered the built :class:`~methods.Encoder`); ``mean``/``std`` are the encoder's input
    statistics on the 0..1 scale. ``resume_from`` is a checkpoint this run wrote itself (see ``mm_glue``).
    """
    p = protocol
    plan = plan_neck(spec, p.pyramid_strides, p.fpn_channels, p.fpn_num_outs)
    norm = "SyncBN" if p.sync_bn else "BN"
    fpn = {
        "type": "FPN",
        "in_channels": list(plan.in_channels),
        "out_channels": p.fpn_channels,
        "num_outs": p.fpn_num_outs,
    }
    if plan.kind == "simple_pyramid+fpn":
        neck: Any = [
            {"type": PYRAMID_TYPE, "in_channels": list(plan.in_channels), "scales": list(plan.scales), "norm": norm},
            fpn,
        ]
    else:
        neck = fpn
    backbone = {
        "type": BACKBONE_TYPE,
        "encoder": dict(encoder_ref),
        "drop_path_rate": p.drop_path_rate,
        "num_heads": p.backbone_num_heads,
    }
    model = {
        "data_preprocessor": {
            "type": "DetDataPreprocessor",
            "mean": [255.0 * m for m in mean],
            "std": [255.0 * s for s in std],
            "bgr_to_rgb": True,
            "pad_mask": True,
            "pad_size_divisor": pad_divisor(spec, plan),
        },
        "backbone": backbone,
        "neck": neck,
        **_detector(p, plan, len(classes)),
    }
    model = {"type": model.pop("type"), **model}
    train_pipeline, test_pipeline = _pipelines(p)
    root = str(Path(data_root))
    metainfo = {"classes": tuple(classes)}
    workers = {"num_workers": p.num_workers, "persistent_workers": p.num_workers > 0}
    train_dataloader = {
        "batch_size": p.batch_per_gpu,
        **workers,
        "sampler": {"type": "DefaultSampler", "shuffle": True},
        "batch_sampler": {"type": "AspectRatioBatchSampler"},
        "dataset": {
            "type": "CocoDataset",
            "data_root": root,
            "metainfo": metainfo,
            "ann_file": ann_file(p.train_split),
            "data_prefix": {"img": f"{p.train_split}/"},
            "filter_cfg": {"filter_empty_gt": True, "min_size": 32},
            "pipeline": train_pipeline,
            "backend_args": None,
        },
    }
    test_dataloader = {
        "batch_size": 1,
        **workers,
        "drop_last": False,
        "sampler": {"type": "DefaultSampler", "shuffle": False},
        "dataset": {
            "type": "CocoDataset",
            "data_root": root,
            "metainfo": metainfo,
            "ann_file": ann_file(p.val_split),
            "data_prefix": {"img": f"{p.val_split}/"},
            "test_mode": True,
            "pipeline": test_pipeline,
            "backend_args": None,
        },
    }
    work = Path(work_dir)
    # format_only: mmdet only dumps the detections; vitbench's own COCOeval (coco.coco_metrics) scores them, so
    # there is one metric code path for every engine and it is tested against pycocotools.
    test_evaluator = {
        "type": "CocoMetric",
        "ann_file": str(Path(root) / ann_file(p.val_split)),
        "metric": ["bbox", "segm"],
        "format_only": True,
        "outfile_prefix": str(work / "detections" / "coco"),
        "backend_args": None,
    }
    amp = p.amp and device.startswith("cuda")
    optim_wrapper = {
        "type": "AmpOptimWrapper" if amp else "OptimWrapper",
        "optimizer": {"type": "AdamW", "lr": p.lr, "betas": tuple(p.betas), "weight_decay": p.weight_decay},
        "paramwise_cfg": {"custom_keys": {k: {"decay_mult": 0.0} for k in p.no_decay_keys}},
    }
    param_scheduler = [
        {"type": "LinearLR", "start_factor": p.warmup_ratio, "by_epoch": False, "begin": 0, "end": p.warmup_iters},
        {
            "type": "MultiStepLR",
            "begin": 0,
            "end": p.epochs,
            "by_epoch": True,
            "milestones": list(p.lr_steps),
            "gamma": 0.1,
        },
    ]
    return {
        "default_scope": "mmdet",
        "model": model,
        "work_dir": str(work),
        "train_dataloader": train_dataloader,
        "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": p.epochs, "val_interval": p.epochs + 1},
        "test_dataloader": test_dataloader,
        "test_evaluator": test_evaluator,
        "test_cfg": {"type": "TestLoop"},
        "optim_wrapper": optim_wrapper,
        "param_scheduler": param_scheduler,
        "auto_scale_lr": {"enable": p.scale_lr, "base_batch_size": p.base_batch_size},
        "default_hooks": {
            "timer": {"type": "IterTimerHook"},
            "logger": {"type": "LoggerHook", "interval": p.log_interval},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": {"type": "CheckpointHook", "interval": p.checkpoint_interval, "max_keep_ckpts": 2},
            "sampler_seed": {"type": "DistSamplerSeedHook"},
        },
        "env_cfg": {
            "cudnn_benchmark": False,
            "mp_cfg": {"mp_start_method": "fork", "opencv_num_threads": 0},
            "dist_cfg": {"backend": "nccl" if device.startswith("cuda") else "gloo"},
        },
        # Parameters of the encoder the detector never reaches (a final norm, a class-attention head) would
        # make DDP fail; letting DDP find them is cheaper than pruning per method.
        "model_wrapper_cfg": {"type": "MMDistributedDataParallel", "find_unused_parameters": True},
        "log_processor": {"type": "LogProcessor", "window_size": p.log_interval, "by_epoch": True},
        "log_level": "INFO",
        "launcher": launcher,
        "randomness": {"seed": seed, "deterministic": False},
        # Resume only from a checkpoint the harness found in its own work folder (mm_glue loads those through a
        # restricted unpickler); never let mmengine auto-resume from an arbitrary path.
        "load_from": resume_from,
        "resume": resume_from is not None,
    }


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
