"""GC ViT: NVlabs checkpoints (HF nvidia/GCViT, timm train.py format) -> timm ``gcvit_*``.

NVlabs code cannot be imported here, so parity is built from two independent pieces:
- ``fixtures/gcvit_nvlabs_keys.json``: the real NVlabs key names and shapes (see its ``_source``), and
- ``_to_nvlabs``: timm -> NVlabs written from NVlabs' module tree (PatchEmbed, GCViTLayer, ReduceSize, FeatExtract,
  GlobalQueryGen, GCViTBlock) rather than from the adapter's table; it must reproduce the fixture's names exactly.
A timm model's weights go out through ``_to_nvlabs`` and back in through ``build_encoder``; the outputs must match.
``test_numerical_parity_with_nvlabs_code`` runs the authors' own model when ``VITBENCH_NVLABS_GCVIT`` names a
local copy of NVlabs' ``models/gc_vit.py`` (off by default).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

import pytest
import timm
import torch

from methods import CheckpointError, build_encoder, get_adapter
from tests.methods._official import assert_declared_layout

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "gcvit_nvlabs_keys.json").read_text())
X = torch.randn(1, 3, 224, 224)  # the released models' windows (7/7/14/7) and global-query pools fix 224 px


@pytest.fixture(autouse=True)
def _one_thread():
    """Small batches of small maps: on shared cores, intra-op threads cost more in synchronisation than they save."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.cache
def _swin_index(w: int) -> torch.Tensor:
    """NVlabs WindowAttention's ``relative_position_index`` buffer, computed as its __init__ does."""
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += w - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    return rel.sum(-1)


def _to_nvlabs(model: torch.nn.Module, head: int = 1000) -> dict[str, torch.Tensor]:
    """A timm GlobalContextVit's weights in NVlabs' layout, walking NVlabs' module tree level by level."""
    t = model.state_dict()
    out: dict[str, torch.Tensor] = {}

    def conv_stack(nv: str, tm: str) -> None:  # nn.Sequential(dw conv, GELU, SE(fc=[Linear, GELU, Linear]), pw conv)
        out[f"{nv}.conv.0.weight"] = t[f"{tm}.conv_dw.weight"]
        out[f"{nv}.conv.2.fc.0.weight"] = t[f"{tm}.se.fc1.weight"][:, :, 0, 0]
        out[f"{nv}.conv.2.fc.2.weight"] = t[f"{tm}.se.fc2.weight"][:, :, 0, 0]
        out[f"{nv}.conv.3.weight"] = t[f"{tm}.conv_pw.weight"]

    def reduce_size(nv: str, tm: str) -> None:  # ReduceSize registers conv, reduction, norm2, norm1 in this order
        conv_stack(nv, f"{tm}.conv_block")
        out[f"{nv}.reduction.weight"] = t[f"{tm}.reduction.weight"]
        for n in ("norm2", "norm1"):
            out[f"{nv}.{n}.weight"], out[f"{nv}.{n}.bias"] = t[f"{tm}.{n}.weight"], t[f"{tm}.{n}.bias"]

    out["patch_embed.proj.weight"], out["patch_embed.proj.bias"] = t["stem.conv1.weight"], t["stem.conv1.bias"]
    reduce_size("patch_embed.conv_down", "stem.down")
    n_levels = len(model.stages)
    for i, stage in enumerate(model.stages):
        for j, blk in enumerate(stage.blocks):
            nv, tm = f"levels.{i}.blocks.{j}", f"stages.{i}.blocks.{j}"
            for p in ("weight", "bias"):
                out[f"{nv}.norm1.{p}"] = t[f"{tm}.norm1.{p}"]
            table = t[f"{tm}.attn.rel_pos.relative_position_bias_table"]
            out[f"{nv}.attn.relative_position_bias_table"] = table
            out[f"{nv}.attn.relative_position_index"] = _swin_index(blk.window_size[0])
            for name in ("attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
                for p in ("weight", "bias"):
                    out[f"{nv}.{name}.{p}"] = t[f"{tm}.{name}.{p}"]
            for g in (1, 2):  # GCViTBlock.gamma{1,2} exist only with layer_scale
                if f"{tm}.ls{g}.gamma" in t:
                    out[f"{nv}.gamma{g}"] = t[f"{tm}.ls{g}.gamma"]
        if i + 1 < n_levels:  # the level ends with the ReduceSize that timm puts at the start of the next stage
            reduce_size(f"levels.{i}.downsample", f"stages.{i + 1}.downsample")
        # GlobalQueryGen: 3 FeatExtract at image/4, 2 at image/8, 1 (keep_dim) at image/16 and image/32
        for k in range({0: 3, 1: 2}.get(i, 1)):
            conv_stack(f"levels.{i}.q_global_gen.to_q_global.{k}", f"stages.{i}.global_block.blocks.conv{k + 1}")
    last = f"stages.{n_levels - 1}.norm"
    out["norm.weight"], out["norm.bias"] = t[f"{last}.weight"], t[f"{last}.bias"]
    out["head.weight"], out["head.bias"] = torch.randn(head, model.num_features), torch.randn(head)
    return out


@functools.cache
def _reference(arch: str = "gcvit_xxtiny", **kwargs) -> torch.nn.Module:
    """A timm GC ViT whose every tensor is random (so swapped norms/gammas/biases cannot hide behind 1s and 0s)."""
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=0, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * (0.02 if p.ndim > 1 else 0.1))
    return model


def _train_py_checkpoint(nv: dict[str, torch.Tensor]) -> dict:
    """What timm 0.9.2's CheckpointSaver (NVlabs train.py, --amp --model-ema) writes."""
    args = argparse.Namespace(
        model="gc_vit_xxtiny",
        config="configs/gc_vit_xxtiny.yml",
        lr=5e-3,
        model_ema=True,
        input_size=None,
        mean=None,
        data_dir=Path("/data/imagenet"),
        amp=True,
    )
    student = {k: (v + 1 if v.is_floating_point() else v) for k, v in nv.items()}  # NOT the weights to load
    return {
        "epoch": 309,
        "arch": "gc_vit_xxtiny",
        "state_dict": student,
        "version": 2,
        "args": args,
        "optimizer": {
            "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(3)}},
            "param_groups": [{"lr": 1e-6, "betas": (0.9, 0.999), "params": [0]}],
        },
        "amp_scaler": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 11,
        },
        "state_dict_ema": nv,
        "metric": 79.9,
    }


@functools.cache
def _fixture_tensors(section: str = "gcvit_xxtiny") -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {
        k: (_swin_index(int(round(s[0] ** 0.5))) if k.endswith("relative_position_index") else torch.randn(s))
        for k, s in FIXTURE[section].items()
    }


def _fixture_state_dict() -> dict[str, torch.Tensor]:
    return dict(_fixture_tensors())


def test_inverse_table_reproduces_the_real_nvlabs_names() -> None:
    nv = _to_nvlabs(_reference())
    real = FIXTURE["gcvit_xxtiny"]
    assert list(nv) != [] and sorted(nv) == sorted(real)
    assert {k: list(v.shape) for k, v in nv.items()} == real


def test_train_py_checkpoint_round_trip(tmp_path: Path) -> None:
    ref = _reference()
    path = tmp_path / "gcvit_1k_xxtiny.pth.tar"
    torch.save(_train_py_checkpoint(_to_nvlabs(ref)), path)  # names checked against the fixture above
    enc = build_encoder("gcvit", "xxtiny", weights=path)
    with torch.no_grad():
        want = ref.forward_intermediates(X, indices=[0, 1, 2, 3], output_fmt="NCHW", intermediates_only=True)
        got = enc.forward_dense(X)
        pooled = enc.forward_global(X)
    assert [tuple(g.shape[1:]) for g in got] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    # the reference's forward_features is its last stage output: pool it instead of another 224 px pass
    torch.testing.assert_close(pooled, ref.forward_head(want[-1], pre_logits=True), atol=1e-4, rtol=0)
    assert enc.spec.reductions == (4, 8, 16, 32) and enc.spec.family == "hierarchical"
    rep = enc.identity.load_report
    assert rep.checkpoint_key == "state_dict_ema"  # the EMA the best-epoch metric was measured on
    assert rep.matched == len(ref.state_dict()) == 224
    assert rep.missing_allowed == [] and rep.stripped_prefixes == []
    assert sorted(rep.dropped) == ["head.fc.bias", "head.fc.weight"] + sorted(
        k for k in FIXTURE["gcvit_xxtiny"] if k.endswith("relative_position_index")
    )
    assert rep.converted == [
        "patch_embed.proj -> stem.conv1 (2 keys)",
        "patch_embed.conv_down -> stem.down (9 keys)",
        "levels.i.blocks.j.{norm,attn.qkv,attn.proj,mlp} -> stages.i.blocks.j.* (same suffix) (144 keys)",
        "attn.relative_position_bias_table -> attn.rel_pos.* (12 keys)",
        "relative_position_index: checked to be the standard Swin index (timm recomputes it) (12 keys)",
        "levels.i.downsample -> stages.i+1.downsample (27 keys)",
        "levels.i.q_global_gen.to_q_global.k -> stages.i.global_block.blocks.conv(k+1) (28 keys)",
        "norm -> stages.3.norm (2 keys)",
        "head -> head.fc (classifier) (2 keys)",
    ]
    # The same file with its classifier (imagenet-supervised): NVlabs' `head` on the pooled last stage.
    nv = torch.load(path, weights_only=False)["state_dict_ema"]
    clf = build_encoder("gcvit", "xxtiny", weights=path, classifier=True)
    with torch.no_grad():
        logits = torch.nn.functional.linear(
            ref.forward_head(want[-1], pre_logits=True), nv["head.weight"], nv["head.bias"]
        )
        torch.testing.assert_close(clf.forward_logits(X), logits, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [{}, {"layer_scale": 1e-5, "img_size": 64}], ids=["xxtiny", "layer-scale"])
def test_declared_layout_is_the_nvlabs_layout(kwargs: dict) -> None:
    """GCViT.to_official (the inverse table the contract test writes files with) gives exactly what ``_to_nvlabs``,
    written from NVlabs' module tree, gives; and the declared train.py layout has the file's entries."""
    ref = _reference(**kwargs)
    adapter = get_adapter("gcvit")
    ours = adapter.to_official(dict(ref.state_dict()), adapter.variant("xxtiny"))
    theirs = {k: v for k, v in _to_nvlabs(ref).items() if not k.startswith("head.")}
    assert sorted(ours) == sorted(theirs)
    assert all(ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]) for k in ours)
    if not kwargs:
        assert_declared_layout("gcvit", "xxtiny", "train.py", _train_py_checkpoint(_to_nvlabs(ref)))


def test_layer_scale_round_trip_is_exact(tmp_path: Path) -> None:
    """xxtiny + layer scale (S/B/L's gamma1/gamma2) at 64 px (windows 2/2/4/2), through the adapter's build:
    the loaded model holds exactly the reference's tensors (same timm class and config, so the same function)."""
    from methods.base import with_variant
    from methods.gcvit import GCViT, convert_nvlabs

    class _Small(GCViT):
        variants = (with_variant(GCViT().variant("xxtiny"), model_kwargs={"layer_scale": 1e-5, "img_size": 64}),)

    ref = _reference(layer_scale=1e-5, img_size=64)
    nv = _to_nvlabs(ref)
    back, _ = convert_nvlabs({k: v for k, v in nv.items() if not k.startswith("head.")})
    want = ref.state_dict()
    assert all(torch.equal(back[k], v) for k, v in want.items())  # the converter inverts the NVlabs table exactly
    torch.save({"state_dict": nv, "epoch": 1}, tmp_path / "ls.pth.tar")
    enc = _Small().build("xxtiny", weights=tmp_path / "ls.pth.tar")
    got = enc.model.state_dict()
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], v) for k, v in want.items())
    assert "gamma1/gamma2 -> ls1.gamma/ls2.gamma (layer scale) (24 keys)" in enc.identity.load_report.converted


def test_real_layer_scale_names_map_onto_timm_small() -> None:
    from methods.gcvit import convert_nvlabs

    gammas = {k: torch.zeros(s) for k, s in FIXTURE["gcvit_small_layer_scale"].items()}
    converted, lines = convert_nvlabs(gammas)
    with torch.device("meta"):
        small = timm.create_model("gcvit_small", num_classes=0).state_dict()
    assert len(converted) == 62 and all(k.endswith(("ls1.gamma", "ls2.gamma")) for k in converted)
    assert all(tuple(small[k].shape) == tuple(v.shape) for k, v in converted.items())
    assert lines == ["gamma1/gamma2 -> ls1.gamma/ls2.gamma (layer scale) (62 keys)"]


def test_wrong_variant_names_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "gcvit_1k_xxtiny.pth.tar"
    torch.save({"state_dict": _fixture_state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"xxtiny\.pth\.tar: keys missing for gcvit:xtiny.*stages\.0\.blocks\.2"):
        build_encoder("gcvit:xtiny", weights=path)


def test_first_release_layout_and_bad_index_are_refused() -> None:
    from methods.gcvit import convert_nvlabs

    sd = {k: v for k, v in _fixture_state_dict().items() if k.startswith(("levels.2.", "levels.3."))}
    with pytest.raises(CheckpointError, match="2022-06"):
        convert_nvlabs({k.replace("q_global_gen.to_q_global", "to_q_global"): v for k, v in sd.items()})
    sd["levels.2.blocks.0.attn.relative_position_index"] = _swin_index(14).flip(0)
    with pytest.raises(CheckpointError, match=r"levels\.2\.blocks\.0\.attn\.relative_position_index is not the"):
        convert_nvlabs(sd)


def test_timm_layout_loads_unchanged(tmp_path: Path) -> None:
    ref = _reference()
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    enc = build_encoder("gcvit:xxtiny", weights=tmp_path / "timm.pth")
    assert enc.identity.load_report.converted == [] and enc.identity.load_report.matched == 224


# Parameter counts of NVlabs' gc_vit_tiny2/small2/large (1000-way head included), counted by instantiating
# models/gc_vit.py @ 8e1941f outside vitbench; the README rounds them to 34M / 68M / 201M.
@pytest.mark.parametrize(
    ("variant", "n_params"), [("tiny2", 34_535_654), ("small2", 68_615_197), ("large", 202_075_570)]
)
def test_archs_timm_lacks_match_nvlabs_sizes(variant: str, n_params: int) -> None:
    """T2/S2/L are timm's GlobalContextVit with NVlabs' configs (timm has no such arch names)."""
    from methods import get_adapter

    adapter = get_adapter("gcvit")
    with torch.device("meta"):
        model = adapter.create_model(adapter.variant(variant))
    assert sum(p.numel() for p in model.parameters()) + 1000 * model.num_features + 1000 == n_params
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]


@pytest.mark.external
def test_numerical_parity_with_nvlabs_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the authors' model: random NVlabs weights -> build_encoder; same level outputs and pooled features.

    NVlabs' code cannot ship with vitbench (NVIDIA Source Code License-NC), so this runs only on request:
    ``VITBENCH_NVLABS_GCVIT=path/to/NVlabs/GCVit/models/gc_vit.py pytest -m external tests/methods/test_gcvit.py``.
    """
    import importlib.util

    assert os.environ.get("VITBENCH_NVLABS_GCVIT"), "set VITBENCH_NVLABS_GCVIT=path/to/NVlabs/GCVit/models/gc_vit.py"

    from methods.base import with_variant
    from methods.gcvit import GCViT

    spec = importlib.util.spec_from_file_location("nvlabs_gc_vit", os.environ["VITBENCH_NVLABS_GCVIT"])
    nv = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, nv)  # its @register_model looks itself up there
    spec.loader.exec_module(nv)
    torch.manual_seed(0)
    m = nv.GCViT(
        depths=[2, 2, 6, 2], num_heads=[2, 4, 8, 16], window_size=[7, 7, 14, 7], dim=64, mlp_ratio=3, layer_scale=1e-5
    ).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save({"state_dict": m.state_dict()}, tmp_path / "nv.pth.tar")

    class _WithGammas(GCViT):  # xxtiny + layer scale, so gamma1/gamma2 are exercised too
        variants = (with_variant(GCViT().variant("xxtiny"), model_kwargs={"layer_scale": 1e-5}),)

    enc = _WithGammas().build("xxtiny", weights=tmp_path / "nv.pth.tar")
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        h, want = m.patch_embed(x), []
        for level in m.levels:
            q = level.q_global_gen(h.permute(0, 3, 1, 2))
            for blk in level.blocks:
                h = blk(h, q)
            want.append(h)
            h = level.downsample(h) if level.downsample is not None else h
        want[-1] = m.norm(want[-1])
        for a, b in zip(enc.forward_dense(x), want, strict=True):
            torch.testing.assert_close(a, b.permute(0, 3, 1, 2), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(enc.forward_global(x), m.forward_features(x), atol=1e-4, rtol=1e-4)
