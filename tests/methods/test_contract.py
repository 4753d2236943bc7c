"""The encoder contract, run over every registered adapter and variant: adding a method adds its tests.

Three parametrised tests cover each variant: the :class:`Encoder` contract at the variant's real size, the round trip
through a synthetic checkpoint in each of its *declared* official layouts (``Variant.official_layouts``), and the
truth of its declared size (``Variant.params_m``). A variant that declares no layout gets a failing round-trip case, so
a new method cannot skip its parity test.

Collection builds nothing. Variants over :data:`SLOW_PARAMS_M` million parameters are marked ``slow`` from the count
each variant declares (``params_m``), not from a model built at import: building all 40 on the meta device took 10-50 s
of every collection. :func:`test_declared_size` keeps the declarations honest; it runs in the slow lane because it
builds every variant (on the meta device, ~0.3 s each).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from methods import build_encoder, get_adapter, list_methods
from methods.base import Encoder, MethodAdapter, Variant
from methods.errors import CheckpointError, VitbenchError
from methods.weights import strip_prefixes
from tests.methods._official import official_file, shrink

SLOW_PARAMS_M = 200.0


def _variants() -> list[tuple[str, Variant]]:
    """Every registered (method, variant); reads the adapters' class data only (no model is built)."""
    return [(name, v) for name in list_methods() for v in get_adapter(name).variants]


def _marks(v: Variant) -> list[pytest.MarkDecorator]:
    return [pytest.mark.slow] if (v.params_m or 0.0) > SLOW_PARAMS_M else []


def _layout_cases(variants: list[tuple[str, Variant]]) -> list:
    """One case per declared layout of each variant; ``layout=None`` for a variant that declares none (it fails)."""
    cases = []
    for name, v in variants:
        for layout in v.official_layouts or (None,):
            tag = layout.name if layout is not None else "undeclared"
            cases.append(
                pytest.param(name, v.name, layout and layout.name, id=f"{name}:{v.name}[{tag}]", marks=_marks(v))
            )
    return cases


CASES = [pytest.param(name, v.name, id=f"{name}:{v.name}", marks=_marks(v)) for name, v in _variants()]


def _contract_cases() -> list:
    """:data:`CASES` with ``real``: True for the first variant of each (method, timm arch), which runs at its real
    size; a later variant of the same architecture (a fine-tuned or 384-px release, PACMAC's DINO run) differs only
    in arguments a reduced-depth build exercises as well, so it runs the contract at the round trip's size."""
    seen: set[tuple[str, str]] = set()
    cases = []
    for name, v in _variants():
        real = (name, v.arch) not in seen or v.arch.startswith("gcvit_")  # GC ViT's windows fix its input size
        seen.add((name, v.arch))
        cases.append(pytest.param(name, v.name, real, id=f"{name}:{v.name}", marks=_marks(v) if real else []))
    return cases


CONTRACT_CASES = _contract_cases()


def _classifier_cases() -> list:
    """Per method and head layout (``Classifier.keys``), its smallest variant with a released head: the head's
    names and conversion are the adapter's, not the size's, and GC ViT-L alone would take 40 s."""
    smallest: dict[tuple[str, tuple[str, ...]], Variant] = {}
    for name, v in _variants():
        if v.classifier is not None:
            key = (name, v.classifier.keys)
            if key not in smallest or (v.params_m or 0.0) < (smallest[key].params_m or 0.0):
                smallest[key] = v
    return [pytest.param(name, v.name, id=f"{name}:{v.name}", marks=_marks(v)) for (name, _), v in smallest.items()]


CLASSIFIER_CASES = _classifier_cases()
LAYOUT_CASES = _layout_cases(_variants())


def _input(enc: Encoder) -> torch.Tensor:
    c, h, w = enc.data_config.input_size
    if enc.spec.family == "vit":  # plain ViTs take any multiple of the patch size: keep it small
        h = w = 4 * enc.spec.size_divisor
    return torch.randn(2, enc.spec.in_chans, h, w)


@pytest.mark.parametrize(("method", "variant", "real"), CONTRACT_CASES)
def test_encoder_contract(method: str, variant: str, real: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not real:
        shrink(monkeypatch, method, variant, **_round_trip_size(get_adapter(method).variant(variant).arch))
    enc = get_adapter(method).build(variant, weights="random", seed=0)
    spec = enc.spec
    x = _input(enc)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    assert len(spec.indices) == len(spec.channels) == len(spec.reductions) > 0
    assert spec.family in ("vit", "hierarchical", "cnn")
    assert spec.in_chans == enc.data_config.input_size[0]
    dc = enc.data_config  # a band order names every input channel; a band scaling covers every band of it
    assert len(dc.mean) == len(dc.std) == spec.in_chans
    assert (dc.band_order is None and spec.in_chans == 3) or len(dc.band_order or ()) == spec.in_chans
    if dc.band_scaling is not None:
        assert dc.band_order is not None and len(dc.band_scaling.mean) == len(dc.band_order)
        assert set(dc.band_scaling.clip_bands) <= set(dc.band_order)

    g = enc.forward_global(x)
    assert g.shape == (2, spec.embed_dim)
    assert torch.isfinite(g).all()

    dense = enc.forward_dense(x)
    assert len(dense) == len(spec.indices)
    for fmap, ch, r in zip(dense, spec.channels, spec.reductions, strict=True):
        assert fmap.shape[:2] == (2, ch)
        assert fmap.shape[2:] == (x.shape[2] // r, x.shape[3] // r), f"stride {r} for input {tuple(x.shape[2:])}"

    blocks = [0, spec.num_blocks - 1] if spec.family == "vit" else [spec.num_blocks - 1]
    tok, avg = enc.forward_probe(x, blocks)
    assert tok.shape == avg.shape == (2, len(blocks), spec.block_dim)
    assert enc.probe_widths(blocks) == [spec.block_dim] * len(blocks)
    assert enc.forward_tokens(x, 1).shape == (2, 1, spec.block_dim)
    if spec.family != "vit" and len(set(enc.probe_widths(list(range(spec.num_blocks))))) > 1:
        with pytest.raises(ValueError, match="differ in width"):
            enc.forward_probe(x, list(range(spec.num_blocks)))

    # The optional image-text towers (CLIP): declared by the adapter, known without building them, built on first
    # use (tests/methods/test_image_text.py, the clip extra); an encoder without them says so in one line.
    adapter = get_adapter(method)
    assert enc.has_image_text == adapter.has_image_text(adapter.variant(variant))
    if not enc.has_image_text:
        with pytest.raises(VitbenchError, match=f"{method}:{variant} has no text tower"):
            enc.image_text()


@pytest.mark.parametrize(("method", "variant"), CASES)
def test_adapter_metadata(method: str, variant: str) -> None:
    adapter = get_adapter(method)
    v = adapter.variant(variant)
    assert adapter.paper.title and adapter.paper.code_url is not None or not v.released
    assert v.license, f"{method}:{variant} must state its weights' license"
    if v.weights_url:
        assert v.weights_url.startswith(("https://", "hf-hub:"))
    if v.sha256 is not None:
        assert len(v.sha256) == 64


# ------------------------------------------------------------------------------------------------ dense sizes
def _dense_size(arch: str) -> dict[str, Any]:
    """Cheap model arguments for the detection-size test: narrow and shallow, with what depends on the input size
    untouched (patch size; GC ViT's pretrained windows 7/7/14/7 at img_size 224, two blocks per stage so that both
    the local and the global-query block run)."""
    if arch.startswith("gcvit_"):
        return {"depths": (2, 2, 2, 2), "embed_dim": 32, "num_heads": (1, 2, 4, 8)}
    if arch.startswith("spvit_"):  # its conv stem runs at full resolution: narrow it too
        return {**_round_trip_size(arch), "embed_dim": 64, "num_heads": 2, "stem_chs": 16}
    if re.match(r"(vit|deit|sgt_vit)_", arch):
        return {**_round_trip_size(arch), "embed_dim": 64, "num_heads": 2}
    return _round_trip_size(arch)


def _detection_size(enc: Encoder) -> tuple[int, int]:
    """Non-square, not 224, not the pretraining grid: 512 x 640 at stride 16 (32 x 40 patches; the same patch grid
    at other patch sizes, to keep attention cheap), 512 x 640 for hierarchical encoders and CNNs."""
    if enc.spec.family == "vit":
        r = enc.spec.size_divisor
        return 32 * r, 40 * r
    return 512, 640


@pytest.mark.parametrize(("method", "variant"), [pytest.param(n, v.name, id=f"{n}:{v.name}") for n, v in _variants()])
@pytest.mark.usefixtures("one_thread")
def test_forward_dense_at_detection_size(method: str, variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every encoder's ``forward_dense`` at a detection/segmentation size keeps its spec's channels and strides
    (dense tasks feed any size that is a multiple of ``size_divisor``), and ``layer_ids`` numbers every parameter."""
    shrink(monkeypatch, method, variant, **_dense_size(get_adapter(method).variant(variant).arch))
    enc = build_encoder(method, variant, weights="random", seed=0)
    h, w = _detection_size(enc)
    with torch.no_grad():
        dense = enc.forward_dense(torch.randn(1, enc.spec.in_chans, h, w))
    got = [tuple(f.shape[1:]) for f in dense]
    assert got == [(c, h // r, w // r) for c, r in zip(enc.spec.channels, enc.spec.reductions)], f"at {h}x{w}"
    assert all(torch.isfinite(f).all() for f in dense)

    ids = enc.layer_ids()
    top = enc.spec.num_blocks + 1
    assert set(ids) == {n for n, _ in enc.named_parameters()} and set(ids.values()) <= set(range(top + 1))
    blocks = [str(f["module"]) for f in enc.model.feature_info]
    for name, layer in ids.items():
        inside = [i for i, b in enumerate(blocks) if name.startswith(f"model.{b}.")]
        assert layer == (inside[0] + 1 if inside else layer) and (inside or layer in (0, top)), name


# ------------------------------------------------------------------------------------------------ declared sizes
@pytest.mark.slow
@pytest.mark.parametrize(("method", "variant"), CASES)
def test_declared_size(method: str, variant: str) -> None:
    """``params_m`` (what marks a variant slow) is the built encoder's parameter count, global head included."""
    adapter = get_adapter(method)
    v = adapter.variant(variant)
    assert v.params_m is not None, f"declare params_m for {method}:{variant} (its parameter count in millions)"
    with torch.device("meta"):
        model = adapter.create_model(v)
        head = adapter.create_global_head(v, model)
    n = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in (head.parameters() if head else ()))
    assert round(n / 1e6, 1) == v.params_m, f"{method}:{variant} has {n / 1e6:.1f} M parameters"


# ------------------------------------------------------------------------------------------------ official layouts
@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small batches of small maps: on shared cores, intra-op threads cost more in synchronisation than they save."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _round_trip_size(arch: str) -> dict[str, Any]:
    """Model arguments that make a variant cheap to round-trip without changing its key layout: fewer blocks of the
    same width, heads and patch size (every block has the same names), or GC ViT at 64 px (windows 2/2/4/2: same
    names, smaller position-bias tables; timm's gcvit builders take no ``depths``). CLIP's ResNets run as they are."""
    if arch.startswith("gcvit_"):
        return {"img_size": 64}
    if arch.startswith("spvit_"):  # SP-SA in block 0-1, the CLS joins at block 2: both kinds of block stay
        return {"depth": 3, "local_up_to_layer": 2}
    if re.match(r"(vit|deit|sgt_vit)_", arch):  # timm ViTs, SGT, ViT-VQGAN
        return {"depth": 2}
    if arch == "resnet50":
        return {"layers": (1, 1, 1, 1)}
    return {}


def _round_trip_input(enc: Encoder) -> torch.Tensor:
    """``[2, C, H, W]``, small: ViTs at 4 x 4 patches, hierarchical models at 2 x 2 cells of their coarsest stride
    (64 px: GC ViT's img_size above)."""
    if enc.spec.family == "vit":
        return _input(enc)
    side = 2 * enc.spec.size_divisor
    return torch.randn(2, enc.spec.in_chans, side, side)


def _perturb(enc: Encoder) -> None:
    """Random values in every parameter (timm initialises biases to 0 and norm scales to 1, which would hide a
    swapped or lost bias or norm)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * (0.02 if p.ndim > 1 else 0.1))


def _assert_same_features(got: Encoder, want: Encoder, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(got.forward_global(x), want.forward_global(x), atol=1e-4, rtol=0)
        for a, b in zip(got.forward_dense(x), want.forward_dense(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def _check_round_trip(method: str, variant: str, layout: str | None, tmp_path: Path) -> None:
    """Write ``method:variant``'s weights in its declared ``layout`` and load them back through build_encoder."""
    adapter: MethodAdapter = get_adapter(method)
    if layout is None:
        pytest.fail(
            f"declare official_layouts for {method}:{variant}: how the authors' checkpoint file holds its weights "
            "(methods.base.OfficialLayout), and override to_official if the adapter overrides convert"
        )
    v = adapter.variant(variant)
    (lay,) = [x for x in v.official_layouts if x.name == layout]  # names tell a variant's layouts apart
    enc = build_encoder(method, variant, weights="random", seed=0)
    _perturb(enc)
    sd = {k.removeprefix("model."): t for k, t in enc.state_dict().items()}  # what load_weights consumes
    path = tmp_path / "official.pth"
    torch.save(official_file(adapter, v, lay, sd), path)

    loaded = build_encoder(method, variant, weights=path)
    x = _round_trip_input(enc)
    _assert_same_features(loaded, enc, x)

    # Every tensor of the file's weight entry is accounted for: each of ours is loaded, the rest reported dropped.
    rep = loaded.identity.load_report
    official = adapter.to_official(dict(sd), v)
    # Names only the authors' layout has, which loading must drop (GC ViT's index buffers).
    left_over = set(adapter.convert(strip_prefixes(official, v.strip_prefixes)[0], v)[0]) - set(sd)
    copies_inside = sum(where is None for where, _ in lay.copies)
    assert rep.checkpoint_key == lay.key
    assert rep.matched == len(sd) and rep.missing_allowed == []
    assert not set(rep.dropped) & set(sd), "a weight of the encoder was dropped instead of loaded"
    assert len(rep.dropped) == len(lay.extra_weights) + copies_inside * len(official) + len(left_over)
    if set(official) != set(sd):
        assert rep.converted, "to_official renamed keys, yet loading reports no conversion"

    if lay.key is None:  # a flat layout can also come as .safetensors
        from safetensors.torch import save_file

        flat = path.with_suffix(".safetensors")
        save_file({k: t.contiguous() for k, t in official_file(adapter, v, lay, sd).items()}, str(flat))
        _assert_same_features(build_encoder(method, variant, weights=flat), enc, x)


@pytest.mark.parametrize(("method", "variant", "layout"), LAYOUT_CASES)
@pytest.mark.usefixtures("one_thread")
def test_official_layout_round_trip(
    method: str, variant: str, layout: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Random weights -> the authors' file layout -> ``build_encoder`` gives the same features (1e-4)."""
    v = get_adapter(method).variant(variant)
    shrink(monkeypatch, method, variant, **_round_trip_size(v.arch))
    _check_round_trip(method, variant, layout, tmp_path)


@pytest.mark.parametrize(("method", "variant"), CLASSIFIER_CASES)
@pytest.mark.usefixtures("one_thread")
def test_classifier_round_trip(method: str, variant: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A released head survives the authors' first declared layout: ``build(classifier=True)`` gives the same logits
    (1e-4), the head's keys are loaded, not dropped, and the backbone's features are unchanged by having a head."""
    adapter = get_adapter(method)
    shrink(monkeypatch, method, variant, **_round_trip_size(adapter.variant(variant).arch))
    v = adapter.variant(variant)
    assert v.classifier is not None
    enc = adapter.build(variant, weights="random", seed=0, classifier=True)
    _perturb(enc)
    sd = {k.removeprefix("model."): t for k, t in enc.state_dict().items()}
    assert set(v.classifier.keys) <= set(sd), f"declared head keys {v.classifier.keys} are not the model's"
    path = tmp_path / "official.pth"
    torch.save(official_file(adapter, v, v.official_layouts[0], sd), path)
    loaded = adapter.build(variant, weights=path, classifier=True)
    x = _round_trip_input(enc)
    with torch.no_grad():
        logits = loaded.forward_logits(x)
        assert logits.shape == (2, v.classifier.num_classes)
        torch.testing.assert_close(logits, enc.forward_logits(x), atol=1e-4, rtol=0)
    _assert_same_features(loaded, enc, x)
    assert not set(loaded.identity.load_report.dropped) & set(sd)
    backbone = adapter.build(variant, weights=path)  # the same file without the head: dropped, features equal
    kept = {k.removeprefix("model.") for k in backbone.state_dict()}
    assert backbone.classifier is None and not set(v.classifier.keys) & kept
    _assert_same_features(backbone, enc, x)
    # imagenet-finetune from the released file: a fresh head on the same pooled feature (Encoder.model_factory)
    model, report = backbone.finetune_model(7)
    assert report.missing_allowed and all(k.split(".")[0] in ("head", "fc", "aux_head") for k in report.missing_allowed)
    with torch.no_grad():
        model.eval()
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(pooled, enc.forward_global(x), atol=1e-4, rtol=0)
        assert model(x).shape == (2, 7)
    with pytest.raises(CheckpointError, match="built with its released classifier"):
        loaded.finetune_model(7)


def test_classifier_refused_for_backbone_only_variants() -> None:
    """Every variant without a released head refuses ``classifier=True`` in one line, before building anything."""

    for name, v in _variants():
        if v.classifier is None:
            with pytest.raises(CheckpointError, match=rf"{name}:{v.name} has no released classification head"):
                get_adapter(name).build(v.name, weights="random", classifier=True)


def test_a_variant_without_layout_fails_the_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Adding a variant without ``official_layouts`` adds a failing case that says what to declare."""
    from dataclasses import replace

    dino = type(get_adapter("dino"))
    bare = replace(dino.variants[0], name="new", official_layouts=())
    cases = _layout_cases([("dino", bare)])
    assert [c.id for c in cases] == ["dino:new[undeclared]"] and cases[0].values == ("dino", "new", None)
    monkeypatch.setattr(dino, "variants", (*dino.variants, bare))
    with pytest.raises(pytest.fail.Exception, match=r"declare official_layouts for dino:new"):
        _check_round_trip("dino", "new", None, tmp_path)


def test_registry_rejects_duplicates_and_suggests() -> None:
    from methods.errors import UnknownNameError
    from methods.registry import register

    with pytest.raises(ValueError, match="already registered"):
        register("dino", "methods.dino:Dino")
    with pytest.raises(UnknownNameError, match="did you mean 'dino'"):
        get_adapter("dinno")
    with pytest.raises(UnknownNameError, match="unknown variant 'vits17'.*did you mean"):
        get_adapter("dino").variant("vits17")


def test_registry_listing_is_lazy() -> None:
    """Listing methods must not import adapter modules (model code)."""
    import subprocess
    import sys

    code = (
        "import sys; from methods.registry import list_methods; names = list_methods(); "
        "assert 'dino' in names; assert 'methods.dino' not in sys.modules, 'listing imported methods.dino'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
