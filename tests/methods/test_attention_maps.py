"""The explanation half of the Encoder contract, over every registered adapter: per-block attention maps whose hooks
fire (UCDvision/backdoor_transformer's defense ends with empty attention lists, and with fused attention a hook on
``attn_drop`` never fires), and Grad-CAM's feature map, both in the autograd graph of forward_global."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from methods import Encoder, build_encoder, get_adapter, list_methods
from methods.base import _PLAIN_VIT
from tests.methods._official import shrink
from tests.methods.test_contract import _round_trip_size


def _cases() -> list:
    """Every token-attention (plain ViT) variant; of the others (hierarchical, CNN: Grad-CAM only), the first of
    each method, since their variants differ in width only."""
    cases, seen = [], set()
    for name in list_methods():
        for v in get_adapter(name).variants:
            if not _PLAIN_VIT.search(v.arch):
                if name in seen:
                    continue
                seen.add(name)
            cases.append(pytest.param(name, v.name, id=f"{name}:{v.name}"))
    return cases


CASES = _cases()


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _small(monkeypatch: pytest.MonkeyPatch, method: str, variant: str) -> Encoder:
    """The variant with fewer blocks (same modules per block), as the contract's round trip builds it."""
    shrink(monkeypatch, method, variant, **_round_trip_size(get_adapter(method).variant(variant).arch))
    return build_encoder(method, variant, weights="random")


def _input(enc: Encoder) -> torch.Tensor:
    c, h, w = enc.data_config.input_size
    if enc.spec.family == "vit":
        h = w = 4 * enc.spec.size_divisor
    elif enc.spec.arch.startswith("gcvit"):
        h = w = 64  # the round-trip size's img_size
    return torch.randn(2, enc.spec.in_chans, h, w)


@pytest.mark.parametrize(("method", "variant"), CASES)
def test_explanations(monkeypatch: pytest.MonkeyPatch, method: str, variant: str) -> None:
    enc = _small(monkeypatch, method, variant)
    x = _input(enc).requires_grad_(True)
    with torch.no_grad():
        ref = enc.forward_global(x)
    g, fmap = enc.forward_cam(x)
    torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4)
    assert fmap.ndim == 4 and fmap.shape[0] == 2
    # A random direction, not g.sum(): the sum of a LayerNorm's outputs is constant, so behind a fresh fc_norm (MAE's
    # fine-tuned -ft variants pool, then normalise) g.sum() has zero gradient everywhere.
    direction = torch.randn(g.shape[-1], generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((g * direction).sum(), fmap)  # fails if fmap is not what g is computed from
    if enc.spec.global_pool == "token":  # the normed CLS token: the final patch tokens do not reach it
        assert grad.abs().sum() == 0
    else:
        assert grad.abs().sum() > 0
    if enc.spec.family != "vit":
        assert not enc.has_token_attention
        with pytest.raises(ValueError, match="no token attention"):
            enc.attention_maps(x)
        return
    h, w = x.shape[-2] // enc.spec.size_divisor, x.shape[-1] // enc.spec.size_divisor
    assert fmap.shape[2:] == (h, w)
    assert enc.has_token_attention
    fused_before = [m.fused_attn for m in enc.modules() if hasattr(m, "fused_attn")]
    g, maps = enc.attention_maps(x)
    torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4)  # the unfused path computes the same function
    assert len(maps) == enc.spec.num_blocks, "one map per block: every hook fired"
    n = h * w
    for m in maps:
        assert m.ndim == 4 and m.shape[0] == 2 and m.shape[2] == m.shape[3]
        assert m.shape[-1] in (n, n + enc.spec.num_prefix_tokens)  # SP-ViT's first blocks run without the CLS
        torch.testing.assert_close(m.sum(-1), torch.ones_like(m.sum(-1)), atol=1e-5, rtol=0)
        assert (m >= 0).all()
    assert maps[-1].shape[-1] == n + enc.spec.num_prefix_tokens
    grads = torch.autograd.grad(g.sum(), maps)
    assert all(gr.shape == m.shape for gr, m in zip(grads, maps, strict=True))
    assert [m.fused_attn for m in enc.modules() if hasattr(m, "fused_attn")] == fused_before  # restored


def test_hooked_map_is_the_blocks_softmax(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block 0's hooked map equals softmax(q k^T / sqrt(d)) computed by hand from that block's own weights."""
    shrink(monkeypatch, "deit", "deits16", embed_dim=32, depth=2, num_heads=2, img_size=32)
    enc = build_encoder("deit", "deits16", weights="random")
    x = torch.randn(1, 3, 32, 32)
    _, maps = enc.attention_maps(x)
    m: Any = enc.model
    tokens = m.blocks[0].norm1(m.norm_pre(m._pos_embed(m.patch_embed(x))))  # [1, 5, 32]
    q, k, _ = m.blocks[0].attn.qkv(tokens).reshape(1, 5, 3, 2, 16).permute(2, 0, 3, 1, 4)
    by_hand = F.softmax(q @ k.transpose(-2, -1) / 16**0.5, dim=-1)
    torch.testing.assert_close(maps[0], by_hand, atol=1e-5, rtol=1e-5)
