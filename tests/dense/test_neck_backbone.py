"""The engine-neutral torch modules: pyramid shapes, backbone outputs, fine-tuning setup (no mm* needed)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.dense.backbone import EncoderBackbone, encoder_ref, register_live_encoder
from benchmarks.dense.neck import SimplePyramid, plan_neck


@pytest.mark.parametrize(("stride", "scales"), [(16, (4.0, 2.0, 1.0, 0.5)), (8, (2.0, 1.0, 0.5, 0.25))])
def test_simple_pyramid_shapes(stride, scales):
    pyr = SimplePyramid([32] * 4, scales, norm="BN")
    h, w = 256 // stride, 192 // stride
    outs = pyr([torch.randn(2, 32, h, w) for _ in range(4)])
    assert [tuple(o.shape) for o in outs] == [(2, 32, 256 // s, 192 // s) for s in (4, 8, 16, 32)]


def test_encoder_backbone_feeds_the_planned_pyramid(vit_encoder):
    plan = plan_neck(vit_encoder.spec)
    register_live_encoder(vit_encoder)
    backbone = EncoderBackbone(encoder_ref(vit_encoder), drop_path_rate=0.05)
    x = torch.randn(2, 3, 128, 96)
    feats = backbone(x)
    assert [tuple(f.shape) for f in feats] == [(2, 384, 8, 6)] * 4
    outs = SimplePyramid(plan.in_channels, plan.scales)(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 384, 128 // s, 96 // s) for s in plan.out_strides]
    # the backbone trains a copy: the caller's encoder stays frozen
    assert backbone.drop_path_blocks == 12
    assert all(p.requires_grad for p in backbone.parameters())
    assert not any(p.requires_grad for p in vit_encoder.parameters())


def test_num_heads_override_resplits_attention(vit_encoder):
    register_live_encoder(vit_encoder)
    six = EncoderBackbone(encoder_ref(vit_encoder)).eval()
    eight = EncoderBackbone(encoder_ref(vit_encoder), num_heads=8).eval()
    assert eight.num_heads_changed == 12
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = six(x)[-1], eight(x)[-1]
    assert a.shape == b.shape and not torch.allclose(a, b)
    attn = next(m for m in eight.modules() if hasattr(m, "num_heads") and hasattr(m, "qkv"))
    assert (attn.num_heads, attn.head_dim) == (8, 48)
