"""``Encoder.forward_last`` (DINO's ``get_intermediate_layers(x, n=1)``), over every registered adapter and variant.

The DAVIS and Copydays harnesses read it at frame sizes other than the encoder's native one (480 x 832 for DAVIS),
so each ViT-family variant is run on a non-square grid it was not built for: the position table must be resampled
by the encoder itself (timm's ``dynamic_img_size``), and token and map must agree with ``forward_probe``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from methods import build_encoder, get_adapter
from methods.base import _PLAIN_VIT
from tests.methods._official import RefViT, shrink
from tests.methods.test_contract import _round_trip_input, _round_trip_size, _variants

# Every ViT-family variant (the archs that get dynamic_img_size), plus one CNN for the last-stage path.
CASES = [
    pytest.param(name, v.name, id=f"{name}:{v.name}")
    for name, v in _variants()
    if _PLAIN_VIT.search(v.arch) or (name, v.name) == ("dino", "rn50")
]


def _small(arch: str) -> dict[str, int]:
    """The round-trip size at width 64: the adapter's own model arguments (no CLS, no final norm, register or
    distillation tokens, patch size, bands) stay; only the cost goes."""
    size = _round_trip_size(arch)
    return {**size, "embed_dim": 64, "num_heads": 4} if _PLAIN_VIT.search(arch) else size


@pytest.mark.parametrize(("method", "variant"), CASES)
def test_forward_last_at_a_foreign_size(method: str, variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    v = get_adapter(method).variant(variant)
    shrink(monkeypatch, method, variant, **_small(v.arch))
    enc = build_encoder(method, variant, weights="random")
    spec = enc.spec
    if spec.family == "vit":  # 3 x 5 patches: neither square nor the table's grid
        r = spec.size_divisor
        x = torch.randn(2, spec.in_chans, 3 * r, 5 * r)
    else:  # hierarchical models take the sizes their windows allow
        x = _round_trip_input(enc)
    with torch.no_grad():
        token, patches = enc.forward_last(x)
        probe_token, probe_avg = enc.forward_probe(x, [spec.num_blocks - 1])
    r = spec.reductions[-1]
    assert token.shape == (2, spec.block_dim)
    assert patches.shape == (2, spec.block_dim, x.shape[2] // r, x.shape[3] // r)
    torch.testing.assert_close(token, probe_token[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(patches.mean(dim=(2, 3)), probe_avg[:, 0], atol=1e-5, rtol=0)


def test_dino_forward_last_matches_dinos_own_vit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the native grid forward_last is DINO's ``norm(last block)`` exactly; at DAVIS's 480 x 832 frames it differs
    only by how the 14 x 14 position table is resampled (timm: bicubic to the exact 30 x 52 grid; DINO's
    ``interpolate_pos_encoding``: scale factor (52 + 0.1) / 14): 0.3 % relative, cosine >= 0.9999 per patch."""
    shrink(monkeypatch, "dino", "vits16", embed_dim=64, depth=2, num_heads=4)
    ref = RefViT(dim=64, depth=2, heads=4, patch=16, img=224)
    torch.save(ref.state_dict(), tmp_path / "dino.pth")
    enc = build_encoder("dino:vits16", weights=tmp_path / "dino.pth")
    for (h, w), rel_tol in (((224, 224), 1e-6), ((480, 832), 1e-2)):
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            token, patches = enc.forward_last(x)
            want = ref.norm(ref.block_outputs(x)[-1])
        want_patches = want[:, 1:].transpose(1, 2).reshape(1, 64, h // 16, w // 16)
        rel = ((patches - want_patches).norm() / want_patches.norm()).item()
        assert rel < rel_tol, f"{h}x{w}: relative difference {rel:.2e}"
        cos = torch.nn.functional.cosine_similarity(patches.flatten(2), want_patches.flatten(2), dim=1)
        assert cos.min() > 0.9999
        torch.testing.assert_close(token, want[:, 0], atol=2e-3, rtol=0)
