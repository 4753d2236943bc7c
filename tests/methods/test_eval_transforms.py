"""Each released classifier's eval transform equals its authors' (size, crop_pct, interpolation, mean/std), and the
transform vitbench builds from it gives the same pixels as the authors' own torchvision pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from methods import get_adapter, list_methods
from methods.base import DataConfig

IN_MEAN, IN_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_DEIT = "facebookresearch/deit datasets.py build_transform: Resize(int(224 / 0.875), interpolation=3), CenterCrop"
_MAE = "facebookresearch/mae util/datasets.py build_transform: crop_pct 224/256, Resize(256, BICUBIC), CenterCrop"
_MFM = "Jiahao000/MFM data/data_finetune.py: TEST.CROP, Resize(int(256/224*224), bicubic), CenterCrop(224)"
_GC = "NVlabs/GCVit models/gc_vit.py default_cfgs @ 8e1941f (bicubic, IMAGENET_DEFAULT, 224, per-model crop_pct)"
_SP = "SP-ViT tlt/models/spvit.py default_cfgs @ c189568 (bicubic, crop .9 S / 1.0 M, L), 384 = --img-size 384"

# (method, variant) -> (input size, crop_pct, interpolation, source). Every variant with a released head is here.
AUTHORS: dict[tuple[str, str], tuple[int, float, str, str]] = {
    ("deit", "deits16"): (224, 0.875, "bicubic", _DEIT),
    ("deit", "deitb16"): (224, 0.875, "bicubic", _DEIT),
    ("mae", "vitb16-ft"): (224, 0.875, "bicubic", _MAE),
    ("mae", "vitl16-ft"): (224, 0.875, "bicubic", _MAE),
    ("mae", "vith14-ft"): (224, 0.875, "bicubic", _MAE),
    ("mfm", "vitb16-ft"): (224, 0.875, "bicubic", _MFM),
    ("semmae", "vitb16-ft"): (224, 0.875, "bicubic", _MAE + " (SemMAE ships no util/: MAE's)"),
    ("gcvit", "xxtiny"): (224, 1.0, "bicubic", _GC),
    ("gcvit", "xtiny"): (224, 0.875, "bicubic", _GC),
    ("gcvit", "tiny"): (224, 1.0, "bicubic", _GC),
    ("gcvit", "tiny2"): (224, 0.875, "bicubic", _GC),
    ("gcvit", "small"): (224, 0.875, "bicubic", _GC),
    ("gcvit", "small2"): (224, 0.875, "bicubic", _GC),
    ("gcvit", "base"): (224, 1.0, "bicubic", _GC),
    ("gcvit", "large"): (224, 1.0, "bicubic", _GC),
    ("spvit", "s"): (224, 0.9, "bicubic", _SP),
    ("spvit", "s384"): (384, 0.9, "bicubic", _SP),
    ("spvit", "m"): (224, 1.0, "bicubic", _SP),
    ("spvit", "m384"): (384, 1.0, "bicubic", _SP),
    ("spvit", "l"): (224, 1.0, "bicubic", _SP),
    ("spvit", "l384"): (384, 1.0, "bicubic", _SP),
    ("spvit", "l-public"): (224, 1.0, "bicubic", _SP),
}


def _data_config(method: str, variant: str) -> DataConfig:
    adapter = get_adapter(method)
    v = adapter.variant(variant)
    with torch.device("meta"):  # the size comes from the built model (patch_embed.img_size); no weights needed
        model = adapter.create_model(v)
    return adapter.make_data_config(model, v)


def test_every_released_classifier_has_cited_authors_values() -> None:
    with_head = {(m, v.name) for m in list_methods() for v in get_adapter(m).variants if v.classifier is not None}
    assert with_head == set(AUTHORS), f"cite the authors' eval transform of {sorted(with_head ^ set(AUTHORS))}"


@pytest.mark.parametrize(("method", "variant"), sorted(AUTHORS), ids=[f"{m}:{v}" for m, v in sorted(AUTHORS)])
def test_eval_transform_equals_the_authors(method: str, variant: str) -> None:
    size, crop_pct, interpolation, _source = AUTHORS[(method, variant)]
    dc = _data_config(method, variant)
    assert dc.input_size == (3, size, size)
    assert dc.crop_pct == crop_pct
    assert dc.interpolation == interpolation
    assert dc.mean == IN_MEAN and dc.std == IN_STD


def _authors_pipeline(size: int, crop_pct: float) -> T.Compose:
    """The authors' eval transform as their scripts write it with torchvision (timm 0.4's create_transform for GC
    ViT / SP-ViT computes the same ``floor(size / crop_pct)`` resize)."""
    return T.Compose(
        [
            T.Resize(int(math.floor(size / crop_pct)), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(IN_MEAN, IN_STD),
        ]
    )


@pytest.mark.parametrize(
    ("method", "variant"), [("deit", "deits16"), ("gcvit", "xxtiny"), ("spvit", "s"), ("spvit", "s384")]
)
def test_vitbench_transform_gives_the_authors_pixels(method: str, variant: str) -> None:
    """DeiT / MAE (256 -> 224), GC ViT crop 1.0 (224 -> 224), SP-ViT-S crop 0.9 (248 -> 224) and at 384 (426 -> 384):
    the encoder's transform (timm's create_transform from its data config) equals the authors' pipeline exactly."""
    from benchmarks.probe.data import EvalTransform

    size, crop_pct, _, _ = AUTHORS[(method, variant)]
    dc = _data_config(method, variant)
    ours = EvalTransform(dc.input_size[-1], dc.crop_pct, dc.interpolation, dc.mean, dc.std).image()
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 410, 3), dtype=np.uint8))  # non-square: the short side matters
    want = _authors_pipeline(size, crop_pct)(img)
    got = ours(img)
    assert got.shape == want.shape == (3, size, size)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
