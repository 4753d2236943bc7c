"""Generated mmseg configs (Semantic FPN, UperNet): neck, strides, channels, indices and classes follow the encoder's
spec (no mm* needed); with the mm* stack (marker ``dense``) the model builds and computes a loss."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.dense.backbone import BACKBONE_TYPE
from benchmarks.dense.mmseg_config import build_mmseg_config, plan_seg_neck
from benchmarks.dense.neck import PYRAMID_TYPE, to_jsonable
from methods.errors import VitbenchError
from tests.dense.test_mmdet_config import GCVIT_T, MEAN, REF, STD, VIT_S8, VIT_S16


def _cfg(spec, head, **kw):
    kw = {"num_classes": 150, "encoder_ref": REF, "mean": MEAN, "std": STD, **kw}
    return build_mmseg_config(spec, head, **kw)


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
    cfg = build_mmseg_config(
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
