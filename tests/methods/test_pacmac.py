"""PACMAC: the in-domain MAE (main_pretrain.py) and DINO (main_dino.py) ViT-B/16 checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from methods import CheckpointError, build_encoder
from tests.methods._official import (
    SCALER,
    TINY,
    RefViT,
    assert_declared_layout,
    assert_parity,
    dino_head,
    mae_decoder,
    namespace,
    optimizer_state,
    prefixed,
    save,
    shrink,
)

X = torch.randn(2, 3, 32, 32)


def _mae_checkpoint(ref: RefViT, decoder: dict[str, torch.Tensor]) -> dict:
    """main_pretrain.py -> misc.save_model: the whole MaskedAutoencoderViT under 'model' (+ training state)."""
    return {
        "model": ref.state_dict() | decoder,
        "optimizer": optimizer_state(ref),
        "epoch": 799,
        "scaler": SCALER,
        "args": namespace(
            model="mae_vit_base_patch16",
            domains="data/OfficeHome/txt/source_Clipart_cls.txt",
            target_domains="data/OfficeHome/txt/source_Product_cls.txt",
            rand_augs=3,
        ),
    }


def test_mae_variant(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """main_pretrain.py -> misc.save_model: the whole MaskedAutoencoderViT under 'model' (+ training state)."""
    shrink(monkeypatch, "pacmac", "vitb16-mae", **TINY)
    ref = RefViT(sincos=True, seed=1)
    decoder = mae_decoder(64, 2, 16)
    ckpt = _mae_checkpoint(ref, decoder)
    enc = build_encoder("pacmac", "vitb16-mae", weights=save(ckpt, tmp_path / "checkpoint-799.pth"))
    assert_parity(enc, ref, X)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "model" and sorted(rep.dropped) == sorted(decoder)


def _dino_checkpoint(teacher: RefViT) -> dict:
    student = RefViT(seed=9)
    return {
        "student": prefixed("module.backbone.", student.state_dict()) | prefixed("module.head.", dino_head(64)),
        "teacher": prefixed("backbone.", teacher.state_dict()) | prefixed("head.", dino_head(64)),
        "optimizer": optimizer_state(student),
        "epoch": 200,
        "args": namespace(arch="vit_base", patch_size=16),
        "dino_loss": {"center": torch.zeros(1, 48)},
        "fp16_scaler": SCALER,
    }


def test_dino_variant_loads_the_teacher(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "pacmac", "vitb16-dino", **TINY)
    teacher = RefViT(seed=2)
    enc = build_encoder("pacmac:vitb16-dino", weights=save(_dino_checkpoint(teacher), tmp_path / "checkpoint.pth"))
    assert_parity(enc, teacher, X)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "teacher" and rep.stripped_prefixes == ["backbone."]
    assert sorted(rep.dropped) == sorted(prefixed("head.", dino_head(64)))


def test_declared_layouts_match_the_files_above(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "pacmac", "vitb16-mae", **TINY)
    shrink(monkeypatch, "pacmac", "vitb16-dino", **TINY)
    assert_declared_layout("pacmac", "vitb16-mae", "training", _mae_checkpoint(RefViT(), mae_decoder(64, 2, 16)))
    assert_declared_layout("pacmac", "vitb16-dino", "training", _dino_checkpoint(RefViT()))


def test_dino_file_as_the_mae_variant_names_the_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "pacmac", "vitb16-mae", **TINY)
    path = save(_dino_checkpoint(RefViT()), tmp_path / "checkpoint.pth")
    match = r"no state dict found: looked for \['model'\]; top-level keys: .*teacher"
    with pytest.raises(CheckpointError, match=match):
        build_encoder("pacmac:vitb16-mae", weights=path)
