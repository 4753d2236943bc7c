"""iBOT: the released backbone files (extract_backbone_weights.py) and main_ibot.py full checkpoints."""

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
    namespace,
    optimizer_state,
    prefixed,
    save,
    shrink,
)

X = torch.randn(2, 3, 32, 32)


def _ibot_head(dim: int) -> dict[str, torch.Tensor]:
    """iBOTHead = DINOHead plus a second weight-normed layer for the patch tokens (``last_layer2``)."""
    return dino_head(dim) | {"last_layer2.weight_g": torch.ones(40, 1), "last_layer2.weight_v": torch.randn(40, 16)}


def test_vits16_backbone_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """checkpoint_teacher.pth = extract_backbone_weights.py --checkpoint_key teacher: {'state_dict': backbone}.
    ViT-S width and heads (6), 2 blocks at 32 px."""
    shrink(monkeypatch, "ibot", "vits16", depth=2, img_size=32)
    teacher = RefViT(dim=384, depth=2, heads=6, seed=1)
    path = save({"state_dict": teacher.state_dict()}, tmp_path / "checkpoint_teacher.pth")
    enc = build_encoder("ibot", "vits16", weights=path)
    assert_parity(enc, teacher, X)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "state_dict" and rep.stripped_prefixes == [] and rep.dropped == []


def test_student_backbone_file_drops_masked_embed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The masked-image-modeling student (masked_im_modeling=True) carries the [MASK] embedding ``masked_embed``;
    extract_backbone_weights.py keeps it when it strips ``module.backbone.``."""
    shrink(monkeypatch, "ibot", "vitb16", **TINY)
    student = RefViT(seed=2)
    sd = student.state_dict() | {"masked_embed": torch.randn(1, 64)}
    enc = build_encoder("ibot:vitb16", weights=save({"state_dict": sd}, tmp_path / "checkpoint_student.pth"))
    assert_parity(enc, student, X)
    assert enc.identity.load_report.dropped == ["masked_embed"]


def _full_checkpoint(teacher: RefViT, student: RefViT, head: dict[str, torch.Tensor]) -> dict:
    """main_ibot.py's save_dict."""
    return {
        "student": prefixed("module.backbone.", student.state_dict() | {"masked_embed": torch.randn(1, 64)})
        | prefixed("module.head.", head),
        "teacher": prefixed("backbone.", teacher.state_dict()) | prefixed("head.", head),
        "optimizer": optimizer_state(student),
        "epoch": 400,
        "fp16_scaler": SCALER,
        "args": namespace(arch="vit_base", patch_size=16, out_dim=8192, patch_out_dim=8192, pred_ratio=0.3),
        "ibot_loss": {"center": torch.zeros(1, 48), "center2": torch.zeros(1, 1, 40)},
    }


def test_full_checkpoint_loads_the_teacher(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """main_ibot.py: teacher = MultiCropWrapper (backbone.*, head.*), student = DDP(MultiCropWrapper)."""
    shrink(monkeypatch, "ibot", "vitb16", **TINY)
    teacher, student = RefViT(seed=3), RefViT(seed=4)
    head = _ibot_head(64)
    ckpt = _full_checkpoint(teacher, student, head)
    enc = build_encoder("ibot:vitb16", weights=save(ckpt, tmp_path / "checkpoint.pth"))
    assert_parity(enc, teacher, X)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "teacher" and rep.stripped_prefixes == ["backbone."]
    assert sorted(rep.dropped) == sorted(prefixed("head.", head))


def test_declared_layouts_match_the_files_above(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "ibot", "vitb16", **TINY)
    teacher = RefViT(seed=3)
    assert_declared_layout("ibot", "vitb16", "backbone", {"state_dict": teacher.state_dict()})
    assert_declared_layout("ibot", "vitb16", "training", _full_checkpoint(teacher, RefViT(seed=4), _ibot_head(64)))


def test_a_moco_checkpoint_is_refused_naming_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "ibot", "vitb16", **TINY)
    sd = prefixed("module.base_encoder.", RefViT().state_dict())
    with pytest.raises(CheckpointError, match=r"do not look like ibot:vitb16 .*base_encoder\.(blocks|cls_token)"):
        build_encoder("ibot:vitb16", weights=save({"state_dict": sd}, tmp_path / "vit-b-300ep.pth.tar"))
