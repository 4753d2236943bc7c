"""SP-ViT: parity of our timm modules with the official code's math, and the official checkpoint layout.

The official code cannot be imported here (timm 0.4.5 era, registers colliding names), so the reference below
re-states its math directly on tensors, following ``tlt/models/layers.py`` / ``tlt/models/spvit.py`` of
ZhouYuxuanYX/SP-ViT-Learning-2D-Spatial-Priors-for-Vision-Transformers: the dense N x N ``rel_indices`` built with
repeat / repeat_interleave, ``w1`` over every pair, the ``einsum('nm,hijnm->hijn')`` prior, ``PosCNN``'s
``N % 2 == 1`` CLS test, and the CLS token concatenated in front of block ``local_up_to_layer``. It reads weights
by the official key names only, so it also pins the key layout.
"""

from __future__ import annotations

import argparse

import pytest
import timm
import torch
import torch.nn.functional as F

import methods.archs.spvit as arch
from methods.base import with_variant
from methods.errors import CheckpointError
from methods.spvit import SPViT as SPViTAdapter
from tests.methods._official import assert_declared_layout, shrink

TINY = dict(
    embed_dim=32, depth=3, num_heads=4, mlp_ratio=3.0, skip_lam=2.0, stem_chs=8, local_up_to_layer=2, img_size=64
)
ATOL = 1e-5


def max_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference, relative to the reference's scale where it exceeds 1 (pre-norm block outputs reach ~1e2)."""
    return float((ours - ref).abs().max() / ref.abs().max().clamp(min=1.0))


# ------------------------------------------------------------------------------------------------ reference math
def ref_rel_indices(side: int) -> torch.Tensor:
    """Official ``get_rel_indices``: ``[1, N, N, 2]``, [..., 0] = x_key - x_query, [..., 1] = y_key - y_query."""
    n = side * side
    rel = torch.zeros(1, n, n, 2)
    ind = torch.arange(side).view(1, -1) - torch.arange(side).view(-1, 1)
    rel[:, :, :, 0] = ind.repeat(side, side).unsqueeze(0)
    rel[:, :, :, 1] = ind.repeat_interleave(side, dim=0).repeat_interleave(side, dim=1).unsqueeze(0)
    return rel


def ref_spsa(x: torch.Tensor, p: dict, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    qk = F.linear(x, p["qk.weight"]).reshape(b, n, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    v = F.linear(x, p["v.weight"]).reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
    pos_emb = F.linear(ref_rel_indices(int(n**0.5)), p["w1.weight"], p["w1.bias"]).view(1, n, n, heads, -1)
    pos_map = torch.einsum("nm,hijnm->hijn", p["w2"].view(heads, -1), F.relu(pos_emb)) + p["b2"]
    score = (qk[0] @ qk[1].transpose(-2, -1)) * (c // heads) ** -0.5
    attn = (score * pos_map.repeat(b, 1, 1, 1).permute(0, 3, 1, 2)).softmax(dim=-1)
    return F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), p["proj.weight"], p["proj.bias"])


def ref_attn(x: torch.Tensor, p: dict, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    q, k, v = F.linear(x, p["qkv.weight"]).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = ((q * (c // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    return F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), p["proj.weight"], p["proj.bias"])


def ref_poscnn(x: torch.Tensor, p: dict) -> torch.Tensor:
    b, n, c = x.shape
    side = int(n**0.5)
    x = x.permute(0, 2, 1).clone()
    feat = x[:, :, 1:] if n % 2 == 1 else x  # the official CLS detection
    cnn = feat.reshape(b, c, side, side)
    out = (F.conv2d(cnn, p["proj.0.weight"], p["proj.0.bias"], padding=1, groups=c) + cnn).reshape(b, c, -1)
    if n % 2 == 1:
        x[:, :, 1:] = out
    else:
        x = out
    return x.transpose(1, 2)


def sub(sd: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def ref_block(x: torch.Tensor, p: dict, heads: int, skip_lam: float) -> torch.Tensor:
    c = x.shape[-1]
    h = F.layer_norm(x, (c,), p["norm1.weight"], p["norm1.bias"], eps=1e-5)
    attn = ref_spsa if "attn.qk.weight" in p else ref_attn
    x = x + attn(h, sub(p, "attn."), heads) / skip_lam
    h = F.layer_norm(x, (c,), p["norm2.weight"], p["norm2.bias"], eps=1e-5)
    h = F.linear(F.gelu(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    x = x + h / skip_lam
    return ref_poscnn(x, sub(p, "pos_block."))


def ref_forward(img: torch.Tensor, sd: dict, cfg: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Official ``forward_features`` (final-normed tokens) and every block's output, from an official state dict."""
    x = img
    for i in (1, 2, 3):
        x = F.conv2d(x, sd[f"patch_embed.conv{i}.weight"], stride=2 if i == 1 else 1, padding=3 if i == 1 else 1)
        x = F.relu(
            F.batch_norm(
                x,
                sd[f"patch_embed.bn{i}.running_mean"],
                sd[f"patch_embed.bn{i}.running_var"],
                sd[f"patch_embed.bn{i}.weight"],
                sd[f"patch_embed.bn{i}.bias"],
                eps=1e-5,
            )
        )
    half = cfg["patch_size"] // 2
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=half)
    x = x.flatten(2).transpose(1, 2) + sd["pos_embed"]
    cls = sd["cls_token"].expand(x.shape[0], -1, -1)
    outs = []
    for u in range(cfg["depth"]):
        if u == cfg["local_up_to_layer"]:
            x = torch.cat([cls, x], dim=1)
        x = ref_block(x, sub(sd, f"blocks.{u}."), cfg["num_heads"], cfg["skip_lam"])
        outs.append(x)
    return F.layer_norm(x, (x.shape[-1],), sd["norm.weight"], sd["norm.bias"], eps=1e-5), outs


def official_state_dict(cfg: dict, spsa: bool = True, num_classes: int = 5, seed: int = 0) -> dict:
    """Random tensors under the key names and shapes the official SP_ViT(return_dense=True) saves."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.1) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    c, s, heads, hid = cfg["embed_dim"], cfg["stem_chs"], cfg["num_heads"], int(cfg["embed_dim"] * cfg["mlp_ratio"])
    n = (cfg["img_size"] // cfg["patch_size"]) ** 2
    sd: dict[str, torch.Tensor] = {}
    for i, (cin, k) in enumerate([(3, 7), (s, 3), (s, 3)], start=1):
        sd[f"patch_embed.conv{i}.weight"] = r(s, cin, k, k, scale=0.3)
        sd[f"patch_embed.bn{i}.weight"] = 1 + r(s)
        sd[f"patch_embed.bn{i}.bias"] = r(s)
        sd[f"patch_embed.bn{i}.running_mean"] = r(s)
        sd[f"patch_embed.bn{i}.running_var"] = 0.5 + torch.rand(s, generator=g)
        sd[f"patch_embed.bn{i}.num_batches_tracked"] = torch.tensor(100)
    half = cfg["patch_size"] // 2
    sd["patch_embed.proj.weight"] = r(c, s, half, half, scale=0.05)
    sd["patch_embed.proj.bias"] = r(c)
    sd["cls_token"] = r(1, 1, c)
    sd["pos_embed"] = r(1, n, c)  # no CLS slot: local_up_to_layer > 0
    for i in range(cfg["depth"]):
        p = f"blocks.{i}."
        sd[p + "norm1.weight"], sd[p + "norm1.bias"] = 1 + r(c), r(c)
        if spsa and i < cfg["local_up_to_layer"]:
            sd[p + "attn.qk.weight"] = r(2 * c, c, scale=0.3)
            sd[p + "attn.v.weight"] = r(c, c, scale=0.3)
            sd[p + "attn.w1.weight"] = r(c, 2, scale=0.5)
            sd[p + "attn.w1.bias"] = r(c, scale=0.5)
            sd[p + "attn.w2"] = r(c, 1, scale=0.5)
            sd[p + "attn.b2"] = 1 + r(heads, scale=0.5)
        else:
            sd[p + "attn.qkv.weight"] = r(3 * c, c, scale=0.3)
        sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"] = r(c, c, scale=0.3), r(c)
        sd[p + "norm2.weight"], sd[p + "norm2.bias"] = 1 + r(c), r(c)
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = r(hid, c, scale=0.3), r(hid)
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = r(c, hid, scale=0.3), r(c)
        sd[p + "pos_block.proj.0.weight"], sd[p + "pos_block.proj.0.bias"] = r(c, 1, 3, 3, scale=0.3), r(c)
    sd["norm.weight"], sd["norm.bias"] = 1 + r(c), r(c)
    sd["head.weight"], sd["head.bias"] = r(num_classes, c), r(num_classes)
    sd["aux_head.weight"], sd["aux_head.bias"] = r(num_classes, c), r(num_classes)
    return sd


def tiny_adapter(
    name: str = "s", arch_name: str = "spvit_s", pos_embed_grids: tuple[int, ...] | None = None, **overrides
) -> SPViTAdapter:
    base = SPViTAdapter().variant(name)
    grids = base.pos_embed_grids if pos_embed_grids is None else pos_embed_grids

    class Tiny(SPViTAdapter):
        variants = (with_variant(base, arch=arch_name, model_kwargs={**TINY, **overrides}, pos_embed_grids=grids),)

    return Tiny()


def full_cfg(**overrides) -> dict:
    return {"patch_size": 16, **TINY, **overrides}


# ------------------------------------------------------------------------------------------------ tests
def test_spsa_layer_matches_official_math():
    torch.manual_seed(0)
    layer = arch.SpatialPriorAttention(dim=32, num_heads=4).eval()
    with torch.no_grad():  # a non-trivial prior (untrained it is all ones)
        layer.w2.normal_(0, 0.5)
        layer.b2.normal_(1, 0.5)
        layer.w1.bias.normal_(0, 0.5)
        layer.w1.weight.normal_(0, 0.5)
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        ours = layer(x, (4, 4))
        ref = ref_spsa(x, {k: v for k, v in layer.state_dict().items()}, heads=4)
    assert (ours - ref).abs().max() <= ATOL
    prior = layer.spatial_prior((4, 4))
    assert prior.shape == (4, 16, 16) and prior.std() > 0.1  # the prior really varies


@pytest.mark.parametrize("spsa", [True, False])
def test_block_matches_official_math(spsa):
    torch.manual_seed(1)
    blk = arch.SPViTBlock(32, 4, mlp_ratio=3.0, skip_lam=2.0, use_spsa=spsa).eval()
    with torch.no_grad():
        for p in blk.parameters():
            p.normal_(0, 0.2)
    n_prefix = 0 if spsa else 1  # SP-SA blocks run before the CLS joins; plain blocks see it (N=17: odd)
    x = torch.randn(2, n_prefix + 16, 32)
    with torch.no_grad():
        assert (blk(x, (4, 4)) - ref_block(x, blk.state_dict(), heads=4, skip_lam=2.0)).abs().max() <= ATOL


def train_py_checkpoint(ema: dict, raw: dict) -> dict:
    """The TokenLabeling train script's CheckpointSaver file (--model-ema)."""
    return {
        "epoch": 299,
        "arch": "lvvit_s",
        "state_dict": raw,
        "state_dict_ema": ema,
        "optimizer": {"state": {}},
        "version": 2,
        "args": argparse.Namespace(model="lvvit_s", local_up_to_layer=2),
        "amp_scaler": {},
        "metric": 83.9,
    }


def test_official_checkpoint_round_trip(tmp_path):
    cfg = full_cfg()
    ema, raw = official_state_dict(cfg, seed=0), official_state_dict(cfg, seed=1)
    ckpt = train_py_checkpoint(ema, raw)
    path = tmp_path / "model_best.pth.tar"
    torch.save(ckpt, path)

    enc = tiny_adapter().build(weights=str(path))
    report = enc.identity.load_report
    assert report.checkpoint_key == "state_dict_ema"
    assert sorted(report.dropped) == ["aux_head.bias", "aux_head.weight", "head.bias", "head.weight"]
    assert report.missing_allowed == [] and any("SP-SA in blocks 0-1" in c for c in report.converted)

    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref_tokens, ref_blocks = ref_forward(img, ema, cfg)
        assert (enc.model.forward_features(img) - ref_tokens).abs().max() <= ATOL
        assert (enc.forward_global(img) - ref_tokens[:, 0]).abs().max() <= ATOL
        dense = enc.forward_dense(img)
    assert enc.spec.indices == (0, 1, 2) and enc.spec.num_prefix_tokens == 1 and enc.spec.family == "vit"
    for i, fmap in zip(enc.spec.indices, dense):
        patches = ref_blocks[i][:, 1:] if i >= cfg["local_up_to_layer"] else ref_blocks[i]
        assert fmap.shape == (2, 32, 4, 4)
        assert max_err(fmap, patches.transpose(1, 2).reshape(2, 32, 4, 4)) <= ATOL


def test_declared_layout_matches_the_official_file(monkeypatch):
    shrink(monkeypatch, "spvit", "s", **TINY)
    sd = official_state_dict(full_cfg())
    assert_declared_layout("spvit", "s", "train.py", train_py_checkpoint(sd, sd))


def test_l_checkpoint_kind_is_detected(tmp_path):
    cfg = full_cfg()
    public = official_state_dict(cfg, spsa=False)  # what the public lvvit_l trains: attn.qkv everywhere
    path = tmp_path / "lvvit_l.pth"
    torch.save(public, path)
    with pytest.raises(CheckpointError, match="spvit:l-public"):
        tiny_adapter("l", "spvit_l").build(weights=str(path))
    enc = tiny_adapter("l-public", "spvit_l_public").build(weights=str(path))
    with torch.no_grad():
        ref, _ = ref_forward(torch.ones(1, 3, 64, 64), public, cfg)
        assert (enc.model.forward_features(torch.ones(1, 3, 64, 64)) - ref).abs().max() <= ATOL

    paper = tmp_path / "spvit_l.pth"
    torch.save(official_state_dict(cfg, spsa=True), paper)
    with pytest.raises(CheckpointError, match="spvit:l"):
        tiny_adapter("l-public", "spvit_l_public").build(weights=str(paper))


def test_384_checkpoint_pos_embed_is_resampled(tmp_path):
    sd = official_state_dict(full_cfg(img_size=96))  # 6x6 grid, as a fine-tuned file at a larger size
    torch.save(sd, tmp_path / "s384.pth")
    # The real variants declare the 384-px files' 24x24 grid; at this tiny size the fine-tuned grid is 6x6.
    with pytest.raises(CheckpointError, match="6x6 grid, but spvit:s .* declares 24x24"):
        tiny_adapter().build(weights=str(tmp_path / "s384.pth"))
    enc = tiny_adapter(pos_embed_grids=(6,)).build(weights=str(tmp_path / "s384.pth"))
    assert enc.model.pos_embed.shape == (1, 16, 32)
    assert any("6x6 -> 4x4" in c for c in enc.identity.load_report.converted)
    assert not enc.identity.load_report.resample_pos_embed  # a declared grid: no option needed


def test_timm_api_contract():
    model = timm.create_model("spvit_s", num_classes=0, dynamic_img_size=True, **TINY).eval()
    x = torch.randn(2, 3, 64, 32)  # non-square: the official side = sqrt(N) code cannot run this
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 1 + 4 * 2, 32)
        assert torch.equal(model.forward_head(feats, pre_logits=True), feats[:, 0])
        outs = model.forward_intermediates(
            x, indices=[0, 2], norm=True, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
        )
        assert [o[0].shape for o in outs] == [(2, 8, 32)] * 2 and [o[1].shape for o in outs] == [(2, 1, 32)] * 2
        assert torch.allclose(outs[-1][1][:, 0], feats[:, 0], atol=ATOL)  # last block, normed = forward_features
        # Block 0 runs before the CLS joins: its prefix is the normed learned cls_token, the same for every image.
        assert torch.allclose(outs[0][1][0], outs[0][1][1])
        final, maps = model.forward_intermediates(x, indices=1, stop_early=False)
        assert final.shape == feats.shape and maps[0].shape == (2, 32, 4, 2)
        assert len(model.feature_info) == 3 and model.feature_info[0]["reduction"] == 16
    fixed = timm.create_model("spvit_s", num_classes=0, **TINY)
    with pytest.raises(Exception, match="dynamic_img_size"):
        fixed.forward_features(x)
    feat_net = timm.create_model("spvit_s", features_only=True, out_indices=(1, 2), **TINY).eval()
    with torch.no_grad():
        assert [f.shape for f in feat_net(torch.randn(1, 3, 64, 64))] == [(1, 32, 4, 4)] * 2


def test_classifier_logits_follow_official_inference():
    model = timm.create_model("spvit_s", num_classes=7, **TINY).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = model.forward_features(x)
        expected = model.head(tokens[:, 0]) + 0.5 * model.aux_head(tokens[:, 1:]).max(1)[0]
        assert torch.allclose(model(x), expected)


@pytest.mark.slow
@pytest.mark.parametrize("name,params_m", [("spvit_s", 26.2), ("spvit_m", 55.9), ("spvit_l", 150.2)])
def test_full_size_parameter_counts(name, params_m):
    model = timm.create_model(name, num_classes=1000)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - params_m) < 0.2
