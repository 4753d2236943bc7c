"""DeiT: the released {'model': ...} files with their ImageNet classifier, and main.py training checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from timm.scheduler import CosineLRScheduler

from methods import CheckpointError, build_encoder, get_adapter
from tests.methods._official import SCALER, TINY, RefViT, assert_declared_layout, assert_parity, namespace, save, shrink

X = torch.randn(2, 3, 32, 32)


def _with_head(ref: RefViT, dim: int) -> dict[str, torch.Tensor]:
    return ref.state_dict() | {"head.weight": torch.randn(1000, dim), "head.bias": torch.randn(1000)}


def test_deitb16_release_drops_the_classifier(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """deit_base_patch16_224-b5f2ef4d.pth (the backdoor paper's victim): {'model': ViT + 1000-class head}."""
    shrink(monkeypatch, "deit", "deitb16", **TINY)
    ref = RefViT(seed=1)
    path = save({"model": _with_head(ref, 64)}, tmp_path / "deit_base_patch16_224-b5f2ef4d.pth")
    enc = build_encoder("deit", "deitb16", weights=path)
    assert_parity(enc, ref, X)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "model" and rep.dropped == ["head.bias", "head.weight"]
    assert get_adapter("deit").lane == "supervised"


def test_deits16_release_6_heads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DeiT-S: width 384 with 6 heads (models.py deit_small_patch16_224), 2 blocks at 32 px."""
    shrink(monkeypatch, "deit", "deits16", depth=2, img_size=32)
    ref = RefViT(dim=384, depth=2, heads=6, seed=2)
    path = save({"model": _with_head(ref, 384)}, tmp_path / "deit_small_patch16_224-cd65a155.pth")
    assert_parity(build_encoder("deit:deits16", weights=path), ref, X)


def _training_checkpoint(ref: RefViT, ema: RefViT) -> dict:
    """main.py: {'model', 'optimizer', 'lr_scheduler', 'epoch', 'model_ema', 'scaler', 'args'}."""
    opt = torch.optim.AdamW(ref.parameters(), lr=5e-4)
    sched = CosineLRScheduler(opt, t_initial=300, lr_min=1e-5, warmup_t=5, warmup_lr_init=1e-6)
    return {
        "model": _with_head(ref, 64),
        "optimizer": opt.state_dict(),
        "lr_scheduler": sched.state_dict(),
        "epoch": 299,
        "model_ema": _with_head(ema, 64),
        "scaler": SCALER,
        "args": namespace(model="deit_base_patch16_224", input_size=224, smoothing=0.1),
    }


def test_training_checkpoint_loads_model_not_ema(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """main.py: {'model', 'optimizer', 'lr_scheduler', 'epoch', 'model_ema', 'scaler', 'args'}."""
    shrink(monkeypatch, "deit", "deitb16", **TINY)
    ref, ema = RefViT(seed=3), RefViT(seed=4)
    ckpt = _training_checkpoint(ref, ema)
    enc = build_encoder("deit:deitb16", weights=save(ckpt, tmp_path / "checkpoint.pth"))
    assert_parity(enc, ref, X)


def test_declared_layouts_match_the_files_above(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "deit", "deitb16", **TINY)
    ref = RefViT(seed=3)
    assert_declared_layout("deit", "deitb16", "release", {"model": _with_head(ref, 64)})
    assert_declared_layout("deit", "deitb16", "training", _training_checkpoint(ref, RefViT(seed=4)))


def test_wrong_variant_names_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A DeiT-S file into the DeiT-B variant (both shrunk to 2 blocks): every weight has the wrong width."""
    shrink(monkeypatch, "deit", "deitb16", depth=2, img_size=32)
    path = save({"model": _with_head(RefViT(dim=384, depth=2, heads=6), 384)}, tmp_path / "deit_small.pth")
    with pytest.raises(CheckpointError, match=r"does not fit deit:deitb16 .*\[1, 1, 384\] in file vs \[1, 1, 768\]"):
        build_encoder("deit:deitb16", weights=path)
