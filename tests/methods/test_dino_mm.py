"""DINO-MM: a DINO full checkpoint of a 14-band ViT-S/8 whose position table is sized for 224 px, run at 112 px.

The reference interpolates its 28x28 table on the fly at 112 px exactly as DINO's ``interpolate_pos_encoding`` does;
the adapter does the same once at load, so features at the native 112 px must match to 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from methods import CheckpointError, build_encoder
from methods.dino_mm import BANDS
from tests.methods._official import (
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


def _reference() -> RefViT:
    """ViT-S/8 width and heads with 14 input bands and the default 224 px table (2 blocks to stay fast)."""
    return RefViT(dim=384, depth=2, heads=6, patch=8, img=224, in_chans=14, seed=1)


def _full_checkpoint(teacher: RefViT) -> dict:
    """main_dino_B14.py (DINO's save logic): teacher = MultiCropWrapper, student = DDP(MultiCropWrapper)."""
    student = RefViT(dim=384, depth=2, heads=6, patch=8, img=224, in_chans=14, seed=2)
    head = dino_head(384)
    return {
        "student": prefixed("module.backbone.", student.state_dict()) | prefixed("module.head.", head),
        "teacher": prefixed("backbone.", teacher.state_dict()) | prefixed("head.", head),
        "optimizer": optimizer_state(student, step=False),
        "epoch": 100,
        "args": namespace(arch="vit_small", patch_size=8, n_channels=14, out_dim=65536, lmdb=True),
        "dino_loss": {"center": torch.zeros(1, 48)},
    }


def test_b14_checkpoint_at_112_px(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "dino-mm", "vits8", depth=2)
    teacher = _reference()
    assert teacher.pos_embed.shape == (1, 785, 384)
    path = save(_full_checkpoint(teacher), tmp_path / "B14_vits8_dinomm_ep99.pth")
    enc = build_encoder("dino-mm", "vits8", weights=path)
    x = torch.rand(2, 14, 112, 112)  # bands scaled to uint8, then /255
    assert_parity(enc, teacher, x)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "teacher" and rep.stripped_prefixes == ["backbone."]
    assert rep.converted == [  # the released file's grid, which the variant declares (pos_embed_grids)
        "pos_embed grid 28x28 -> 14x14: a grid the method's files are released at",
        "pos_embed [1, 785, 384] -> [1, 197, 384] (DINO bicubic interpolation for 112 px, no antialias)",
    ]
    assert sorted(rep.dropped) == sorted(prefixed("head.", dino_head(384)))


def test_declared_layout_matches_the_file_above(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "dino-mm", "vits8", depth=2)
    assert_declared_layout("dino-mm", "vits8", "training", _full_checkpoint(_reference()))


def test_input_contract() -> None:
    from methods import get_adapter

    adapter = get_adapter("dino-mm")
    v = adapter.variant("vits8")
    with torch.device("meta"):
        model = adapter.create_model(v)
    dc = adapter.make_data_config(model, v)
    assert dc.input_size == (14, 112, 112) and dc.mean == (0.0,) * 14 and dc.std == (1.0,) * 14
    assert (
        dc.band_order == BANDS
        and BANDS[:12] == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
        and BANDS[12:] == ("VH", "VV")
    )
    assert dc.crop_pct == 112 / 128 and "/255" in dc.notes
    assert model.patch_embed.proj.weight.shape == (384, 14, 8, 8) and model.blocks[0].attn.num_heads == 6


def test_three_band_dino_file_names_the_patch_embedding(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An RGB DINO ViT-S/8 is the wrong variant: its patch embedding takes 3 bands, not 14."""
    shrink(monkeypatch, "dino-mm", "vits8", depth=2)
    sd = _reference().state_dict()
    sd["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"][:, :3]
    match = r"patch_embed\.proj\.weight \[384, 3, 8, 8\] in file vs \[384, 14, 8, 8\]"
    with pytest.raises(CheckpointError, match=match):
        build_encoder("dino-mm:vits8", weights=save(sd, tmp_path / "dino_deitsmall8_pretrain.pth"))
