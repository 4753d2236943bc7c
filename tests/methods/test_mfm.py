"""MFM: utils.py::save_checkpoint files (BEiT-style q/v biases, a pickled yacs config), ViT-B/16 and ResNet-50.

The reference ViT here computes attention with its own ``q_bias``/``v_bias`` and a zero key bias, so the parity check
proves the ``qkv.bias = cat(q_bias, 0, v_bias)`` conversion, not timm against itself.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import timm
import torch
from timm.scheduler import CosineLRScheduler
from torch import nn

from methods import CheckpointError, build_encoder
from methods.safe_pickle import ConfigNode
from methods.weights import read_checkpoint
from tests.methods._official import (
    TINY,
    RefViT,
    assert_declared_layout,
    assert_parity,
    optimizer_state,
    prefixed,
    save,
    shrink,
)


class CfgNode(dict):
    """What yacs's ``CfgNode`` pickles as: a dict subclass whose private flags live in the instance ``__dict__``."""

    def __init__(self, init: dict | None = None, new_allowed: bool = False) -> None:
        super().__init__({k: CfgNode(v) if isinstance(v, dict) else v for k, v in (init or {}).items()})
        self.__dict__["__immutable__"] = False
        self.__dict__["__deprecated_keys__"] = set()
        self.__dict__["__renamed_keys__"] = {}
        self.__dict__["__new_allowed__"] = new_allowed

    def freeze(self) -> CfgNode:
        self.__dict__["__immutable__"] = True
        for v in self.values():
            if isinstance(v, CfgNode):
                v.freeze()
        return self


CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"


@pytest.fixture
def yacs_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``yacs.config.CfgNode`` resolvable while saving (pickle looks the class up by name); yacs stays absent."""
    assert importlib.util.find_spec("yacs") is None, "these tests prove MFM files load without yacs installed"
    module = types.ModuleType("yacs.config")
    module.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, "yacs", types.ModuleType("yacs"))
    monkeypatch.setitem(sys.modules, "yacs.config", module)


def _config(model_type: str) -> CfgNode:
    """A frozen config shaped like MFM's config.py after merging configs/vit_base/mfm_pretrain__...yaml."""
    return CfgNode(
        {
            "MODEL": {
                "TYPE": model_type,
                "NAME": "pretrain",
                "DROP_PATH_RATE": 0.0,
                "RECOVER_TARGET_TYPE": "masked",
                "VIT": {
                    "PATCH_SIZE": 16,
                    "EMBED_DIM": 768,
                    "DEPTH": 12,
                    "NUM_HEADS": 12,
                    "QKV_BIAS": True,
                    "INIT_VALUES": None,
                    "USE_APE": True,
                    "USE_RPB": False,
                    "USE_MEAN_POOLING": False,
                    "DECODER": {"DEPTH": 0, "EMBED_DIM": 512},
                },
                "RESNET": {"LAYERS": [3, 4, 6, 3], "IN_CHANS": 3},
            },
            "DATA": {"IMG_SIZE": 224, "FILTER_TYPE": "mfm", "MASK_RADIUS1": 16, "MASK_RADIUS2": 999},
            "TRAIN": {"EPOCHS": 300, "BASE_LR": 3e-4, "OPTIMIZER": {"NAME": "adamw", "BETAS": (0.9, 0.95)}},
            "AMP_OPT_LEVEL": "O1",
            "OUTPUT": "output/mfm_pretrain__vit_base__img224__300ep",
            "TAG": "mfm",
        }
    ).freeze()


def _save_checkpoint(model: nn.Module, config: CfgNode, path: Path, step: bool = True) -> Path:
    """utils.py::save_checkpoint: model, optimizer, timm lr scheduler, max_accuracy, epoch, config, apex amp."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95))
    sched = CosineLRScheduler(
        opt, t_initial=300 * 1251, lr_min=2.5e-6, warmup_t=20 * 1251, warmup_lr_init=2.5e-7, t_in_epochs=False
    )
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer_state(model, step),
        "lr_scheduler": sched.state_dict(),
        "max_accuracy": 0.0,
        "epoch": 299,
        "config": config,
        "amp": OrderedDict(loss_scaler0={"loss_scale": 65536.0, "unskipped": 1251}),
    }
    return save(ckpt, path)


def _mfm(encoder: nn.Module, channels: int, stride: int) -> nn.Module:
    """models/mfm.py::MFM with decoder_depth 0: ``encoder`` + ``decoder`` = Sequential(1x1 conv, PixelShuffle)."""
    mfm = nn.Module()
    mfm.encoder = encoder
    mfm.decoder = nn.Sequential(nn.Conv2d(channels, stride**2 * 3, 1), nn.PixelShuffle(stride))
    return mfm


def test_vitb16_checkpoint_fuses_q_and_v_biases(
    yacs_names: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shrink(monkeypatch, "mfm", "vitb16", **TINY)
    encoder = RefViT(beit_bias=True, seed=1)
    assert encoder.blocks[0].attn.qkv.bias is None and encoder.blocks[0].attn.q_bias.abs().sum() > 0
    path = _save_checkpoint(_mfm(encoder, 64, 16), _config("vit"), tmp_path / "ckpt_epoch_299.pth")

    cfg = read_checkpoint(path)["config"]  # the pickled CfgNode came back through the allow-list
    assert isinstance(cfg, ConfigNode) and cfg.MODEL.VIT.INIT_VALUES is None
    assert cfg.TRAIN.OPTIMIZER.BETAS == (0.9, 0.95) and cfg.__dict__["__immutable__"] is True

    enc = build_encoder("mfm", "vitb16", weights=path)
    assert_parity(enc, encoder, torch.randn(2, 3, 32, 32), pool="avg")
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "model" and rep.stripped_prefixes == ["encoder."]
    assert rep.dropped == ["decoder.0.bias", "decoder.0.weight"]
    assert rep.converted == ["blocks.*.attn.q_bias/v_bias -> attn.qkv.bias = cat(q_bias, 0, v_bias) (4 blocks)"]
    assert enc.spec.global_pool == "avg"


def test_declared_layout_matches_the_file_above(
    yacs_names: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The declared layout writes q_bias/v_bias (MFM.to_official) under ``encoder.`` with the decoder beside them."""
    shrink(monkeypatch, "mfm", "vitb16", **TINY)
    path = _save_checkpoint(_mfm(RefViT(beit_bias=True), 64, 16), _config("vit"), tmp_path / "ckpt_epoch_299.pth")
    assert_declared_layout("mfm", "vitb16", "training", read_checkpoint(path))


def test_q_bias_without_v_bias_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "mfm", "vitb16", **TINY)
    sd = prefixed("encoder.", RefViT(beit_bias=True).state_dict())
    del sd["encoder.blocks.2.attn.v_bias"]
    with pytest.raises(CheckpointError, match=r"blocks\.2\.attn\.q_bias has no matching blocks\.2\.attn\.v_bias"):
        build_encoder("mfm:vitb16", weights=save({"model": sd}, tmp_path / "broken.pth"))


def _resnet_dense(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The four stage outputs (strides 4, 8, 16, 32) of a timm/torchvision-layout ResNet, stage by stage."""
    x = model.maxpool(model.act1(model.bn1(model.conv1(x))))
    outs = []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = stage(x)
        outs.append(x)
    return outs


def test_rn50_checkpoint(yacs_names: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ResNetForMFM is timm's ResNet(Bottleneck, [3, 4, 6, 3]) with num_classes=0: timm's names, no ``fc``.
    Tested with one bottleneck per stage (full widths) to keep the file small."""
    shrink(monkeypatch, "mfm", "rn50", layers=(1, 1, 1, 1))
    torch.manual_seed(5)
    encoder = timm.models.resnet.ResNet(block=timm.models.resnet.Bottleneck, layers=[1, 1, 1, 1], num_classes=0)
    for m in encoder.modules():  # non-trivial BatchNorm statistics, so eval-mode BN is part of the check
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    encoder.eval()
    path = _save_checkpoint(_mfm(encoder, 2048, 32), _config("resnet"), tmp_path / "ckpt_epoch_299.pth", step=False)
    enc = build_encoder("mfm", "rn50", weights=path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = _resnet_dense(encoder, x)
        for got, w in zip(enc.forward_dense(x), want, strict=True):
            torch.testing.assert_close(got, w, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(enc.forward_global(x), want[-1].mean(dim=(2, 3)), atol=1e-4, rtol=1e-4)
    assert enc.spec.reductions == (4, 8, 16, 32)
    assert enc.identity.load_report.dropped == ["decoder.0.bias", "decoder.0.weight"]


def test_rn50_file_into_the_vit_variant_names_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "mfm", "vitb16", **TINY)
    sd = {
        "encoder.conv1.weight": torch.zeros(64, 3, 7, 7),
        "encoder.bn1.weight": torch.ones(64),
        "encoder.layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1),
        "decoder.0.weight": torch.zeros(3072, 2048, 1, 1),
    }
    with pytest.raises(CheckpointError, match=r"do not look like mfm:vitb16 .*(conv1|bn1|layer1)"):
        build_encoder("mfm:vitb16", weights=save({"model": sd}, tmp_path / "rn50.pth"))
