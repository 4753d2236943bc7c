"""The mmseg 1.2 config of an ADE20K run (Semantic FPN or UperNet), generated in plain Python from an EncoderSpec.

Nothing here imports mm*: like :mod:`benchmarks.dense.mmdet_config`, the config is plain dicts written in full
(no ``_base_`` chains) from an :class:`~methods.EncoderSpec`, the neck plan of :mod:`benchmarks.dense.neck` and an
ADE20K protocol (:mod:`benchmarks.dense.protocols`). :func:`build_seg_model` writes the ``EncoderDecoder``;
:func:`build_mmseg_config` adds the data pipelines, the optimiser (with layer-wise lr decay groups), the iteration
schedule, the evaluator and the multi-scale + flip test.

The two heads of the papers (DESIGN.md § Dense tasks), layouts as in mmseg's ``fpn_r50.py``/``upernet_r50.py``
and XCiT's/SelfPatch's ViT configs:

- ``semfpn`` (Semantic FPN, Kirillov et al. 2019): ``FPN`` (4 outputs, ``neck_channels`` wide) and ``FPNHead``
  (``channels`` = 128) with ``feature_strides`` 4/8/16/32; a plain ViT's maps go through the simple pyramid first,
  or straight into FPN at the patch stride (``pyramid=False``: SelfPatch's setting);
- ``upernet`` (UperNet, Xiao et al. 2018): simple pyramid for a plain ViT (no neck for a hierarchical encoder),
  then ``UPerHead`` (PPM scales 1/2/3/6, ``channels`` = 512) and an ``FCNHead`` auxiliary on the stride-16
  level (``in_index`` 2, 256 channels, loss weight 0.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.dense.backbone import BACKBONE_TYPE, dense_spec, paramwise_cfg
from benchmarks.dense.neck import PYRAMID_TYPE, NeckPlan, pad_divisor, plan_neck
from benchmarks.dense.protocols import Ade20kSemFpnProtocol, Ade20kUperNetProtocol
from methods.errors import VitbenchError

if TYPE_CHECKING:
    from methods.base import EncoderSpec

SEG_HEADS = ("semfpn", "upernet")
# The decode head's width per head (mmseg's configs): FPNHead 128, UPerHead 512.
HEAD_CHANNELS = {"semfpn": 128, "upernet": 512}
AUX_INDEX = 2  # UperNet's auxiliary FCN head reads the third level (stride 16), as in mmseg's and BEiT's configs
# The metric mm_glue registers in mmseg's METRICS: mmseg's IoUMetric plus the per-class IoU.
IOU_METRIC_TYPE = "VitbenchIoUMetric"

SegProtocol = Ade20kSemFpnProtocol | Ade20kUperNetProtocol


def plan_seg_neck(
    spec: EncoderSpec,
    head: str,
    pyramid_strides: Sequence[int] = (4, 8, 16, 32),
    neck_channels: int = 256,
    pyramid: bool = True,
) -> NeckPlan:
    """The neck of ``head`` for ``spec``: Semantic FPN puts an FPN of ``len(pyramid_strides)`` outputs after the
    (simple) pyramid; UperNet, which has its own top-down path, takes the pyramid as it is. ``pyramid=False`` feeds
    a plain ViT's maps at the patch stride (FPN, or UperNet, on four equal-stride maps)."""
    if head not in SEG_HEADS:
        raise VitbenchError(f"unknown segmentation head {head!r} (expected one of {', '.join(SEG_HEADS)})")
    red = tuple(int(r) for r in spec.reductions)
    if not pyramid and len(set(red)) == 1:
        chans = tuple(int(c) for c in spec.channels)
        fpn = head == "semfpn"
        return NeckPlan(
            "fpn" if fpn else "identity",
            chans,
            red,
            red,
            (),
            ("identity",) * len(red),
            neck_channels if fpn else None,
            len(red) if fpn else None,
        )
    if head == "semfpn":
        return plan_neck(spec, pyramid_strides, neck_channels, len(pyramid_strides))
    return plan_neck(spec, pyramid_strides, fpn_channels=None)


def _loss(weight: float) -> dict[str, Any]:
    return {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": weight}


def build_seg_model(
    spec: EncoderSpec,
    head: str,
    *,
    num_classes: int,
    encoder_ref: Mapping[str, Any],
    mean: Sequence[float],
    std: Sequence[float],
    crop_size: tuple[int, int] = (512, 512),
    pyramid: bool = True,
    vit_indices: Sequence[int] | None = None,
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
    input statistics on the 0..1 scale. ``vit_indices`` picks a plain ViT's blocks (:func:`~benchmarks.dense.
    backbone.dense_spec`; None: the adapter's). ``crop_size`` is the training crop ``(h, w)``: the data preprocessor
    pads training batches to it, and test images to a multiple of every stride in play. ``channels`` is the decode
    head's width (None: 128 for Semantic FPN, 512 for UperNet). ``slide_stride`` switches inference from whole
    images to ``crop_size`` windows at that stride (BEiT's ADE20K setting: (341, 341) for 512 crops).
    """
    spec = dense_spec(spec, vit_indices)
    plan = plan_seg_neck(spec, head, pyramid_strides, neck_channels, pyramid)
    divisor = pad_divisor(spec, plan)
    if any(c % divisor for c in crop_size):
        raise VitbenchError(f"crop_size {tuple(crop_size)} is not a multiple of {divisor}, the stride the neck needs")
    norm = {"type": "SyncBN" if sync_bn else "BN", "requires_grad": True}
    width = HEAD_CHANNELS[head] if channels is None else channels
    levels = list(range(len(plan.out_strides)))
    pyramid_cfg = {
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
            "vit_indices": None if vit_indices is None else list(vit_indices),
        },
    }
    if head == "semfpn":
        fpn = {
            "type": "FPN",
            "in_channels": list(plan.in_channels),
            "out_channels": neck_channels,
            "num_outs": plan.fpn_num_outs,
        }
        model["neck"] = [pyramid_cfg, fpn] if plan.kind == "simple_pyramid+fpn" else fpn
        model["decode_head"] = {
            "type": "FPNHead",
            "in_channels": [neck_channels] * len(levels),
            "in_index": levels,
            # as declared: with pyramid=False the maps share the patch stride and FPNHead's per-level upsampling is
            # resized back to level 0 (SelfPatch's config)
            "feature_strides": list(pyramid_strides),
            "channels": width,
            **common,
            "loss_decode": _loss(1.0),
        }
    else:
        if plan.kind == "simple_pyramid":
            model["neck"] = pyramid_cfg
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


# ------------------------------------------------------------------------------------------------ the config
def _pipelines(p: SegProtocol) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Train, single-scale test and (if ``ms_ratios``) multi-scale + flip test pipelines, mmseg 1.x names.

    The multi-scale test resizes to ``ratio * test_scale`` (keeping the aspect ratio), as mmseg 0.x's
    ``MultiScaleFlipAug(img_scale, img_ratios)`` did for the papers; each scale is also flipped.
    """
    train: list[dict[str, Any]] = [
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "reduce_zero_label": True},
        {
            "type": "RandomResize",
            "scale": tuple(p.train_scale),
            "ratio_range": tuple(p.ratio_range),
            "keep_ratio": True,
        },
        {"type": "RandomCrop", "crop_size": tuple(p.crop_size), "cat_max_ratio": p.cat_max_ratio},
        {"type": "RandomFlip", "prob": p.flip_prob},
        *([{"type": "PhotoMetricDistortion"}] if p.photometric else []),
        {"type": "PackSegInputs"},
    ]
    test: list[dict[str, Any]] = [
        {"type": "LoadImageFromFile"},
        {"type": "Resize", "scale": tuple(p.test_scale), "keep_ratio": True},
        # after Resize: the ground truth stays at the original resolution, where predictions are scored
        {"type": "LoadAnnotations", "reduce_zero_label": True},
        {"type": "PackSegInputs"},
    ]
    if not p.ms_ratios:
        return train, test, None
    scales = [(int(p.test_scale[0] * r), int(p.test_scale[1] * r)) for r in p.ms_ratios]
    tta: list[dict[str, Any]] = [
        {"type": "LoadImageFromFile"},
        {
            "type": "TestTimeAug",
            "transforms": [
                [{"type": "Resize", "scale": s, "keep_ratio": True} for s in scales],
                [
                    {"type": "RandomFlip", "prob": 0.0, "direction": "horizontal"},
                    {"type": "RandomFlip", "prob": 1.0, "direction": "horizontal"},
                ],
                [{"type": "LoadAnnotations", "reduce_zero_label": True}],
                [{"type": "PackSegInputs"}],
            ],
        },
    ]
    return train, test, tta


def _dataset(root: str, split: str, pipeline: list[dict[str, Any]], test: bool) -> dict[str, Any]:
    return {
        "type": "ADE20KDataset",
        "data_root": root,
        "data_prefix": {"img_path": f"images/{split}", "seg_map_path": f"annotations/{split}"},
        "reduce_zero_label": True,
        "pipeline": pipeline,
        **({"test_mode": True} if test else {}),
    }


def build_mmseg_config(
    spec: EncoderSpec,
    protocol: SegProtocol,
    *,
    encoder_ref: Mapping[str, Any],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    data_root: Path | str,
    work_dir: Path | str,
    seed: int = 0,
    launcher: str = "none",
    device: str = "cpu",
    resume_from: str | None = None,
    layer_ids: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The complete mmengine/mmseg config of one ADE20K run, as plain dicts/lists/tuples.

    ``encoder_ref``/``mean``/``std`` as in :func:`build_seg_model`; ``layer_ids`` as in :func:`paramwise_cfg`
    (needed when the protocol's ``layer_decay`` applies). ``resume_from`` is a checkpoint this run wrote itself (see
    ``mm_glue``). The multi-scale + flip test, when the protocol has one, is ``extra_tests["ms"]``: the model
    (``SegTTAModel`` around the segmentor) and test dataloader that ``mm_glue`` runs after the single-scale test,
    on the final weights.
    """
    p = protocol
    if p.test_mode not in ("whole", "slide"):
        raise VitbenchError(f"test_mode {p.test_mode!r}: expected 'whole' or 'slide'")
    model = build_seg_model(
        spec,
        p.head,
        num_classes=num_classes,
        encoder_ref=encoder_ref,
        mean=mean,
        std=std,
        crop_size=tuple(p.crop_size),  # type: ignore[arg-type]
        pyramid=p.pyramid,
        vit_indices=p.vit_indices,
        pyramid_strides=p.pyramid_strides,
        neck_channels=p.neck_channels,
        channels=p.head_channels,
        aux_channels=getattr(p, "aux_channels", 256),
        aux_loss_weight=getattr(p, "aux_loss_weight", 0.4),
        pool_scales=getattr(p, "pool_scales", (1, 2, 3, 6)),
        dropout_ratio=p.dropout_ratio,
        drop_path_rate=p.drop_path_rate,
        sync_bn=p.sync_bn,
        slide_stride=tuple(p.slide_stride) if p.test_mode == "slide" else None,  # type: ignore[arg-type]
    )["model"]
    train_pipeline, test_pipeline, tta_pipeline = _pipelines(p)
    root = str(Path(data_root))
    workers = {"num_workers": p.num_workers, "persistent_workers": p.num_workers > 0}
    train_dataloader = {
        "batch_size": p.batch_per_gpu,
        **workers,
        "sampler": {"type": "InfiniteSampler", "shuffle": True},
        "dataset": _dataset(root, p.train_split, train_pipeline, test=False),
    }
    test_dataloader = {
        "batch_size": 1,
        **workers,
        "sampler": {"type": "DefaultSampler", "shuffle": False},
        "dataset": _dataset(root, p.val_split, test_pipeline, test=True),
    }
    amp = p.amp and device.startswith("cuda")
    optim_wrapper = {
        "type": "AmpOptimWrapper" if amp else "OptimWrapper",
        "optimizer": {"type": "AdamW", "lr": p.lr, "betas": tuple(p.betas), "weight_decay": p.weight_decay},
        "paramwise_cfg": paramwise_cfg(dense_spec(spec, p.vit_indices), p.no_decay_keys, p.layer_decay, layer_ids),
    }
    # mmcv 0.x's "poly + linear warmup" (the papers' configs): warmup factor x poly factor, both from iteration 0.
    # mmengine chains schedulers multiplicatively, so overlapping them reproduces it exactly.
    param_scheduler = [
        {"type": "LinearLR", "start_factor": p.warmup_ratio, "by_epoch": False, "begin": 0, "end": p.warmup_iters},
        {"type": "PolyLR", "eta_min": p.min_lr, "power": p.poly_power, "by_epoch": False, "begin": 0, "end": p.iters},
    ]
    work = Path(work_dir)
    cfg: dict[str, Any] = {
        "default_scope": "mmseg",
        "model": model,
        "work_dir": str(work),
        "train_dataloader": train_dataloader,
        "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": p.iters, "val_interval": p.iters + 1},
        "test_dataloader": test_dataloader,
        "test_evaluator": {"type": IOU_METRIC_TYPE, "iou_metrics": ["mIoU"]},
        "test_cfg": {"type": "TestLoop"},
        "optim_wrapper": optim_wrapper,
        "param_scheduler": param_scheduler,
        "auto_scale_lr": {"enable": p.scale_lr, "base_batch_size": p.base_batch_size},
        "default_hooks": {
            "timer": {"type": "IterTimerHook"},
            "logger": {"type": "LoggerHook", "interval": p.log_interval, "log_metric_by_epoch": False},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": {
                "type": "CheckpointHook",
                "by_epoch": False,
                "interval": p.checkpoint_interval,
                "max_keep_ckpts": 2,
            },
            "sampler_seed": {"type": "DistSamplerSeedHook"},
        },
        "env_cfg": {
            "cudnn_benchmark": True,
            "mp_cfg": {"mp_start_method": "fork", "opencv_num_threads": 0},
            "dist_cfg": {"backend": "nccl" if device.startswith("cuda") else "gloo"},
        },
        # Parameters of the encoder the segmenter never reaches (a final norm, a class-attention head) would make
        # DDP fail; letting DDP find them is cheaper than pruning per method.
        "model_wrapper_cfg": {"type": "MMDistributedDataParallel", "find_unused_parameters": True},
        "log_processor": {"type": "LogProcessor", "window_size": p.log_interval, "by_epoch": False},
        "log_level": "INFO",
        "launcher": launcher,
        "randomness": {"seed": seed, "deterministic": False},
        # Resume only from a checkpoint the harness found in its own work folder (mm_glue loads those through a
        # restricted unpickler); never let mmengine auto-resume from an arbitrary path.
        "load_from": resume_from,
        "resume": resume_from is not None,
    }
    if tta_pipeline is not None:
        cfg["extra_tests"] = {
            "ms": {
                "model": {"type": "SegTTAModel", "_scope_": "mmseg", "module": model},
                "test_dataloader": {**test_dataloader, "dataset": _dataset(root, p.val_split, tta_pipeline, test=True)},
            }
        }
    return cfg
