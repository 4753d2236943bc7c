"""Generated mmseg configs (Semantic FPN, UperNet): neck, strides, channels, indices and classes follow the encoder's
spec (no mm* needed); with the mm* stack (marker ``dense``) the model builds and computes a loss."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.dense.backbone import BACKBONE_TYPE
from benchmarks.dense.mmseg_config import build_seg_model, plan_seg_neck
from benchmarks.dense.neck import PYRAMID_TYPE, to_jsonable
from methods.errors import VitbenchError
from tests.dense.test_mmdet_config import GCVIT_T, MEAN, REF, STD, VIT_S8, VIT_S16


def _cfg(spec, head, **kw):
    kw = {"num_classes": 150, "encoder_ref": REF, "mean": MEAN, "std": STD, **kw}
    return build_seg_model(spec, head, **kw)


def test_semfpn_on_plain_vit_pyramid_then_fpn():
    cfg = _cfg(VIT_S16, "semfpn")
    assert cfg["default_scope"] == "mmseg"
    model = cfg["model"]
    assert model["type"] == "EncoderDecoder" and model["backbone"]["type"] == BACKBONE_TYPE
    assert model["backbone"]["encoder"] == REF
    pyramid, fpn = model["neck"]
    assert pyramid == {"type": PYRAMID_TYPE, "in_channels": [384] * 4, "scales": [4.0, 2.0, 1.0, 0.5], "norm": "SyncBN"}
    assert fpn == {"type": "FPN", "in_channels": [384] * 4, "out_channels": 256, "num_outs": 4}
    head = model["decode_head"]
    assert head["type"] == "FPNHead"
    assert head["in_channels"] == [256] * 4 and head["in_index"] == [0, 1, 2, 3]
    assert head["feature_strides"] == [4, 8, 16, 32]
    assert head["channels"] == 128 and head["num_classes"] == 150
    assert "auxiliary_head" not in model
    pre = model["data_preprocessor"]
    assert pre["type"] == "SegDataPreProcessor" and pre["size"] == (512, 512)
    assert pre["test_cfg"] == {"size_divisor": 32} and pre["seg_pad_val"] == 255
    assert pre["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert model["test_cfg"] == {"mode": "whole"}


def test_upernet_on_plain_vit_takes_the_pyramid_without_fpn():
    cfg = _cfg(VIT_S16, "upernet", slide_stride=(341, 341), drop_path_rate=0.1)
    model = cfg["model"]
    assert model["neck"] == {
        "type": PYRAMID_TYPE,
        "in_channels": [384] * 4,
        "scales": [4.0, 2.0, 1.0, 0.5],
        "norm": "SyncBN",
    }
    head, aux = model["decode_head"], model["auxiliary_head"]
    assert head["type"] == "UPerHead" and head["in_channels"] == [384] * 4 and head["in_index"] == [0, 1, 2, 3]
    assert head["pool_scales"] == (1, 2, 3, 6) and head["channels"] == 512 and head["num_classes"] == 150
    assert aux["type"] == "FCNHead" and (aux["in_channels"], aux["in_index"], aux["channels"]) == (384, 2, 256)
    assert aux["num_classes"] == 150 and aux["loss_decode"]["loss_weight"] == 0.4
    assert model["test_cfg"] == {"mode": "slide", "crop_size": (512, 512), "stride": (341, 341)}
    assert model["backbone"]["drop_path_rate"] == 0.1


def test_hierarchical_encoder_heads():
    semfpn = _cfg(GCVIT_T, "semfpn", num_classes=19, sync_bn=False)["model"]
    assert semfpn["neck"] == {"type": "FPN", "in_channels": [64, 128, 256, 512], "out_channels": 256, "num_outs": 4}
    assert semfpn["decode_head"]["feature_strides"] == [4, 8, 16, 32]
    assert semfpn["decode_head"]["num_classes"] == 19 and semfpn["decode_head"]["norm_cfg"]["type"] == "BN"
    upernet = _cfg(GCVIT_T, "upernet", channels=256)["model"]
    assert "neck" not in upernet
    assert upernet["decode_head"]["in_channels"] == [64, 128, 256, 512] and upernet["decode_head"]["channels"] == 256
    assert (upernet["auxiliary_head"]["in_channels"], upernet["auxiliary_head"]["in_index"]) == (256, 2)


def test_seg_neck_plans():
    assert plan_seg_neck(VIT_S16, "semfpn").kind == "simple_pyramid+fpn"
    plan = plan_seg_neck(VIT_S8, "upernet")
    assert plan.kind == "simple_pyramid" and plan.scales == (2.0, 1.0, 0.5, 0.25)
    assert plan.to_dict()["fpn_channels"] is None and plan.anchor_strides == (4, 8, 16, 32)
    assert plan_seg_neck(GCVIT_T, "semfpn").kind == "fpn" and plan_seg_neck(GCVIT_T, "upernet").kind == "identity"
    assert _cfg(VIT_S8, "upernet")["model"]["neck"]["scales"] == [2.0, 1.0, 0.5, 0.25]


def test_seg_config_is_plain_data_and_errors_are_clear():
    for spec in (VIT_S16, GCVIT_T):
        for head in ("semfpn", "upernet"):
            text = json.dumps(to_jsonable(_cfg(spec, head)))
            assert "_base_" not in text and "_delete_" not in text
    with pytest.raises(VitbenchError, match="unknown segmentation head 'deeplab'"):
        _cfg(VIT_S16, "deeplab")
    with pytest.raises(VitbenchError, match=r"crop_size \(500, 500\) is not a multiple of 32"):
        _cfg(VIT_S16, "upernet", crop_size=(500, 500))


# ------------------------------------------------------------------------------------------------ on mmseg
@pytest.mark.dense
@pytest.mark.parametrize("head", ["semfpn", "upernet"])
@pytest.mark.parametrize("variant", ["vits16", "rn50"])
def test_mmseg_builds_and_computes_a_loss(head, variant):
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    from benchmarks.dense import mm_glue
    from methods import build_encoder

    mm_glue.prepare()
    enc = build_encoder("dino", variant, weights="random")
    cfg = build_seg_model(
        enc.spec,
        head,
        num_classes=5,
        encoder_ref=mm_glue.register_encoder(enc),
        mean=enc.data_config.mean,
        std=enc.data_config.std,
        crop_size=(64, 64),
        channels=32,
        neck_channels=32,
        aux_channels=16,
    )
    model = MODELS.build(cfg["model"])  # the model's _scope_ makes this work whatever the default scope is
    model.train()
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):  # 64 x 48 images: the preprocessor pads them (and their labels, with 255) to the crop
        label = torch.randint(0, 5, (1, 64, 48), generator=gen)
        meta = {"img_shape": (64, 48), "ori_shape": (64, 48), "pad_shape": (64, 48)}
        samples.append(SegDataSample(gt_sem_seg=PixelData(data=label), metainfo=meta))
    images = [torch.randint(0, 256, (3, 64, 48), generator=gen, dtype=torch.uint8) for _ in range(2)]
    data = model.data_preprocessor({"inputs": images, "data_samples": samples}, training=True)
    assert tuple(data["inputs"].shape) == (2, 3, 64, 64)
    losses = model(**data, mode="loss")
    expected = {"decode.loss_ce"} | ({"aux.loss_ce"} if head == "upernet" else set())
    assert expected <= set(losses)
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None for p in model.backbone.parameters())
    # also through the glue's scoped builder, which eval-mode inference uses
    built = mm_glue.build_model(cfg["model"], "mmseg").eval()
    with torch.no_grad():
        logits = built.encode_decode(data["inputs"], [s.metainfo for s in data["data_samples"]])
    assert tuple(logits.shape) == (2, 5, 64, 48)  # mmseg resizes the logits to each image's unpadded shape


# ------------------------------------------------------------------------------------------------ full configs
def _vit_layer_ids(depth: int) -> dict[str, int]:
    """What Encoder.layer_ids returns for a timm ViT (names as the Encoder holds them): embeddings 0, block i i+1,
    final norm depth+1."""
    ids = {"model.cls_token": 0, "model.pos_embed": 0, "model.patch_embed.proj.weight": 0}
    for i in range(depth):
        ids |= {f"model.blocks.{i}.attn.qkv.weight": i + 1, f"model.blocks.{i}.norm1.bias": i + 1}
    return ids | {"model.norm.weight": depth + 1}


def _full(spec, protocol, **kw):
    from benchmarks.dense.mmseg_config import build_mmseg_config

    kw = {
        "encoder_ref": REF,
        "num_classes": 150,
        "mean": MEAN,
        "std": STD,
        "data_root": "/data/ADEChallengeData2016",
        "work_dir": "/tmp/work",
        **kw,
    }
    return build_mmseg_config(spec, protocol, **kw)


def test_semfpn_selfpatch_setting_no_pyramid_blocks_2_5_8_11():
    from benchmarks.dense.protocols import Ade20kSemFpnProtocol

    cfg = _full(VIT_S16, Ade20kSemFpnProtocol())
    model = cfg["model"]
    # SelfPatch: the four stride-16 maps of blocks 2/5/8/11 straight into FPN; FPNHead declares strides 4..32
    assert model["backbone"]["vit_indices"] == [2, 5, 8, 11] and model["backbone"]["drop_path_rate"] == 0.1
    assert model["neck"] == {"type": "FPN", "in_channels": [384] * 4, "out_channels": 256, "num_outs": 4}
    head = model["decode_head"]
    assert (head["type"], head["channels"], head["feature_strides"], head["num_classes"]) == (
        "FPNHead",
        128,
        [4, 8, 16, 32],
        150,
    )
    assert model["data_preprocessor"]["test_cfg"] == {"size_divisor": 16} and model["test_cfg"] == {"mode": "whole"}
    train = cfg["train_dataloader"]
    assert train["batch_size"] == 4 and train["sampler"]["type"] == "InfiniteSampler"
    ds = train["dataset"]
    assert ds["type"] == "ADE20KDataset" and ds["reduce_zero_label"] is True
    assert ds["data_prefix"] == {"img_path": "images/training", "seg_map_path": "annotations/training"}
    steps = {t["type"]: t for t in ds["pipeline"]}
    assert steps["LoadAnnotations"]["reduce_zero_label"] is True
    assert steps["RandomResize"] == {
        "type": "RandomResize",
        "scale": (2048, 512),
        "ratio_range": (0.5, 2.0),
        "keep_ratio": True,
    }
    assert steps["RandomCrop"] == {"type": "RandomCrop", "crop_size": (512, 512), "cat_max_ratio": 0.75}
    assert "PhotoMetricDistortion" in steps and steps["RandomFlip"]["prob"] == 0.5
    test = [t["type"] for t in cfg["test_dataloader"]["dataset"]["pipeline"]]
    assert test == ["LoadImageFromFile", "Resize", "LoadAnnotations", "PackSegInputs"]  # GT stays at full size
    assert cfg["test_dataloader"]["dataset"]["data_prefix"]["img_path"] == "images/validation"
    opt = cfg["optim_wrapper"]
    assert opt["optimizer"] == {"type": "AdamW", "lr": 6e-5, "betas": (0.9, 0.999), "weight_decay": 0.01}
    assert opt["paramwise_cfg"]["custom_keys"] == {k: {"decay_mult": 0.0} for k in ("pos_embed", "cls_token", "norm")}
    warm, poly = cfg["param_scheduler"]
    assert (warm["type"], warm["start_factor"], warm["end"]) == ("LinearLR", 1e-6, 1500)
    assert (poly["type"], poly["power"], poly["eta_min"], poly["begin"], poly["end"]) == ("PolyLR", 1.0, 0.0, 0, 40000)
    assert cfg["train_cfg"] == {"type": "IterBasedTrainLoop", "max_iters": 40000, "val_interval": 40001}
    assert cfg["auto_scale_lr"] == {"enable": True, "base_batch_size": 16}
    assert cfg["test_evaluator"]["type"] == "VitbenchIoUMetric" and "extra_tests" not in cfg
    assert cfg["default_hooks"]["checkpoint"]["by_epoch"] is False and cfg["resume"] is False


def test_semfpn_pyramid_option_and_depth_scaled_indices():
    from benchmarks.dense.protocols import Ade20kSemFpnProtocol

    model = _full(VIT_S16, Ade20kSemFpnProtocol(pyramid=True))["model"]
    pyramid, fpn = model["neck"]
    assert pyramid["scales"] == [4.0, 2.0, 1.0, 0.5] and fpn["num_outs"] == 4
    assert model["data_preprocessor"]["test_cfg"] == {"size_divisor": 32}
    from dataclasses import replace

    from benchmarks.dense.backbone import dense_spec, scaled_indices

    assert scaled_indices((2, 5, 8, 11), 16) == (3, 7, 11, 15) and scaled_indices((3, 5, 7, 11), 24) == (7, 11, 15, 23)
    deep = dense_spec(replace(VIT_S16, num_blocks=16), (2, 5, 8, 11))
    assert deep.indices == (3, 7, 11, 15) and deep.channels == (384,) * 4 and deep.reductions == (16,) * 4
    assert dense_spec(GCVIT_T, (2, 5, 8, 11)) == GCVIT_T  # hierarchical encoders keep their stages
    with pytest.raises(VitbenchError, match="do not fit 2 blocks"):
        scaled_indices((2, 5, 8, 11), 2)


def test_upernet_vit8_multiscale_test_and_layer_decay_groups():
    from benchmarks.dense.backbone import layer_decay_groups
    from benchmarks.dense.protocols import Ade20kUperNetProtocol

    cfg = _full(VIT_S8, Ade20kUperNetProtocol(layer_decay=0.65), layer_ids=_vit_layer_ids(12))
    model = cfg["model"]
    assert model["neck"]["scales"] == [2.0, 1.0, 0.5, 0.25] and model["backbone"]["vit_indices"] == [3, 5, 7, 11]
    assert model["decode_head"]["channels"] == 512 and model["auxiliary_head"]["in_channels"] == 384
    # BEiT's rule: block i at 0.65 ** (12 - i), embeddings at 0.65 ** 13, the final norm (and heads) at 1
    groups = layer_decay_groups(cfg)
    assert groups[0.65**13] == ["model.cls_token", "model.pos_embed", "model.patch_embed.proj.weight"]
    assert groups[0.65**1] == ["model.blocks.11.attn.qkv.weight", "model.blocks.11.norm1.bias"]
    assert groups[1.0] == ["model.norm.weight"] and len(groups) == 14
    keys = cfg["optim_wrapper"]["paramwise_cfg"]["custom_keys"]
    assert keys["backbone.encoder.model.blocks.0.attn.qkv.weight"] == {"lr_mult": 0.65**12, "decay_mult": 1.0}
    assert keys["backbone.encoder.model.blocks.0.norm1.bias"]["decay_mult"] == 0.0  # "norm" is a no-decay key
    assert keys["backbone.encoder.model.pos_embed"]["decay_mult"] == 0.0 and keys["rel_pos"] == {"decay_mult": 0.0}
    # multi-scale + flip: SegTTAModel over ratio x (2048, 512), each flipped
    ms = cfg["extra_tests"]["ms"]
    assert ms["model"]["type"] == "SegTTAModel" and ms["model"]["module"] == model
    tta = ms["test_dataloader"]["dataset"]["pipeline"][1]
    assert tta["type"] == "TestTimeAug"
    resizes, flips = tta["transforms"][0], tta["transforms"][1]
    assert [r["scale"] for r in resizes] == [
        (1024, 256),
        (1536, 384),
        (2048, 512),
        (2560, 640),
        (3072, 768),
        (3584, 896),
    ]
    assert [f["prob"] for f in flips] == [0.0, 1.0]
    # without layer decay (the protocol's default) no per-parameter keys
    plain = _full(VIT_S8, Ade20kUperNetProtocol(), layer_ids=_vit_layer_ids(12))
    assert layer_decay_groups(plain) == {}
    with pytest.raises(VitbenchError, match="no layer ids"):
        _full(VIT_S8, Ade20kUperNetProtocol(layer_decay=0.65))


def test_upernet_hierarchical_has_no_neck_and_no_layer_decay():
    from benchmarks.dense.backbone import layer_decay_groups
    from benchmarks.dense.protocols import Ade20kUperNetProtocol

    cfg = _full(GCVIT_T, Ade20kUperNetProtocol(layer_decay=0.65), layer_ids={"model.stem.conv1.weight": 0})
    model = cfg["model"]
    assert "neck" not in model and model["decode_head"]["in_channels"] == [64, 128, 256, 512]
    assert (model["auxiliary_head"]["in_channels"], model["auxiliary_head"]["in_index"]) == (256, 2)
    assert model["data_preprocessor"]["test_cfg"] == {"size_divisor": 32}
    assert layer_decay_groups(cfg) == {}  # the rule applies to plain ViTs only
    assert "relative_position_bias_table" in cfg["optim_wrapper"]["paramwise_cfg"]["custom_keys"]


def test_cascade_1x_layer_decay_in_the_mmdet_config():
    from benchmarks.dense.backbone import layer_decay_groups
    from benchmarks.dense.protocols import CocoCascade1xProtocol, CocoDetProtocol
    from tests.dense.test_mmdet_config import _cfg as det_cfg

    cfg = det_cfg(VIT_S16, CocoCascade1xProtocol(), layer_ids=_vit_layer_ids(12))
    assert cfg["model"]["type"] == "CascadeRCNN"
    assert cfg["train_cfg"]["max_epochs"] == 12 and cfg["param_scheduler"][1]["milestones"] == [8, 11]
    groups = layer_decay_groups(cfg)
    assert len(groups) == 14 and groups[0.75**13][0] == "model.cls_token"
    keys = cfg["optim_wrapper"]["paramwise_cfg"]["custom_keys"]
    assert keys["backbone.encoder.model.blocks.5.attn.qkv.weight"] == {"lr_mult": 0.75**7, "decay_mult": 1.0}
    assert keys["backbone.encoder.model.blocks.5.norm1.bias"]["decay_mult"] == 0.0
    # the 1x/3x Mask R-CNN protocols have no layer decay: their configs are unchanged
    assert layer_decay_groups(det_cfg(VIT_S16, CocoDetProtocol(), layer_ids=_vit_layer_ids(12))) == {}
