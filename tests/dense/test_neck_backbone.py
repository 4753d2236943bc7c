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


def test_backbone_takes_the_protocols_blocks(vit_encoder):
    """``vit_indices`` (SelfPatch's 2/5/8/11) replaces the adapter's dense blocks (3/5/7/11) of a plain ViT."""
    register_live_encoder(vit_encoder)
    backbone = EncoderBackbone(encoder_ref(vit_encoder), vit_indices=(2, 5, 8, 11)).eval()
    assert vit_encoder.spec.indices == (3, 5, 7, 11) and backbone.encoder.spec.indices == (2, 5, 8, 11)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        got = backbone(x)
        want = vit_encoder.model.forward_intermediates(
            x, indices=[2, 5, 8, 11], output_fmt="NCHW", intermediates_only=True
        )
    assert len(got) == 4 and all(torch.equal(a, b) for a, b in zip(got, want))


def test_layer_ids_follow_beits_numbering(vit_encoder):
    ids = vit_encoder.layer_ids()
    assert set(ids) == {n for n, _ in vit_encoder.named_parameters()}
    assert ids["model.cls_token"] == ids["model.pos_embed"] == ids["model.patch_embed.proj.weight"] == 0
    assert ids["model.blocks.0.attn.qkv.weight"] == 1 and ids["model.blocks.11.mlp.fc2.bias"] == 12
    assert ids["model.norm.weight"] == 13  # after the last block: trains at the head's lr
