"""SemMAE: MAE-style training checkpoints (main_pretrain_setting3.py), ViT-B/16 and ViT-B/8 at 112 px."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from timm.layers import resample_abs_pos_embed

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

B8 = {"embed_dim": 64, "depth": 4, "num_heads": 4}  # the vitb8 variant keeps its own img_size=112


def _checkpoint(encoder: RefViT, grid: int, patch: int) -> dict:
    """MAE's util/misc.py::save_model (SemMAE builds on MAE): the whole MaskedAutoencoderViT and training state."""
    return {
        "model": encoder.state_dict() | mae_decoder(64, grid, patch),
        "optimizer": optimizer_state(encoder),
        "epoch": 799,
        "scaler": SCALER,
        "args": namespace(model="mae_vit_base_patch8_ours", input_size=112, mask_ratio=0.75, setting=3),
    }


def test_vitb16(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "semmae", "vitb16", **TINY)
    ref = RefViT(sincos=True, seed=1)
    enc = build_encoder("semmae", "vitb16", weights=save(_checkpoint(ref, 2, 16), tmp_path / "checkpoint-799.pth"))
    assert_parity(enc, ref, torch.randn(2, 3, 32, 32))
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "model" and "mask_token" in rep.dropped and rep.converted == []
    assert all(k == "mask_token" or k.startswith("decoder_") for k in rep.dropped)


def test_declared_layout_matches_the_file_above(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "semmae", "vitb16", **TINY)
    assert_declared_layout("semmae", "vitb16", "training", _checkpoint(RefViT(sincos=True), 2, 16))


def test_vitb8_at_112_px(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """models_vit.py defines ViT-B/8 with img_size=112: 14x14 tokens of 8 px."""
    shrink(monkeypatch, "semmae", "vitb8", **B8)
    ref = RefViT(patch=8, img=112, sincos=True, seed=2)
    enc = build_encoder("semmae:vitb8", weights=save(_checkpoint(ref, 14, 8), tmp_path / "checkpoint-799.pth"))
    assert enc.data_config.input_size == (3, 112, 112)
    assert_parity(enc, ref, torch.randn(1, 3, 112, 112))


def test_vitb8_28x28_position_table_is_resampled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """models_mae_setting3.py hard-codes a 28x28 table ([1, 785, C]); at 112 px the grid is 14x14: the adapter
    resamples the table once at load and says so in the load report."""
    shrink(monkeypatch, "semmae", "vitb8", **B8)
    ref = RefViT(patch=8, img=224, sincos=True, seed=3)
    enc = build_encoder("semmae:vitb8", weights=save(_checkpoint(ref, 28, 8), tmp_path / "checkpoint-799.pth"))
    assert enc.identity.load_report.converted == [  # a grid SemMAE declares (pos_embed_grids): no option needed
        "pos_embed grid 28x28 -> 14x14: a grid the method's files are released at",
        "pos_embed [1, 785, 64] -> [1, 197, 64] (bicubic resample)",
    ]
    with torch.no_grad():  # what the report says happened: the same table, resampled to 14x14
        ref.pos_embed = torch.nn.Parameter(resample_abs_pos_embed(ref.pos_embed, (14, 14), num_prefix_tokens=1))
    assert_parity(enc, ref, torch.randn(1, 3, 112, 112))


def test_vitb16_file_into_vitb8_names_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "semmae", "vitb8", **B8)
    path = save(_checkpoint(RefViT(img=224), 14, 16), tmp_path / "semmae_b16.pth")
    match = r"does not fit semmae:vitb8 .*patch_embed\.proj\.weight \[64, 3, 16, 16\]"
    with pytest.raises(CheckpointError, match=match):
        build_encoder("semmae:vitb8", weights=path)


def test_no_license_and_no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "semmae", "vitb8", **B8)  # build() creates the model before it looks for weights
    adapter = get_adapter("semmae")
    assert {v.license for v in adapter.variants} == {"none (all rights reserved)"}
    with pytest.raises(CheckpointError, match="no public weights to download"):
        build_encoder("semmae:vitb8")
