"""Round trips through checkpoints saved exactly as DINO's and SelfPatch's training code saves them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import timm
import torch

from methods import CheckpointError, build_encoder
from tests.methods._official import assert_declared_layout

X = torch.randn(2, 3, 64, 64)


def _dino_reference(arch: str = "vit_small_patch16_224") -> torch.nn.Module:
    """DINO's ViT has timm's names one-to-one (hubconf loads backbone files with strict=True)."""
    torch.manual_seed(1)
    return timm.create_model(arch, num_classes=0, dynamic_img_size=True).eval()


def _dino_head(prefix: str, dim: int = 384) -> dict[str, torch.Tensor]:
    """DINOHead: 3-layer MLP + weight-normed last layer, as main_dino.py wraps it."""
    return {
        f"{prefix}mlp.0.weight": torch.randn(64, dim),
        f"{prefix}mlp.0.bias": torch.randn(64),
        f"{prefix}mlp.2.weight": torch.randn(64, 64),
        f"{prefix}mlp.2.bias": torch.randn(64),
        f"{prefix}mlp.4.weight": torch.randn(16, 64),
        f"{prefix}mlp.4.bias": torch.randn(16),
        f"{prefix}last_layer.weight_g": torch.ones(128, 1),
        f"{prefix}last_layer.weight_v": torch.randn(128, 16),
    }


def _dense(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return model.forward_intermediates(x, indices=[3, 5, 7, 11], output_fmt="NCHW", intermediates_only=True)


def test_dino_backbone_only_file(tmp_path: Path) -> None:
    ref = _dino_reference()
    path = tmp_path / "dino_deitsmall16_pretrain.pth"
    torch.save(ref.state_dict(), path)
    enc = build_encoder("dino", "vits16", weights=path)
    for a, b in zip(enc.forward_dense(X), _dense(ref, X), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    torch.testing.assert_close(enc.forward_global(X), ref(X), atol=1e-4, rtol=0)
    rep = enc.identity.load_report
    assert rep.checkpoint_key is None and rep.dropped == [] and rep.matched == len(ref.state_dict())
    assert len(enc.identity.weights_sha256) == 64


def _dino_full_checkpoint(ref: torch.nn.Module) -> dict:
    """main_dino.py's save_dict (without --use_fp16's fp16_scaler)."""
    teacher = {f"backbone.{k}": v for k, v in ref.state_dict().items()} | _dino_head("head.")
    student = {f"module.{k}": v + 1 for k, v in teacher.items()}  # DDP-wrapped; must NOT be the one loaded
    args = argparse.Namespace(arch="vit_small", patch_size=16, out_dim=65536, output_dir=Path("/ckpt"), lr=5e-4)
    return {
        "student": student,
        "teacher": teacher,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
        "epoch": 800,
        "args": args,
        "dino_loss": {"center": torch.zeros(1, 65536)},
    }


def test_dino_full_checkpoint_with_namespace(tmp_path: Path) -> None:
    ref = _dino_reference()
    ckpt = _dino_full_checkpoint(ref)
    path = tmp_path / "dino_deitsmall16_full_checkpoint.pth"
    torch.save(ckpt, path)
    enc = build_encoder("dino:vits16", weights=path)
    for a, b in zip(enc.forward_dense(X), _dense(ref, X), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "teacher"
    assert rep.stripped_prefixes == ["backbone."]
    assert sorted(rep.dropped) == sorted(k.removeprefix("backbone.") for k in _dino_head("head."))


def test_declared_layouts_match_the_files_above() -> None:
    """dino:vits16 declares the backbone file and the full checkpoint these tests build by hand."""
    ref = _dino_reference()
    assert_declared_layout("dino", "vits16", "backbone", dict(ref.state_dict()))
    assert_declared_layout("dino", "vits16", "training", _dino_full_checkpoint(ref))
    assert_declared_layout("selfpatch", "vits16", "training", _selfpatch_checkpoint()[2])


def test_dino_first_release_without_prefixes(tmp_path: Path) -> None:
    """dino issue #65: the first full checkpoints stored the teacher without the backbone. prefix."""
    ref = _dino_reference()
    path = tmp_path / "full.pth"
    torch.save({"teacher": dict(ref.state_dict()), "epoch": 1}, path)
    enc = build_encoder("dino:vits16", weights=path)
    torch.testing.assert_close(enc.forward_global(X), ref(X), atol=1e-4, rtol=0)
    assert enc.identity.load_report.stripped_prefixes == []


def test_wrong_architecture_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "vitb.pth"
    torch.save(_dino_reference("vit_base_patch16_224").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"vitb\.pth: checkpoint does not fit .*(cls_token|pos_embed)"):
        build_encoder("dino:vits16", weights=path)


def test_unexpected_and_missing_keys_are_named(tmp_path: Path) -> None:
    sd = dict(_dino_reference().state_dict())
    sd["blocks.0.attn.extra_bias"] = torch.zeros(3)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys .*blocks\.0\.attn\.extra_bias"):
        build_encoder("dino:vits16", weights=tmp_path / "extra.pth")
    sd.pop("blocks.0.attn.extra_bias")
    sd.pop("norm.weight")
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"keys missing .*norm\.weight"):
        build_encoder("dino:vits16", weights=tmp_path / "missing.pth")


def test_not_a_vit_at_all(tmp_path: Path) -> None:
    torch.save({"model": {"conv.weight": torch.zeros(3, 3)}}, tmp_path / "cnn.pth")
    with pytest.raises(CheckpointError, match="no state dict found|do not look like"):
        build_encoder("dino:vits16", weights=tmp_path / "cnn.pth")


def test_dino_rn50_torchvision_layout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = timm.create_model("resnet50", num_classes=0).eval()
    torch.save(ref.state_dict(), tmp_path / "dino_resnet50_pretrain.pth")
    enc = build_encoder("dino:rn50", weights=tmp_path / "dino_resnet50_pretrain.pth")
    torch.testing.assert_close(enc.forward_global(X), ref(X), atol=1e-4, rtol=0)
    assert enc.spec.reductions == (4, 8, 16, 32)


# ------------------------------------------------------------------------------------------------ SelfPatch
def _selfpatch_ca_reference(tokens: torch.Tensor, sd: dict[str, torch.Tensor], heads: int = 6) -> torch.Tensor:
    """SelfPatchHead.forward(loc=False) written out with plain tensor ops from the released parameter names."""
    f = torch.nn.functional
    cls = sd["cls_token"].expand(tokens.shape[0], -1, -1)
    for i in range(2):
        p = f"cls_blocks.{i}."
        u = torch.cat([cls, tokens], 1)
        u = f.layer_norm(u, (u.shape[-1],), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        b, n, c = u.shape
        q = f.linear(u[:, 0], sd[p + "attn.q.weight"], sd[p + "attn.q.bias"]).reshape(b, 1, heads, c // heads)
        k = f.linear(u, sd[p + "attn.k.weight"], sd[p + "attn.k.bias"]).reshape(b, n, heads, c // heads)
        v = f.linear(u, sd[p + "attn.v.weight"], sd[p + "attn.v.bias"]).reshape(b, n, heads, c // heads)
        attn = torch.einsum("bqhd,bkhd->bhqk", q * (c // heads) ** -0.5, k).softmax(-1)
        out = torch.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, 1, c)
        cls = cls + f.linear(out, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = f.layer_norm(cls, (c,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        h = f.linear(
            f.gelu(f.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
            sd[p + "mlp.fc2.weight"],
            sd[p + "mlp.fc2.bias"],
        )
        cls = cls + h
    cls = f.layer_norm(cls, (cls.shape[-1],), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return cls[:, 0]


def _selfpatch_checkpoint() -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict]:
    torch.manual_seed(2)
    backbone = timm.create_model(
        "vit_small_patch16_224",
        class_token=False,
        global_pool="avg",
        fc_norm=False,
        final_norm=False,
        num_classes=0,
        dynamic_img_size=True,
    ).eval()
    assert backbone.pos_embed.shape == (1, 196, 384)  # the released layout: patch tokens only
    ca = {
        "cls_token": torch.randn(1, 1, 384) * 0.02,
        "norm.weight": torch.rand(384) + 0.5,
        "norm.bias": torch.randn(384) * 0.1,
    }
    for i in range(2):
        p = f"cls_blocks.{i}."
        for name in ("attn.q", "attn.k", "attn.v", "attn.proj"):
            ca[p + name + ".weight"] = torch.randn(384, 384) * 0.05
            ca[p + name + ".bias"] = torch.randn(384) * 0.05
        ca |= {
            p + "norm1.weight": torch.rand(384) + 0.5,
            p + "norm1.bias": torch.randn(384) * 0.1,
            p + "norm2.weight": torch.rand(384) + 0.5,
            p + "norm2.bias": torch.randn(384) * 0.1,
            p + "mlp.fc1.weight": torch.randn(1536, 384) * 0.05,
            p + "mlp.fc1.bias": torch.zeros(1536),
            p + "mlp.fc2.weight": torch.randn(384, 1536) * 0.05,
            p + "mlp.fc2.bias": torch.zeros(384),
        }
    teacher = (
        {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
        | {f"ca_head.{k}": v for k, v in ca.items()}
        | _dino_head("c_head.")
        | _dino_head("p_head.")
    )
    ckpt = {
        "student": {f"module.{k}": v for k, v in teacher.items()},
        "teacher": teacher,
        "epoch": 200,
        "optimizer": {},
        "args": argparse.Namespace(arch="vit_small", k_num=4, out_dim=65536),
        "dino_loss": {"center": torch.zeros(1, 65536)},
        "fp16_scaler": {"scale": 65536.0},
    }
    return backbone, ca, ckpt


def test_selfpatch_full_checkpoint(tmp_path: Path) -> None:
    backbone, ca, ckpt = _selfpatch_checkpoint()
    path = tmp_path / "dino_selfpatch.pth"
    torch.save(ckpt, path)
    enc = build_encoder("selfpatch", weights=path)
    assert enc.spec.num_prefix_tokens == 0 and enc.spec.global_pool == "ca_head" and enc.spec.probe_pool == "avg"
    for a, b in zip(enc.forward_dense(X), _dense(backbone, X), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    expected = _selfpatch_ca_reference(backbone.forward_features(X), ca)
    torch.testing.assert_close(enc.forward_global(X), expected, atol=1e-4, rtol=1e-4)
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "teacher"
    assert any("ca_head" in c for c in rep.converted)
    assert {k.split(".")[0] for k in rep.dropped} == {"c_head", "p_head"}


def test_selfpatch_rejects_a_dino_checkpoint(tmp_path: Path) -> None:
    """A DINO backbone has a CLS token, a final norm and 197 position embeddings: it is not SelfPatch."""
    torch.save(_dino_reference().state_dict(), tmp_path / "dino.pth")
    with pytest.raises(CheckpointError, match="cls_token|norm.weight"):
        build_encoder("selfpatch", weights=tmp_path / "dino.pth")
