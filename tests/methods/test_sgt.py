"""SGT: attention-masking semantics, the EG-ViT data flow, the no-saliency fallback and a checkpoint round trip."""

from __future__ import annotations

import argparse

import pytest
import timm
import torch

import methods.archs.sgt as arch
from methods.base import with_variant
from methods.sgt import SGT
from tests.methods._official import assert_declared_layout, shrink

TINY = dict(embed_dim=32, depth=3, num_heads=2, img_size=64, keep_ratio=0.25)  # 4x4 patches, 4 kept, 2 masked blocks


def tiny_model(**kw) -> arch.SaliencyGuidedViT:
    torch.manual_seed(0)
    return timm.create_model("sgt_vit_small_patch16_224", **{"num_classes": 0, **TINY, **kw}).eval()


def tiny_adapter(variant: str = "vits16") -> SGT:
    base = SGT().variant(variant)

    class Tiny(SGT):
        variants = (with_variant(base, model_kwargs={**base.model_kwargs, **TINY}),)

    return Tiny()


def test_keep_mask_is_top_k_of_resized_saliency():
    sal = torch.zeros(1, 64, 64)
    sal[0, :16, 48:] = 1.0  # top-right patch
    sal[0, 48:, :32] = 0.5  # bottom-left two patches
    keep = arch.saliency_keep_mask(sal, (4, 4), keep_ratio=3 / 16)
    assert keep.shape == (1, 16) and keep.sum() == 3
    assert keep[0].nonzero().flatten().tolist() == [3, 12, 13]


def test_masked_patches_get_no_attention_except_in_last_layer():
    model = tiny_model()
    probs = []
    for blk in model.blocks:
        blk.attn.fused_attn = False  # the explicit softmax path, so the weights can be read at attn_drop
        blk.attn.attn_drop.register_forward_hook(lambda m, inp, out: probs.append(inp[0]))
    x, sal = torch.randn(2, 3, 64, 64), torch.rand(2, 64, 64)
    keep = model.keep_mask(x, sal)
    with torch.no_grad():
        model.forward_features(x, saliency=sal)
    assert len(probs) == 3 and keep.sum(1).tolist() == [4, 4]
    masked_cols = torch.cat([torch.zeros(2, 1, dtype=torch.bool), ~keep], dim=1)[:, None, None, :]  # [B,1,1,1+N]
    for p in probs[:2]:  # masked stage: no query puts any weight on a masked patch
        assert p.shape == (2, 2, 17, 17)
        assert torch.all(p.masked_select(masked_cols.expand_as(p)) == 0)
        assert torch.allclose(p.sum(-1), torch.ones(2, 2, 17))
    last = probs[2]
    assert torch.all(last.masked_select(masked_cols.expand_as(last)) > 0)  # the last layer attends over all


def test_masked_content_reaches_cls_only_through_the_last_layer():
    model = tiny_model()
    x, sal = torch.randn(1, 3, 64, 64), torch.rand(1, 64, 64)
    keep = model.keep_mask(x, sal)[0].reshape(4, 4)
    x2 = x.clone()
    for r, c in (~keep).nonzero().tolist():  # repaint every masked patch
        x2[:, :, 16 * r : 16 * r + 16, 16 * c : 16 * c + 16] = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a = model.forward_intermediates(
            x, saliency=sal, norm=False, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
        )
        b = model.forward_intermediates(
            x2, saliency=sal, norm=False, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
        )
    kept = keep.flatten()
    for i in (0, 1):
        assert torch.allclose(a[i][1], b[i][1], atol=1e-6)  # CLS
        assert torch.allclose(a[i][0][:, kept], b[i][0][:, kept], atol=1e-6)  # kept patches
    assert not torch.allclose(a[2][1], b[2][1], atol=1e-4)


def test_matches_eg_vit_token_dropping():
    """Re-states EG-ViT's ``forward_with_mask`` (masked_select, raw CLS, index_add_ residual) on the same weights."""
    model = tiny_model()
    x, sal = torch.randn(2, 3, 64, 64), torch.rand(2, 64, 64)
    keep = model.keep_mask(x, sal)
    with torch.no_grad():
        t = model.patch_embed(x)
        b, n, c = t.shape
        cls = model.cls_token.expand(b, -1, -1)
        t = torch.cat([cls, t], dim=1) + model.pos_embed
        res = torch.masked_select(t[:, 1:], keep.reshape(b, n, 1)).reshape(b, int(keep.sum()) // b, c)
        res = torch.cat([cls, res], dim=1)
        for i in range(2):
            res = model.blocks[i](res)
        index = torch.arange(b * n).reshape(b, n).masked_select(keep)
        full = t[:, 1:].reshape(b * n, c).index_add(0, index, res[:, 1:].reshape(-1, c)).reshape(b, n, c)
        ref = model.norm(model.blocks[2](torch.cat([res[:, :1], full], dim=1)))
        assert (model.forward_features(x, saliency=sal) - ref).abs().max() <= 1e-5


def test_without_saliency_it_is_a_plain_vit():
    model = tiny_model()
    vit = timm.create_model("vit_small_patch16_224", num_classes=0, embed_dim=32, depth=3, num_heads=2, img_size=64)
    vit.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), vit.eval().forward_features(x))
        assert model.keep_mask(x) is None


def eg_vit_checkpoint(src: torch.nn.Module) -> dict:
    """What EG-ViT's main_siim.py saves for the DDP-wrapped model ``src``."""
    return {
        "model": {f"module.{k}": v for k, v in src.state_dict().items()},
        "args": argparse.Namespace(res_layer=2, gaze_mask_num=4),
        "optimizer": {"state": {}},
        "lr_scheduler": {"last_epoch": 5},
        "epoch": 5,
    }


def test_checkpoint_round_trip_in_eg_vit_layout(tmp_path):
    src = tiny_model(num_classes=2)  # a fine-tuned 2-class model, saved as EG-ViT's main_siim.py saves it
    torch.save(eg_vit_checkpoint(src), tmp_path / "deit_small_best.pth")
    enc = tiny_adapter().build(weights=str(tmp_path / "deit_small_best.pth"))
    report = enc.identity.load_report
    assert report.checkpoint_key == "model" and report.stripped_prefixes == ["module."]
    assert sorted(report.dropped) == ["head.bias", "head.weight"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = src.forward_intermediates(x, indices=list(enc.spec.indices), output_fmt="NCHW", intermediates_only=True)
        for ours, theirs in zip(enc.forward_dense(x), ref, strict=True):
            assert ours.shape == (2, 32, 4, 4) and torch.equal(ours, theirs)
        assert torch.equal(enc.forward_global(x), src.forward_head(src.forward_features(x), pre_logits=True))


def test_declared_layout_matches_the_eg_vit_file(monkeypatch):
    shrink(monkeypatch, "sgt", "vits16", **TINY)
    assert_declared_layout("sgt", "vits16", "eg-vit", eg_vit_checkpoint(tiny_model(num_classes=2)))


def test_spectral_residual_variant_masks_through_the_encoder_api():
    enc = tiny_adapter("vits16-sr").build(weights="random")
    plain = tiny_adapter("vits16").build(weights="random")  # same seed, same weights
    x = torch.randn(2, 3, 64, 64)
    sal = arch.spectral_residual_saliency(x)
    assert sal.shape == (2, 1, 64, 64) and torch.isfinite(sal).all()
    with torch.no_grad():
        g = enc.forward_global(x)
        assert g.shape == (2, 32) and not torch.allclose(g, plain.forward_global(x))
        assert torch.allclose(g, enc.model.forward_head(enc.model.forward_features(x, saliency=sal), pre_logits=True))
        assert [f.shape for f in enc.forward_dense(x)] == [(2, 32, 4, 4)] * len(enc.spec.indices)
        tok, avg = enc.forward_probe(x, [0, 2])
        assert tok.shape == avg.shape == (2, 2, 32)


def test_bad_arguments():
    with pytest.raises(ValueError, match="masked_depth"):
        tiny_model(masked_depth=3)
    with pytest.raises(ValueError, match="saliency_model"):
        tiny_model(saliency_model="deepgaze")
    with pytest.raises(Exception, match="saliency must be"):
        tiny_model().forward_features(torch.randn(1, 3, 64, 64), saliency=torch.rand(1, 2, 8, 8))
