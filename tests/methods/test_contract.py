"""The encoder contract, run over every registered adapter and variant: adding a method adds its tests.

Variants over 200M parameters (counted on the meta device, so collection stays cheap) are marked ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from methods import get_adapter, list_methods
from methods.base import Encoder


def _cases() -> list:
    cases = []
    for name in list_methods():
        adapter = get_adapter(name)
        for v in adapter.variants:
            marks = []
            try:
                with torch.device("meta"):
                    n_params = sum(p.numel() for p in adapter.create_model(v).parameters())
            except Exception:  # an arch that cannot build on meta is built for real in the test
                n_params = 0
            if n_params > 200e6:
                marks.append(pytest.mark.slow)
            cases.append(pytest.param(name, v.name, id=f"{name}:{v.name}", marks=marks))
    return cases


CASES = _cases()


def _input(enc: Encoder) -> torch.Tensor:
    c, h, w = enc.data_config.input_size
    if enc.spec.family == "vit":  # plain ViTs take any multiple of the patch size: keep it small
        h = w = 4 * enc.spec.size_divisor
    return torch.randn(2, enc.spec.in_chans, h, w)


@pytest.mark.parametrize(("method", "variant"), CASES)
def test_encoder_contract(method: str, variant: str) -> None:
    enc = get_adapter(method).build(variant, weights="random", seed=0)
    spec = enc.spec
    x = _input(enc)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    assert len(spec.indices) == len(spec.channels) == len(spec.reductions) > 0
    assert spec.family in ("vit", "hierarchical", "cnn")
    assert spec.in_chans == enc.data_config.input_size[0]

    g = enc.forward_global(x)
    assert g.shape == (2, spec.embed_dim)
    assert torch.isfinite(g).all()

    dense = enc.forward_dense(x)
    assert len(dense) == len(spec.indices)
    for fmap, ch, r in zip(dense, spec.channels, spec.reductions, strict=True):
        assert fmap.shape[:2] == (2, ch)
        assert fmap.shape[2:] == (x.shape[2] // r, x.shape[3] // r), f"stride {r} for input {tuple(x.shape[2:])}"

    blocks = [0, spec.num_blocks - 1] if spec.family == "vit" else [spec.num_blocks - 1]
    tok, avg = enc.forward_probe(x, blocks)
    assert tok.shape == avg.shape == (2, len(blocks), spec.block_dim)
    assert enc.probe_widths(blocks) == [spec.block_dim] * len(blocks)
    assert enc.forward_tokens(x, 1).shape == (2, 1, spec.block_dim)
    if spec.family != "vit" and len(set(enc.probe_widths(list(range(spec.num_blocks))))) > 1:
        with pytest.raises(ValueError, match="differ in width"):
            enc.forward_probe(x, list(range(spec.num_blocks)))


@pytest.mark.parametrize(("method", "variant"), CASES)
def test_adapter_metadata(method: str, variant: str) -> None:
    adapter = get_adapter(method)
    v = adapter.variant(variant)
    assert adapter.paper.title and adapter.paper.code_url is not None or not v.released
    assert v.license, f"{method}:{variant} must state its weights' license"
    if v.weights_url:
        assert v.weights_url.startswith(("https://", "hf-hub:"))
    if v.sha256 is not None:
        assert len(v.sha256) == 64


def test_registry_rejects_duplicates_and_suggests() -> None:
    from methods.errors import UnknownNameError
    from methods.registry import register

    with pytest.raises(ValueError, match="already registered"):
        register("dino", "methods.dino:Dino")
    with pytest.raises(UnknownNameError, match="did you mean 'dino'"):
        get_adapter("dinno")
    with pytest.raises(UnknownNameError, match="unknown variant 'vits17'.*did you mean"):
        get_adapter("dino").variant("vits17")


def test_registry_listing_is_lazy() -> None:
    """Listing methods must not import adapter modules (model code)."""
    import subprocess
    import sys

    code = (
        "import sys; from methods.registry import list_methods; names = list_methods(); "
        "assert 'dino' in names; assert 'methods.dino' not in sys.modules, 'listing imported methods.dino'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
