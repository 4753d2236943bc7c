"""DualCoOp's image-text towers, built by open_clip (the ``clip`` extra): region features against CLIP's own attention
pool, the text tower on token embeddings, and strict loading of OpenAI's layout (state dict and TorchScript).

CLIP RN50 is ~100 M parameters, so these tests build a tiny CLIP from an open_clip model-config dict that keeps the
architecture (3-conv stem, one anti-aliased bottleneck per stage, attention pool, a 1-layer text transformer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods import build_encoder, get_adapter
from methods.errors import CheckpointError

pytestmark = pytest.mark.clip
open_clip = pytest.importorskip("open_clip", reason="the clip extra (open_clip) is not installed")

from methods.open_clip_towers import OpenClipResNet  # noqa: E402

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8, "patch_size": None},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_dualcoop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dualcoop:rn50`` builds the tiny CLIP as its image-text towers for this test."""
    monkeypatch.setattr(type(get_adapter("dualcoop")), "clip_configs", {"rn50": TINY, "rn101": TINY})


def _towers(seed: int = 0) -> OpenClipResNet:
    torch.manual_seed(seed)
    towers = OpenClipResNet("tiny", TINY).eval()
    with torch.no_grad():  # open_clip zeroes every bn3 scale: random values keep each residual branch in play
        for m in towers.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    return towers


def test_region_features_shapes(tmp_path: Path) -> None:
    towers = _towers()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert towers.forward_regions(x).shape == (2, 1 + 2 * 2, 32)  # 64 px / stride 32: 2 x 2 regions + mean
        assert towers.forward_regions(torch.randn(1, 3, 128, 96)).shape == (1, 1 + 4 * 3, 32)
        assert towers.forward_image(x).shape == (2, 32)


def test_region_features_are_clips_attention_pool_without_the_attention() -> None:
    """CLIP's attention pool mixes exactly these per-region projections: with a uniform attention (zero query
    projection) its output is their mean; the mean token is region 0."""
    towers = _towers()
    pool = towers.clip.visual.attnpool
    with torch.no_grad():
        pool.q_proj.weight.zero_(), pool.q_proj.bias.zero_()
        x = torch.randn(2, 3, 64, 64)
        regions = towers.forward_regions(x)
        torch.testing.assert_close(regions.mean(dim=1), towers.clip.encode_image(x), atol=1e-5, rtol=1e-4)
        # At 128 px the 2 x 2 table is resized bicubically to 4 x 4 (DualCoOp's AttentionConv): the same identity
        # holds against CLIP's pool given that resized table.
        big = torch.randn(2, 3, 128, 128)
        pos = pool.positional_embedding.data.clone()
        grid = F.interpolate(pos[1:].T.reshape(1, -1, 2, 2), size=(4, 4), mode="bicubic", align_corners=False)
        pool.positional_embedding = nn.Parameter(torch.cat([pos[:1], grid.reshape(pos.shape[1], 16).T]))
        ref = towers.clip.visual(big)
        pool.positional_embedding = nn.Parameter(pos)
        torch.testing.assert_close(towers.forward_regions(big).mean(dim=1), ref, atol=1e-5, rtol=1e-4)


def test_clips_pool_output_is_the_global_tokens_attention_over_the_region_features() -> None:
    """With CLIP's own (non-uniform) attention: a one-head pool's output for the global (mean) token is exactly the
    mixture of the region features weighted by that token's attention, softmax(q_0 . k_j / sqrt(C))."""
    towers = _towers(1)
    visual = towers.clip.visual
    pool = visual.attnpool
    pool.num_heads = 1  # one head: its attention weights mix whole region features (c_proj is applied per token)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pool.q_proj.weight.mul_(30)  # a peaked attention (at init it is close to uniform)
        regions = towers.forward_regions(x)  # [B, 1 + HW, D]
        fmap = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))
        tokens = fmap.flatten(2).transpose(1, 2)
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + pool.positional_embedding
        q, k = pool.q_proj(tokens[:, 0]), pool.k_proj(tokens)  # the global token's query, every token's key
        attn = (torch.einsum("bc,bjc->bj", q, k) / tokens.shape[-1] ** 0.5).softmax(-1)
        assert (attn.amax(-1) > 1.5 * attn.amin(-1)).all()  # not uniform: not the trivial mean
        torch.testing.assert_close(
            torch.einsum("bj,bjd->bd", attn, regions), towers.clip.encode_image(x), atol=1e-5, rtol=1e-4
        )


def test_text_tower_on_token_embeddings_is_encode_text() -> None:
    towers = _towers()
    tokens = towers.tokenize(["a photo of a dog.", "X X X potted plant."])
    assert tokens.shape == (2, 77) and towers.token_count("potted plant.") == 3
    with torch.no_grad():
        torch.testing.assert_close(towers.encode_text(tokens), towers.clip.encode_text(tokens))
        emb = towers.embed_tokens(tokens)
        assert emb.shape == (2, 77, 32)
        torch.testing.assert_close(towers.encode_embedded(emb, tokens), towers.clip.encode_text(tokens))


def _openai_file(towers: OpenClipResNet, path: Path) -> dict[str, torch.Tensor]:
    """OpenAI's ``model.state_dict()``: fp16 tensors plus the three scalars ``clip.build_model`` deletes."""
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in towers.clip.state_dict().items()}
    sd.update(
        {k: torch.tensor(v) for k, v in (("input_resolution", 64), ("context_length", 77), ("vocab_size", 49408))}
    )
    torch.save(sd, path)
    return sd


def _same_towers(a: OpenClipResNet, b: OpenClipResNet) -> None:
    x = torch.randn(2, 3, 64, 64)
    tokens = a.tokenize(["a photo of a cake."])
    with torch.no_grad():
        torch.testing.assert_close(a.forward_regions(x), b.forward_regions(x), atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(a.encode_text(tokens), b.encode_text(tokens), atol=1e-4, rtol=1e-3)


def test_openai_state_dict_loads_strictly(tmp_path: Path, tiny_dualcoop: None) -> None:
    ref = _towers(seed=1)
    with torch.no_grad():  # the fp16 file is what gets loaded: round the reference the same way
        for t in ref.clip.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    path = tmp_path / "RN50.pt"
    sd = _openai_file(ref, path)
    enc = build_encoder("dualcoop:rn50", weights="random")
    assert enc.has_image_text
    towers = get_adapter("dualcoop").create_image_text(get_adapter("dualcoop").variant("rn50"), path, seed=0)
    _same_towers(towers, ref)
    rep = towers.load_report
    assert rep is not None and rep.matched == len(sd) - 3
    assert sorted(rep.dropped) == ["context_length", "input_resolution", "vocab_size"]
    assert any("float16 -> float32" in c for c in rep.converted)
    # A file with the visual tower alone cannot give DualCoOp its text tower.
    visual = tmp_path / "visual.pt"
    torch.save({k: v for k, v in sd.items() if k.startswith("visual.")}, visual)
    with pytest.raises(CheckpointError, match=r"visual\.pt: no text tower"):
        get_adapter("dualcoop").create_image_text(get_adapter("dualcoop").variant("rn50"), visual, seed=0)
    # A text tower of another width does not fit: refused naming the keys, not loaded loosely.
    bad = dict(sd)
    bad["ln_final.weight"] = torch.zeros(48, dtype=torch.float16)
    torch.save(bad, visual)
    with pytest.raises(CheckpointError, match="ln_final.weight"):
        get_adapter("dualcoop").create_image_text(get_adapter("dualcoop").variant("rn50"), visual, seed=0)


class _Archive(nn.Module):
    """OpenAI's archive holds CLIP's modules under these names; tracing keeps every tensor, the loader never runs
    the code, so a trivial forward gives the archive's data.pkl layout."""

    def __init__(self, towers: OpenClipResNet) -> None:
        super().__init__()
        clip = towers.clip
        self.visual, self.transformer, self.token_embedding, self.ln_final = (
            clip.visual,
            clip.transformer,
            clip.token_embedding,
            clip.ln_final,
        )
        self.positional_embedding, self.text_projection, self.logit_scale = (
            clip.positional_embedding,
            clip.text_projection,
            clip.logit_scale,
        )
        for name, value in (("input_resolution", 64), ("context_length", 77), ("vocab_size", 49408)):
            self.register_buffer(name, torch.tensor(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_torchscript_archive_is_read_without_running_it(tmp_path: Path, tiny_dualcoop: None) -> None:
    ref = _towers(seed=2)
    path = tmp_path / "RN50.pt"
    torch.jit.trace(_Archive(ref), torch.ones(1)).save(str(path))
    adapter = get_adapter("dualcoop")
    towers = adapter.create_image_text(adapter.variant("rn50"), path, seed=0)
    _same_towers(towers, ref)


def test_random_towers_are_seeded_and_leave_the_global_rng_alone(tiny_dualcoop: None) -> None:
    enc = build_encoder("dualcoop:rn50", weights="random", seed=3)
    state = torch.random.get_rng_state()
    a = enc.image_text()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert enc.image_text() is a and not any(p.requires_grad for p in a.parameters())
    b = build_encoder("dualcoop:rn50", weights="random", seed=3).image_text()
    torch.testing.assert_close(a.clip.token_embedding.weight, b.clip.token_embedding.weight)
