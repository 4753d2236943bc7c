"""The mmdet 3.3 config of a COCO detection run, generated in plain Python from an EncoderSpec and a flat protocol.

Nothing here imports mm*: a config is a nested ``dict`` built from an :class:`~methods.EncoderSpec`, the neck plan
(:func:`benchmarks.dense.neck.plan_neck`) and a :class:`~benchmarks.dense.protocols.CocoDetProtocol`-shaped
protocol, so it can be generated, inspected and tested without the compiled stack. There are no ``_base_``
chains: :func:`build_mmdet_config` writes every field, and the harness saves the result next to the record (as
JSON in the record and as an mmengine ``.py`` dump in the work folder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.data.coco import MIN_TRAIN_SIZE, ann_file
from benchmarks.dense.backbone import BACKBONE_TYPE, paramwise_cfg
from benchmarks.dense.neck import PYRAMID_TYPE, NeckPlan, pad_divisor, plan_neck
from benchmarks.dense.protocols import (
    CocoCascade1xProtocol,
    CocoCascade3xProtocol,
    CocoDetProtocol,
    CocoMaskRcnn3xProtocol,
)
from methods.errors import VitbenchError

if TYPE_CHECKING:
    from methods.base import EncoderSpec

# The COCO protocols are separate flat classes with the same fields; the builder reads any of them.
DetProtocol = CocoDetProtocol | CocoMaskRcnn3xProtocol | CocoCascade3xProtocol | CocoCascade1xProtocol


# ------------------------------------------------------------------------------------------------ heads
def _box_coder(stds: Sequence[float]) -> dict[str, Any]:
    return {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": list(stds)}


def _bbox_head(p: DetProtocol, num_classes: int, stds: Sequence[float], norm: str) -> dict[str, Any]:
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


def _detector(p: DetProtocol, plan: NeckPlan, num_classes: int) -> dict[str, Any]:
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
        roi_head: dict[str, Any] = {
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
def _pipelines(p: DetProtocol) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """DETR-style train augmentation (mmdet 3 names: ``RandomChoice`` of two branches) and the test resize.

    mmdet reads a ``(long, short)`` scale with ``keep_ratio`` as "short side = short, long side <= long".
    """
    multi = {"type": "RandomChoiceResize", "scales": [(p.max_size, s) for s in p.train_scales], "keep_ratio": True}
    train: list[dict[str, Any]] = [
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
    test: list[dict[str, Any]] = [
        {"type": "LoadImageFromFile", "backend_args": None},
        {"type": "Resize", "scale": tuple(p.test_scale), "keep_ratio": True},
        {"type": "LoadAnnotations", "with_bbox": True, "with_mask": True},
        {"type": "PackDetInputs", "meta_keys": ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")},
    ]
    return train, test


def build_mmdet_config(
    spec: EncoderSpec,
    protocol: DetProtocol,
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
    layer_ids: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The complete mmengine/mmdet config of one run, as plain dicts/lists/tuples.

    ``encoder_ref`` identifies the encoder (method, variant, weights, seed, sha256, and the in-process key under
    which the harness registered the built :class:`~methods.Encoder`); ``mean``/``std`` are the encoder's input
    statistics on the 0..1 scale. ``resume_from`` is a checkpoint this run wrote itself (see ``mm_glue``).
    ``layer_ids`` (:meth:`methods.Encoder.layer_ids`) is needed by a protocol with layer-wise lr decay
    (``layer_decay`` != 1, plain ViTs; :func:`benchmarks.dense.backbone.paramwise_cfg`).
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
            "filter_cfg": {"filter_empty_gt": True, "min_size": MIN_TRAIN_SIZE},
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
        # Protocols without a layer_decay field (the 1x/3x Mask R-CNN ones) train every parameter at one lr.
        "paramwise_cfg": paramwise_cfg(spec, p.no_decay_keys, getattr(p, "layer_decay", 1.0), layer_ids),
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
