"""SDSSL: PyTorch-Lightning checkpoints of pl_train_*.py (no weights are released; the layout is read from the code).

``PLLearner`` holds ``student``/``teacher`` = ``byol_pytorch.NetWrapper(net=ViT, projector, predictor)``; with
``st_inter`` (the SD-* configs) the student has one projector/predictor MLP per layer (12, hard-coded).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from methods import CheckpointError, build_encoder
from tests.methods._official import (
    TINY,
    RefViT,
    assert_declared_layout,
    assert_parity,
    bn_mlp,
    optimizer_state,
    save,
    shrink,
)

X = torch.randn(2, 3, 32, 32)


class _MLP(nn.Module):
    """byol_pytorch.MLP: the layers live in ``self.net``."""

    def __init__(self, layers: int, dim: int, out: int, hidden: int) -> None:
        super().__init__()
        self.net = bn_mlp(layers, dim, hidden, out)


def _net_wrapper(vit: RefViT, prediction: bool, intermediate: bool) -> nn.Module:
    w = nn.Module()
    w.net = vit
    if intermediate:
        w.projector = nn.ModuleList(_MLP(3, 64, 16, 32 if i == 11 else 16) for i in range(12))
        if prediction:
            w.predictor = nn.ModuleList(_MLP(2, 16, 16, 32) for _ in range(12))
    else:
        w.projector = _MLP(3, 64, 16, 32)
        if prediction:
            w.predictor = _MLP(2, 16, 16, 32)
    return w


def _lightning_checkpoint(learner: nn.Module) -> dict:
    """What ``Trainer`` writes through its default ModelCheckpoint (Lightning >= 1.5: string callback keys)."""
    return {
        "epoch": 299,
        "global_step": 375300,
        "pytorch-lightning_version": "1.5.10",
        "state_dict": learner.state_dict(),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 300, "completed": 299}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
            "'train_time_interval': None, 'save_on_train_epoch_end': True}": {
                "monitor": None,
                "best_model_score": None,
                "best_model_path": "",
                "current_score": None,
                "dirpath": "log/SD_moco/version_0/checkpoints",
                "best_k_models": {},
                "kth_value": torch.tensor(float("inf")),
            }
        },
        "optimizer_states": [optimizer_state(learner.student)],
        "lr_schedulers": [],
    }


def test_sd_moco_loads_the_teacher_net(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pl_train_moco.py with SD_moco.json (st_inter=true): student = intermediate NetWrapper with a predictor."""
    shrink(monkeypatch, "sdssl", "vitb16", **TINY)
    student, teacher = RefViT(sincos=True, seed=1), RefViT(sincos=True, seed=2)
    learner = nn.Module()
    learner.student = _net_wrapper(student, prediction=True, intermediate=True)
    learner.teacher = _net_wrapper(teacher, prediction=False, intermediate=False)
    path = save(_lightning_checkpoint(learner), tmp_path / "epoch=299-step=375300.ckpt")
    enc = build_encoder("sdssl", "vitb16", weights=path)
    assert_parity(enc, teacher, X)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "state_dict" and rep.converted[0].startswith("teacher.net.* -> *")
    assert {".".join(k.split(".")[:2]) for k in rep.dropped} == {
        "student.net",
        "student.projector",
        "student.predictor",
        "teacher.projector",
    }


def test_sd_simclr_has_only_a_student(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pl_train_simclr.py builds no teacher: the student's ViT is the encoder."""
    shrink(monkeypatch, "sdssl", "vitb16", **TINY)
    student = RefViT(sincos=True, seed=3)
    learner = nn.Module()
    learner.student = _net_wrapper(student, prediction=False, intermediate=True)
    enc = build_encoder("sdssl:vitb16", weights=save(_lightning_checkpoint(learner), tmp_path / "last.ckpt"))
    assert_parity(enc, student, X)
    assert enc.identity.load_report.converted[0].startswith("student.net.* -> *")


def test_declared_layouts_match_the_files_above(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "sdssl", "vitb16", **TINY)
    moco, simclr = nn.Module(), nn.Module()
    moco.student = _net_wrapper(RefViT(sincos=True), prediction=True, intermediate=True)
    moco.teacher = _net_wrapper(RefViT(sincos=True), prediction=False, intermediate=False)
    simclr.student = _net_wrapper(RefViT(sincos=True), prediction=False, intermediate=True)
    assert_declared_layout("sdssl", "vitb16", "sd-moco", _lightning_checkpoint(moco))
    assert_declared_layout("sdssl", "vitb16", "sd-simclr", _lightning_checkpoint(simclr))


def test_unreleased_needs_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "sdssl", "vitb16", **TINY)
    with pytest.raises(CheckpointError, match=r"sdssl:vitb16 has no public weights to download"):
        build_encoder("sdssl:vitb16")


def test_a_bare_byol_wrapper_without_net_names_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A state dict with neither ``teacher.net.`` nor ``student.net.`` is not an SDSSL Lightning checkpoint."""
    shrink(monkeypatch, "sdssl", "vitb16", **TINY)
    sd = {f"online_encoder.{k}": v for k, v in RefViT().state_dict().items()}
    with pytest.raises(CheckpointError, match=r"do not look like sdssl:vitb16 .*online_encoder\."):
        build_encoder("sdssl:vitb16", weights=save({"state_dict": sd}, tmp_path / "byol.ckpt"))
