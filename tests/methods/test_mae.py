"""MAE: the released encoder-only files and main_pretrain.py training checkpoints, parity-tested."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from methods import CheckpointError, build_encoder, get_adapter
from tests.methods._official import (
    SCALER,
    TINY,
    RefViT,
    assert_declared_layout,
    assert_parity,
    mae_decoder,
    namespace,
    optimizer_state,
    save,
    shrink,
)

X = torch.randn(2, 3, 32, 32)


@pytest.fixture
def ref(monkeypatch: pytest.MonkeyPatch) -> RefViT:
    shrink(monkeypatch, "mae", "vitb16", **TINY)
    return RefViT(sincos=True)  # MAE's encoder position table is a frozen 2D sin-cos (models_mae.py)


def test_released_encoder_file(ref: RefViT, tmp_path: Path) -> None:
    """mae_pretrain_vit_base.pth: {'model': encoder state dict}, final norm included."""
    path = save({"model": ref.state_dict()}, tmp_path / "mae_pretrain_vit_base.pth")
    enc = build_encoder("mae", "vitb16", weights=path)
    assert_parity(enc, ref, X)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "model" and rep.stripped_prefixes == [] and rep.converted == []
    assert rep.dropped == [] and rep.matched == len(ref.state_dict())


def _training_checkpoint(ref: RefViT, decoder: dict[str, torch.Tensor]) -> dict:
    """main_pretrain.py -> util/misc.py::save_model: the whole MaskedAutoencoderViT plus optimizer/scaler/args."""
    return {
        "model": {**ref.state_dict(), **decoder},
        "optimizer": optimizer_state(ref),
        "epoch": 799,
        "scaler": SCALER,
        "args": namespace(model="mae_vit_base_patch16", mask_ratio=0.75, norm_pix_loss=True),
    }


def test_training_checkpoint_drops_the_decoder(ref: RefViT, tmp_path: Path) -> None:
    """main_pretrain.py -> util/misc.py::save_model: the whole MaskedAutoencoderViT plus optimizer/scaler/args."""
    decoder = mae_decoder(64, grid=2, patch=16)
    ckpt = _training_checkpoint(ref, decoder)
    enc = build_encoder("mae:vitb16", weights=save(ckpt, tmp_path / "checkpoint-799.pth"))
    assert_parity(enc, ref, X)
    assert sorted(enc.identity.load_report.dropped) == sorted(decoder)
    assert "mask_token" in decoder and "decoder_pred.weight" in decoder


def test_declared_layouts_match_the_files_above(ref: RefViT) -> None:
    assert_declared_layout("mae", "vitb16", "release", {"model": ref.state_dict()})
    assert_declared_layout("mae", "vitb16", "training", _training_checkpoint(ref, mae_decoder(64, grid=2, patch=16)))


def test_wrong_size_is_refused_naming_keys(ref: RefViT, tmp_path: Path) -> None:
    """A deeper encoder (think ViT-L into the ViT-B variant) leaves blocks the model does not have."""
    path = save({"model": RefViT(depth=6).state_dict()}, tmp_path / "mae_pretrain_vit_large.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys for mae:vitb16 .*blocks\.[45]\."):
        build_encoder("mae", "vitb16", weights=path)


@pytest.mark.parametrize(
    ("variant", "patch", "dim", "depth", "heads"),
    [("vitb16", 16, 768, 12, 12), ("vitl16", 16, 1024, 24, 16), ("vith14", 14, 1280, 32, 16)],
)
def test_variants_match_models_vit(variant: str, patch: int, dim: int, depth: int, heads: int) -> None:
    """mae/models_vit.py: vit_{base,large}_patch16 and vit_huge_patch14 (checked on the meta device: no weights)."""
    adapter = get_adapter("mae")
    with torch.device("meta"):
        model = adapter.create_model(adapter.variant(variant))
    assert model.patch_embed.proj.weight.shape == (dim, 3, patch, patch)
    assert len(model.blocks) == depth and model.blocks[0].attn.num_heads == heads
    assert model.pos_embed.shape == (1, 1 + (224 // patch) ** 2, dim) and model.blocks[0].norm1.eps == 1e-6
    size = {"b": "base", "l": "large", "h": "huge"}[variant[3]]
    assert adapter.variant(variant).weights_url.endswith(f"/mae_pretrain_vit_{size}.pth")
