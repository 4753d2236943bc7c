"""1, 2 and 8 on the paths that load weights or compute numbers outside ``MethodAdapter.load_weights`` and
:func:`benchmarks.features.extract`: released classifier heads, DualCoOp's image-text towers (open_clip), the dense
backbone rebuilt from its config, logits and features computed on the fly (classifier top-5, the backdoor victim's
features, linear-dino), and the pins of variants derived from others."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import timm
import torch

from benchmarks.features import require_finite
from methods import CheckpointError, build_encoder, get_adapter, list_methods
from methods.base import Variant, with_variant
from methods.errors import DataError
from tests.methods._official import shrink

TINY_DEIT = {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}
TINY_DINO = {"embed_dim": 64, "depth": 2, "num_heads": 4, "img_size": 32}


def _deit_release(path: Path, spoil: str | None = None) -> Path:
    """DeiT's release layout of a tiny DeiT with its 1000-class head; ``spoil`` the head: "nan" or "int"."""
    torch.manual_seed(0)
    sd = timm.create_model("deit_small_patch16_224", num_classes=1000, **TINY_DEIT).state_dict()
    if spoil == "nan":
        sd["head.weight"][7, 3] = float("nan")
    elif spoil == "int":
        sd["head.bias"] = torch.zeros(1000, dtype=torch.int64)
    torch.save({"model": sd}, path)
    return path


# ------------------------------------------------------------------------------------------------ 1 + 2: heads
@pytest.mark.parametrize(
    ("spoil", "fragment"),
    [("nan", r"NaN or inf \(first: head\.weight, 1 NaN"), ("int", "head.bias is int64 in the file but float32")],
)
def test_a_released_head_is_checked_like_the_backbone(
    spoil: str, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shrink(monkeypatch, "deit", "deits16", **TINY_DEIT)
    path = _deit_release(tmp_path / "deit.pth", spoil)
    with pytest.raises(CheckpointError, match=fragment) as err:
        build_encoder("deit:deits16", weights=path, classifier=True)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    build_encoder("deit:deits16", weights=path)  # as a backbone the head is dropped, never used: it loads


# ------------------------------------------------------------------------------------------------ 1: image-text
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8, "patch_size": None},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.mark.clip
def test_the_image_text_towers_refuse_a_nan_text_tower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The visual load drops the text tower; DualCoOp's towers load it from the same file through ``load_strict``."""
    pytest.importorskip("open_clip", reason="the clip extra (open_clip) is not installed")
    from methods.open_clip_towers import OpenClipResNet

    monkeypatch.setattr(type(get_adapter("dualcoop")), "clip_configs", {"rn50": TINY_CLIP, "rn101": TINY_CLIP})
    torch.manual_seed(0)
    sd = OpenClipResNet("tiny", TINY_CLIP).clip.state_dict()
    sd["ln_final.weight"][0] = float("inf")
    path = tmp_path / "clip.pth"
    torch.save(sd, path)
    adapter = get_adapter("dualcoop")
    v = adapter.variant("rn50")
    # The image tower built from the tiny CLIP's visual weights: timm's resnet50_clip at the tiny config's sizes.
    with pytest.raises(CheckpointError, match=r"NaN or inf \(first: ln_final\.weight, 0 NaN and 1 inf") as err:
        adapter.create_image_text(v, path, seed=0)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------------------------ 2: dense rebuild
def test_the_dense_backbone_rebuilds_with_the_resample_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A detector worker rebuilds the encoder from the config's reference: the option travels with it (else the
    rebuild is refused, as the first load was without it)."""
    from benchmarks.dense.backbone import EncoderBackbone, encoder_ref

    shrink(monkeypatch, "dino", "vits16", **TINY_DINO)
    sd = {k.removeprefix("model."): t for k, t in build_encoder("dino:vits16", weights="random").state_dict().items()}
    sd["pos_embed"] = torch.randn(1, 1 + 3 * 3, 64)  # 3x3 into the 2x2 model
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    enc = build_encoder("dino:vits16", weights=path, resample_pos_embed=True)
    ref = {k: v for k, v in encoder_ref(enc).items() if k != "key"}  # no live encoder: rebuilt from the file
    assert ref["resample_pos_embed"] is True
    rebuilt = EncoderBackbone(ref).encoder
    assert rebuilt.identity.load_report is not None and rebuilt.identity.load_report.resample_pos_embed
    torch.testing.assert_close(rebuilt.model.pos_embed, enc.model.pos_embed)
    with pytest.raises(CheckpointError, match="--resample-pos-embed"):
        EncoderBackbone({**ref, "resample_pos_embed": False})


# ------------------------------------------------------------------------------------------------ 1: on the fly
def _nan_encoder(monkeypatch: pytest.MonkeyPatch, method: str, variant: str, **kw: object):  # type: ignore[no-untyped-def]
    """A tiny encoder whose weights turned NaN after loading (what fp16 overflow or a diverged run gives)."""
    shrink(monkeypatch, method, variant, **kw)
    enc = build_encoder(f"{method}:{variant}", weights="random", **({"classifier": True} if method == "deit" else {}))
    with torch.no_grad():
        enc.model.norm.weight.fill_(float("nan"))
    return enc


def test_nan_logits_of_a_released_classifier_are_refused_naming_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``topk`` ranks NaN logits like numbers (a chance-level top-1); the top-5 rows become NaN and the cache's
    check refuses the batch."""
    from benchmarks.classification.supervised import predict_top5
    from benchmarks.data import imagenet as layouts
    from benchmarks.synth import synth

    data = synth("imagenet", tmp_path / "imagenet", seed=0)
    split, _ = layouts.scan_imagenet_val(data)
    enc = _nan_encoder(monkeypatch, "deit", "deits16", **TINY_DEIT)
    with pytest.raises(DataError, match=r"non-finite features \(top5: .*for images 0-") as err:
        predict_top5(enc, split, resolution=64, cache_dir=tmp_path / "cache")
    assert "nothing was cached" in str(err.value)
    assert not list((tmp_path / "cache").rglob("meta.json"))


def test_nan_backdoor_victim_features_are_refused_naming_the_images(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.backdoor.images import Normalizer, embed

    enc = _nan_encoder(monkeypatch, "dino", "vits16", **TINY_DINO)
    images = torch.randint(0, 255, (5, 3, 32, 32), dtype=torch.uint8)
    norm = Normalizer(enc.data_config.mean, enc.data_config.std)
    with pytest.raises(DataError, match=r"the features of images 0-1 \(batch 0\)"):
        embed(enc, images, norm, "cpu", batch_size=2)


def test_nan_linear_dino_features_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.classification.linear_dino import dino_features

    enc = _nan_encoder(monkeypatch, "dino", "vits16", **TINY_DINO)
    with pytest.raises(DataError, match=r"dino:vits16's features of a batch of 3 images \(linear-dino\)"):
        dino_features(enc, torch.randn(3, 3, 32, 32), n_last=2, avgpool=False)


def test_require_finite() -> None:
    x = torch.ones(4, 3)
    assert require_finite(x, "x") is x
    x[1, 2] = float("inf")
    x[0, 0] = float("nan")
    with pytest.raises(DataError, match=r"non-finite values \(2 NaN/inf of 12\) in the loss at step 3"):
        require_finite(x, "the loss at step 3")


# ------------------------------------------------------------------------------------------------ 8: derived pins
def test_a_variant_derived_for_another_file_does_not_inherit_its_pins() -> None:
    base = Variant(name="a", arch="x", weights_url="https://e.org/a.pth", sha256="0" * 64, digest_prefix="md5:abc")
    other = with_variant(base, name="b", weights_url="https://e.org/b.pth")
    assert other.sha256 is None and other.digest_prefix is None
    pinned = with_variant(base, name="c", weights_url="https://e.org/c.pth", digest_prefix="md5:def")
    assert pinned.digest_prefix == "md5:def" and pinned.sha256 is None
    same = with_variant(base, name="d", model_kwargs={"global_pool": "avg"})  # the same file, read differently
    assert (same.sha256, same.digest_prefix) == (base.sha256, base.digest_prefix)


def _pins() -> list[tuple[str, Variant]]:
    return [(m, v) for m in list_methods() for v in get_adapter(m).variants if v.sha256 or v.digest_prefix]


@pytest.mark.parametrize(("method", "variant"), _pins(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_every_pin_is_the_one_its_variant_names(method: str, variant: Variant) -> None:
    """A pin is copied from where the authors publish it, which each variant says (its notes, or the URL that embeds
    the hash): an inherited pin of another file (MAE's fine-tuned files once carried the pretrained md5) says
    something else, and would refuse the authors' own download."""
    if variant.sha256:
        assert re.fullmatch(r"[0-9a-f]{64}", variant.sha256)
        assert variant.sha256 in (variant.weights_url or "") + variant.notes, f"{method}:{variant.name}"
    if variant.digest_prefix:
        algo, _, hexpart = variant.digest_prefix.partition(":")
        assert algo in ("sha256", "md5") and re.fullmatch(r"[0-9a-f]{6,64}", hexpart)
        said = (variant.weights_url or "") + (variant.file_name or "") + variant.notes
        assert hexpart in said, f"{method}:{variant.name}: pinned {variant.digest_prefix}, but says {said!r}"


def test_the_fine_tuned_mae_files_carry_their_own_md5() -> None:
    mae = get_adapter("mae")
    got = {v.name: v.digest_prefix for v in mae.variants if v.name.endswith("-ft")}
    assert got == {"vitb16-ft": "md5:1b25e9", "vitl16-ft": "md5:51f550", "vith14-ft": "md5:2541f2"}
    assert get_adapter("semmae").variant("vitb16-ft").digest_prefix is None  # no md5 published for that file
    assert dataclasses.replace(mae.variant("vitb16"), name="x").digest_prefix == "md5:8cad7c"
