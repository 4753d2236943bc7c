"""MoCo v3: main_moco.py checkpoints of the DDP-wrapped MoCo_ViT, parity-tested (ViT-S at full size: 12 heads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from methods import CheckpointError, build_encoder
from tests.methods._official import (
    DDP,
    SCALER,
    TINY,
    RefViT,
    assert_declared_layout,
    assert_parity,
    bn_mlp,
    optimizer_state,
    save,
    shrink,
    sincos_2d,
)


def _moco(base: RefViT, momentum: RefViT, dim: int, mlp: int = 32, out: int = 16) -> nn.Module:
    """moco/builder.py::MoCo_ViT: the ViT's ``head`` becomes a 3-layer projector; a 2-layer predictor on top."""
    moco = nn.Module()
    base.head, momentum.head = bn_mlp(3, dim, mlp, out), bn_mlp(3, dim, mlp, out)
    moco.base_encoder, moco.momentum_encoder = base, momentum
    moco.predictor = bn_mlp(2, out, mlp, out, last_bn=True)
    return moco


def _checkpoint(moco: nn.Module, arch: str, step: bool) -> dict:
    """main_moco.py::save_checkpoint of the DDP model."""
    model = DDP(moco)
    return {
        "epoch": 300,
        "arch": arch,
        "state_dict": model.state_dict(),
        "optimizer": optimizer_state(model, step),
        "scaler": SCALER,
    }


def test_vits16_has_12_heads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """vit-s-300ep.pth.tar at ViT-S width and head count (2 blocks, 32 px): a 6-head model (timm's ViT-S default)
    would load the same keys and compute different features."""
    shrink(monkeypatch, "mocov3", "vits16", depth=2, img_size=32)
    base = RefViT(dim=384, depth=2, heads=12, sincos=True, seed=1)
    momentum = RefViT(dim=384, depth=2, heads=12, sincos=True, seed=2)
    path = save(_checkpoint(_moco(base, momentum, 384), "vit_small", step=False), tmp_path / "vit-s-300ep.pth.tar")
    enc = build_encoder("mocov3", "vits16", weights=path)
    assert enc.model.blocks[0].attn.num_heads == 12
    assert_parity(enc, base, torch.randn(2, 3, 32, 32))
    # The sin-cos table is a frozen parameter of the file: it must be the one loaded, not re-initialised.
    torch.testing.assert_close(enc.model.pos_embed, sincos_2d(2, 384), atol=0, rtol=0)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "state_dict" and rep.stripped_prefixes == ["module.", "base_encoder."]
    assert {k.split(".")[0] for k in rep.dropped} == {"momentum_encoder", "predictor", "head"}


def test_vitb16_training_layout_loads_the_base_encoder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "mocov3", "vitb16", **TINY)
    base, momentum = RefViT(sincos=True, seed=1), RefViT(sincos=True, seed=2)
    moco = _moco(base, momentum, 64)
    path = save(_checkpoint(moco, "vit_base", step=True), tmp_path / "checkpoint_0299.pth.tar")
    enc = build_encoder("mocov3:vitb16", weights=path)
    assert_parity(enc, base, torch.randn(2, 3, 32, 32))  # the base encoder, not the momentum one
    encoder = {k for k in moco.state_dict() if k.startswith("base_encoder.") and ".head." not in k}
    expected = {k.removeprefix("base_encoder.") for k in moco.state_dict() if k not in encoder}
    assert set(enc.identity.load_report.dropped) == expected
    assert any(k.startswith("momentum_encoder.head.") for k in expected) and "head.1.running_mean" in expected


def test_convert_to_deit_output_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """convert_to_deit.py writes {'model': base encoder without head}: the same weights, no prefixes."""
    shrink(monkeypatch, "mocov3", "vitb16", **TINY)
    base = RefViT(sincos=True, seed=3)
    enc = build_encoder("mocov3:vitb16", weights=save({"model": base.state_dict()}, tmp_path / "deit.pth"))
    assert_parity(enc, base, torch.randn(2, 3, 32, 32))
    assert enc.identity.load_report.checkpoint_key == "model"


def test_declared_layouts_match_the_files_above(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "mocov3", "vitb16", **TINY)
    base, momentum = RefViT(sincos=True, seed=1), RefViT(sincos=True, seed=2)
    assert_declared_layout("mocov3", "vitb16", "training", _checkpoint(_moco(base, momentum, 64), "vit_base", False))
    assert_declared_layout("mocov3", "vitb16", "convert_to_deit", {"model": RefViT(sincos=True).state_dict()})


def test_wrong_variant_names_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A ViT-B-layout file (here: another width) into the ViT-S variant is refused, naming the keys."""
    shrink(monkeypatch, "mocov3", "vits16", depth=2, img_size=32)
    moco = _moco(RefViT(depth=2, sincos=True), RefViT(depth=2, sincos=True), 64)
    path = save(_checkpoint(moco, "vit_base", step=False), tmp_path / "vit-b-300ep.pth.tar")
    with pytest.raises(CheckpointError, match=r"does not fit mocov3:vits16 .*(cls_token|pos_embed|patch_embed)"):
        build_encoder("mocov3", "vits16", weights=path)
