"""Released classification heads: loaded through the strict allow-list, refused in one line when absent or of
another width, and what ``forward_logits`` computes (timm's own head; SP-ViT's token-label term)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from methods import build_encoder
from methods.errors import CheckpointError, VitbenchError
from tests.methods._official import shrink

TINY_DEIT = {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}


def _deit_file(path: Path, num_classes: int | None) -> tuple[Path, torch.nn.Module]:
    """DeiT's release layout ``{'model': ...}`` of a tiny timm DeiT, with a head of ``num_classes`` (None: none)."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", num_classes=num_classes or 0, **TINY_DEIT).eval()
    torch.save({"model": model.state_dict()}, path)
    return path, model


def test_released_head_gives_timm_logits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "deit", "deits16", **TINY_DEIT)
    path, model = _deit_file(tmp_path / "deit.pth", 1000)
    enc = build_encoder("deit:deits16", weights=path, classifier=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(enc.forward_logits(x), model(x), atol=1e-5, rtol=0)
    assert "head.weight" not in enc.identity.load_report.dropped
    plain = build_encoder("deit:deits16", weights=path)  # the same file for a backbone task: head dropped
    assert plain.identity.load_report.dropped == ["head.bias", "head.weight"]
    with pytest.raises(VitbenchError, match="built without its classifier"):
        plain.forward_logits(x)


def test_checkpoint_without_the_head_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "deit", "deits16", **TINY_DEIT)
    path, _ = _deit_file(tmp_path / "backbone.pth", None)
    with pytest.raises(
        CheckpointError, match=r"no classifier head in this checkpoint \(head.weight, head.bias absent\)"
    ):
        build_encoder("deit:deits16", weights=path, classifier=True)
    build_encoder("deit:deits16", weights=path)  # fine as a backbone


def test_head_of_the_wrong_width_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "deit", "deits16", **TINY_DEIT)
    path, _ = _deit_file(tmp_path / "in100.pth", 100)
    with pytest.raises(
        CheckpointError, match=r"head.weight has 100 classes, but deit:deits16's released head has 1000"
    ):
        build_encoder("deit:deits16", weights=path, classifier=True)


def test_backbone_only_variant_names_the_ones_with_a_head() -> None:
    with pytest.raises(CheckpointError, match=r"mae:vitb16 has no released classification head.*vitb16-ft"):
        build_encoder("mae:vitb16", weights="random", classifier=True)


def test_spvit_logits_add_half_the_max_token_label_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """SP-ViT's inference (TokenLabeling): ``head(cls) + 0.5 * max_n aux_head(patch_n)``, from the encoder's own
    features, so a harness scoring ``forward_logits`` scores what the authors' validate does."""
    shrink(monkeypatch, "spvit", "s", depth=3, local_up_to_layer=2)
    enc = build_encoder("spvit:s", weights="random", classifier=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = enc.model.forward_features(x)  # [B, 1 + N, D] after the final norm
        want = enc.model.head(tokens[:, 0]) + 0.5 * enc.model.aux_head(tokens[:, 1:]).max(dim=1).values
        torch.testing.assert_close(enc.forward_logits(x), want, atol=1e-5, rtol=0)
        torch.testing.assert_close(enc.forward_global(x), tokens[:, 0], atol=1e-5, rtol=0)
