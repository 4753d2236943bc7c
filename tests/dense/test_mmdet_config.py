"""Generated mmdet configs: the neck, strides and channels follow the encoder's spec (no mm* needed)."""

from __future__ import annotations

import json

import pytest

from benchmarks.dense.backbone import BACKBONE_TYPE
from benchmarks.dense.mmdet_config import build_mmdet_config
from benchmarks.dense.neck import PYRAMID_TYPE, plan_neck, to_jsonable
from benchmarks.dense.protocols import DETR_SCALES, CocoCascade3xProtocol, CocoDetProtocol, CocoMaskRcnn3xProtocol
from methods.base import EncoderSpec
from methods.errors import VitbenchError

VIT_S16 = EncoderSpec(
    arch="vit_small_patch16_224",
    family="vit",
    embed_dim=384,
    num_blocks=12,
    block_dim=384,
    indices=(3, 5, 7, 11),
    channels=(384,) * 4,
    reductions=(16,) * 4,
    num_prefix_tokens=1,
    size_divisor=16,
    in_chans=3,
    norm=False,
)
VIT_S8 = EncoderSpec(
    arch="vit_small_patch8_224",
    family="vit",
    embed_dim=384,
    num_blocks=12,
    block_dim=384,
    indices=(3, 5, 7, 11),
    channels=(384,) * 4,
    reductions=(8,) * 4,
    num_prefix_tokens=1,
    size_divisor=8,
    in_chans=3,
    norm=False,
)
GCVIT_T = EncoderSpec(
    arch="gcvit_tiny",
    family="hierarchical",
    embed_dim=512,
    num_blocks=4,
    block_dim=512,
    indices=(0, 1, 2, 3),
    channels=(64, 128, 256, 512),
    reductions=(4, 8, 16, 32),
    num_prefix_tokens=0,
    size_divisor=32,
    in_chans=3,
    norm=False,
    global_pool="avg",
)
REF = {"key": "m:v@random", "method": "m", "variant": "v", "weights": "random", "sha256": None, "seed": 0}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _cfg(spec: EncoderSpec, protocol: CocoDetProtocol, **kw):
    return build_mmdet_config(
        spec,
        protocol,
        encoder_ref=REF,
        classes=[f"c{i}" for i in range(80)],
        mean=MEAN,
        std=STD,
        data_root="/data/coco",
        work_dir="/tmp/work",
        **kw,
    )


def test_plain_vit_gets_simple_pyramid_then_fpn():
    cfg = _cfg(VIT_S16, CocoDetProtocol())
    model = cfg["model"]
    assert model["type"] == "MaskRCNN"
    assert model["backbone"]["type"] == BACKBONE_TYPE
    pyramid, fpn = model["neck"]
    assert pyramid == {"type": PYRAMID_TYPE, "in_channels": [384] * 4, "scales": [4.0, 2.0, 1.0, 0.5], "norm": "SyncBN"}
    assert fpn == {"type": "FPN", "in_channels": [384] * 4, "out_channels": 256, "num_outs": 5}
    roi = model["roi_head"]
    assert roi["bbox_roi_extractor"]["featmap_strides"] == [4, 8, 16, 32]
    assert roi["mask_roi_extractor"]["featmap_strides"] == [4, 8, 16, 32]
    assert model["rpn_head"]["anchor_generator"]["strides"] == [4, 8, 16, 32, 64]
    assert roi["bbox_head"]["num_classes"] == 80 and roi["mask_head"]["num_classes"] == 80
    assert model["data_preprocessor"]["pad_size_divisor"] == 32
    assert model["data_preprocessor"]["mean"] == pytest.approx([123.675, 116.28, 103.53])


def test_vit_patch8_pyramid_ops():
    plan = plan_neck(VIT_S8)
    assert plan.scales == (2.0, 1.0, 0.5, 0.25)
    assert plan.ops == ("deconv2x", "identity", "maxpool2x", "maxpool4x")
    assert plan.out_strides == (4, 8, 16, 32)


def test_hierarchical_gets_fpn_directly():
    cfg = _cfg(GCVIT_T, CocoMaskRcnn3xProtocol())
    model = cfg["model"]
    assert model["neck"] == {"type": "FPN", "in_channels": [64, 128, 256, 512], "out_channels": 256, "num_outs": 5}
    assert model["roi_head"]["bbox_roi_extractor"]["featmap_strides"] == [4, 8, 16, 32]
    assert model["rpn_head"]["anchor_generator"]["strides"] == [4, 8, 16, 32, 64]
    assert plan_neck(GCVIT_T).kind == "fpn"
    assert model["backbone"]["drop_path_rate"] == 0.2
    assert cfg["train_cfg"]["max_epochs"] == 36
    assert cfg["param_scheduler"][1]["milestones"] == [27, 33]
    assert cfg["auto_scale_lr"] == {"enable": True, "base_batch_size": 16}


def test_selfpatch_schedule_and_optimizer():
    cfg = _cfg(VIT_S16, CocoDetProtocol(), device="cuda")
    assert cfg["train_cfg"]["max_epochs"] == 12
    warmup, steps = cfg["param_scheduler"]
    assert (warmup["type"], warmup["end"], warmup["by_epoch"], warmup["start_factor"]) == (
        "LinearLR",
        1000,
        False,
        0.001,
    )
    assert (steps["milestones"], steps["gamma"], steps["by_epoch"]) == ([8, 11], 0.1, True)
    opt = cfg["optim_wrapper"]
    assert opt["type"] == "AmpOptimWrapper"
    assert opt["optimizer"] == {"type": "AdamW", "lr": 5e-5, "betas": (0.9, 0.999), "weight_decay": 0.05}
    assert opt["paramwise_cfg"]["custom_keys"] == {k: {"decay_mult": 0.0} for k in ("pos_embed", "cls_token", "norm")}
    assert cfg["auto_scale_lr"] == {"enable": True, "base_batch_size": 8}
    assert cfg["train_dataloader"]["batch_size"] == 1
    assert cfg["model"]["backbone"]["drop_path_rate"] == 0.05
    assert cfg["model"]["backbone"]["num_heads"] is None  # faithful to pretraining by default
    # DETR-style augmentation: multi-scale branch and resize-crop-resize branch; test at (1333, 800)
    choice = next(t for t in cfg["train_dataloader"]["dataset"]["pipeline"] if t["type"] == "RandomChoice")
    multi, crop = choice["transforms"]
    assert multi[0]["scales"] == [(1333, s) for s in range(480, 801, 32)] and len(DETR_SCALES) == 11
    assert [t["type"] for t in crop] == ["RandomChoiceResize", "RandomCrop", "RandomChoiceResize"]
    assert crop[1]["crop_size"] == (384, 600)
    test_resize = next(t for t in cfg["test_dataloader"]["dataset"]["pipeline"] if t["type"] == "Resize")
    assert test_resize["scale"] == (1333, 800)
    assert cfg["test_evaluator"]["format_only"] is True
    assert cfg["resume"] is False and cfg["load_from"] is None
    # CPU never gets fp16
    assert _cfg(VIT_S16, CocoDetProtocol(), device="cpu")["optim_wrapper"]["type"] == "OptimWrapper"


def test_selfpatch_heads_flag_reaches_backbone_and_protocol_hash():
    official = CocoDetProtocol(backbone_num_heads=8)
    assert _cfg(VIT_S16, official)["model"]["backbone"]["num_heads"] == 8
    assert official.hash() != CocoDetProtocol().hash()


def test_cascade_heads():
    cfg = _cfg(GCVIT_T, CocoCascade3xProtocol())
    roi = cfg["model"]["roi_head"]
    assert cfg["model"]["type"] == "CascadeRCNN" and roi["type"] == "CascadeRoIHead" and roi["num_stages"] == 3
    assert [h["type"] for h in roi["bbox_head"]] == ["ConvFCBBoxHead"] * 3
    assert all(h["loss_bbox"]["type"] == "GIoULoss" and h["num_shared_convs"] == 4 for h in roi["bbox_head"])
    assert [s["assigner"]["pos_iou_thr"] for s in cfg["model"]["train_cfg"]["rcnn"]] == [0.5, 0.6, 0.7]


def test_config_is_plain_data_without_base_chains():
    for spec, proto in ((VIT_S16, CocoDetProtocol.smoke()), (GCVIT_T, CocoCascade3xProtocol())):
        cfg = _cfg(spec, proto, resume_from="vitbench-own:///tmp/work/epoch_1.pth")
        text = json.dumps(to_jsonable(cfg))
        assert "_base_" not in text and "_delete_" not in text
        assert cfg["resume"] is True


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            EncoderSpec(**{**VIT_S16.__dict__, "indices": (5, 11), "channels": (384,) * 2, "reductions": (16,) * 2}),
            "one dense index per pyramid level",
        ),
        (EncoderSpec(**{**VIT_S16.__dict__, "reductions": (14,) * 4, "size_divisor": 14}), "power-of-two"),
        (EncoderSpec(**{**GCVIT_T.__dict__, "reductions": (4, 8, 8, 32)}), "increasing strides"),
    ],
)
def test_unsupported_specs_fail_clearly(spec, match):
    with pytest.raises(VitbenchError, match=match):
        plan_neck(spec)
