"""ViT-VQGAN encoder: shapes, nearest-l2-normalised-code assignment, the Encoder API and a checkpoint round trip."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import methods.archs.vit_vqgan as arch
from methods.base import with_variant
from methods.vit_vqgan import ViTVQGAN
from tests.methods._official import assert_declared_layout, shrink

TINY = dict(embed_dim=32, depth=2, num_heads=2, img_size=32, code_dim=8, num_codes=64)  # 4x4 tokens of 8 px


def tiny_model(**kw) -> arch.ViTVQGANEncoder:
    torch.manual_seed(0)
    return timm.create_model("vit_vqgan_small_patch8_256", **{"num_classes": 0, **TINY, **kw}).eval()


def tiny_adapter() -> ViTVQGAN:
    base = ViTVQGAN().variant("small")

    class Tiny(ViTVQGAN):
        variants = (with_variant(base, model_kwargs=TINY),)

    return Tiny()


def test_shapes_and_output_stage():
    model = tiny_model()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        z = model.forward_features(x)
        assert z.shape == (2, 16, 32) and model.num_prefix_tokens == 0 and model.cls_token is None
        blocks = model.forward_intermediates(x, indices=[0, 1], output_fmt="NLC", intermediates_only=True)
        assert torch.allclose(model.out_ffn.fc2(torch.tanh(model.out_ffn.fc1(model.norm(blocks[-1])))), z, atol=1e-6)
        maps = model.forward_intermediates(x, indices=[0, 1], norm=True, intermediates_only=True)
        assert [m.shape for m in maps] == [(2, 32, 4, 4)] * 2
        assert torch.allclose(maps[-1], z.transpose(1, 2).reshape(2, 32, 4, 4), atol=1e-6)
        lat = model.encode_latents(x)
        assert lat.shape == (2, 16, 8) and torch.allclose(lat.norm(dim=-1), torch.ones(2, 16), atol=1e-5)
        codes = model.encode_codes(x)
        assert codes.shape == (2, 4, 4) and codes.dtype == torch.long and 0 <= codes.min() and codes.max() < 64
    assert model.quantizer.codebook.weight.shape == (64, 8)


def test_code_is_the_nearest_l2_normalised_code():
    q = arch.FactorizedQuantizer(dim=4, code_dim=3, num_codes=5)
    with torch.no_grad():
        q.proj.weight.copy_(torch.eye(3, 4))  # lookup latent = the first three input coordinates
        q.proj.bias.zero_()
        lat = F.normalize(torch.tensor([1.0, 0.0, 0.0]), dim=0)
        u = torch.tensor([0.0, 1.0, 0.0])
        q.codebook.weight.copy_(
            torch.stack(
                [
                    torch.tensor([0.0, 0.0, 1.0]),
                    3.0 * lat,  # same direction, far in raw space: the nearest once both are normalised
                    F.normalize(lat + 0.3 * u, dim=0),  # nearest in raw Euclidean distance (0.29 away)
                    10.0 * F.normalize(lat + u, dim=0),  # largest raw dot product (7.07)
                    -lat,
                ]
            )
        )
    z = torch.tensor([[2.0, 0.0, 0.0, 5.0]])  # the 4th coordinate is projected away
    assert q.codes(z).tolist() == [1]
    quant, codes = q(z)
    assert codes.tolist() == [1] and torch.allclose(quant, lat[None], atol=1e-6)

    torch.manual_seed(0)  # and in general: argmin of the distance between normalised vectors
    q = arch.FactorizedQuantizer(dim=16, code_dim=8, num_codes=128)
    z = torch.randn(4, 10, 16)
    dist = torch.cdist(F.normalize(q.proj(z), dim=-1), F.normalize(q.codebook.weight, dim=-1)[None].expand(4, -1, -1))
    with torch.no_grad():
        assert torch.equal(q.codes(z), dist.argmin(dim=-1))


def test_encoder_api():
    enc = tiny_adapter().build(weights="random")
    x = torch.randn(2, 3, 32, 32)
    spec = enc.spec
    assert spec.family == "vit" and spec.num_prefix_tokens == 0 and spec.global_pool == "avg" and spec.norm
    assert spec.probe_pool == "avg" and enc.data_config.input_size == (3, 32, 32) and enc.data_config.mean == (0.5,) * 3
    with torch.no_grad():
        z = enc.model.forward_features(x)
        assert torch.allclose(enc.forward_global(x), z.mean(dim=1))
        dense = enc.forward_dense(x)
        assert [d.shape for d in dense] == [(2, 32, 4, 4)] * len(spec.indices) and spec.reductions[0] == 8
        assert torch.allclose(dense[-1], z.transpose(1, 2).reshape(2, 32, 4, 4), atol=1e-6)  # pre-quantisation
        tok, avg = enc.forward_probe(x, [0, 1])
        assert tok.shape == (2, 2, 32) and torch.equal(tok, avg)


def test_checkpoint_round_trip(tmp_path):
    src = tiny_model()
    sd = dict(src.state_dict())
    sd["decoder.blocks.0.mlp.fc1.weight"] = torch.zeros(4, 4)  # a full autoencoder file also carries its decoder
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "vitvqgan.ckpt")
    enc = tiny_adapter().build(weights=str(tmp_path / "vitvqgan.ckpt"))
    report = enc.identity.load_report
    assert report.checkpoint_key == "state_dict" and report.dropped == ["decoder.blocks.0.mlp.fc1.weight"]
    assert "quantizer.codebook.weight" in src.state_dict() and "out_ffn.fc1.weight" in src.state_dict()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = src.forward_intermediates(x, indices=list(enc.spec.indices), norm=True, intermediates_only=True)
        for ours, theirs in zip(enc.forward_dense(x), ref, strict=True):
            assert torch.equal(ours, theirs)
        assert torch.equal(enc.model.encode_codes(x), src.encode_codes(x))


def test_declared_layout_matches_the_file_above(monkeypatch):
    shrink(monkeypatch, "vit-vqgan", "small", **TINY)
    sd = dict(tiny_model().state_dict())
    sd["decoder.blocks.0.mlp.fc1.weight"] = torch.zeros(4, 4)
    assert_declared_layout("vit-vqgan", "small", "autoencoder", {"state_dict": sd, "epoch": 3})


@pytest.mark.slow
def test_full_size_small_encoder():
    model = timm.create_model("vit_vqgan_small_patch8_256", num_classes=0)
    assert model.patch_embed.grid_size == (32, 32) and len(model.blocks) == 8 and model.embed_dim == 512
    assert model.quantizer.codebook.weight.shape == (8192, 32)
