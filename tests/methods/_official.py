"""Reference ViTs written from the authors' code (not timm), and the pieces of their official checkpoint layouts.

:func:`official_file` writes any variant's *declared* layout (:class:`methods.base.OfficialLayout`); the contract test
round-trips it for every variant, and :func:`assert_declared_layout` lets a per-method test check that the declaration
matches the file it builds by hand from the authors' code.

A parity test builds a reference here, saves it exactly as the method's training script saves it (wrappers,
prefixes, extra heads, optimizer entries, pickled configs), loads the file through ``build_encoder`` and compares
features. The reference computes attention by hand from its own parameters, so a lost bias, a wrong head count or a
mis-resampled position table shows up as a numeric difference rather than passing silently.

Methods that only release ViT-B are tested at a tiny width: :func:`shrink` swaps the registered variant's size
arguments for the duration of one test, and everything else (checkpoint key, prefixes, drops, conversion, spec)
runs through the real adapter.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from methods import Encoder, get_adapter
from methods.base import MethodAdapter, OfficialLayout, Variant

# The size a ViT-B-only method is parity-tested at: 2x2 tokens of 16 px, 4 blocks of width 64.
TINY: dict[str, Any] = {"embed_dim": 64, "depth": 4, "num_heads": 4, "img_size": 32}


def shrink(monkeypatch: pytest.MonkeyPatch, method: str, variant: str, **model_kwargs: Any) -> None:
    """Let ``build_encoder(method, variant)`` build a smaller model for this test only (same adapter otherwise)."""
    cls = type(get_adapter(method))
    variants = tuple(
        replace(v, model_kwargs={**v.model_kwargs, **model_kwargs}) if v.name == variant else v for v in cls.variants
    )
    monkeypatch.setattr(cls, "variants", variants)


# ------------------------------------------------------------------------------------------------ reference ViT
def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """``[1, 1 + grid**2, dim]``: a fixed 2D sin-cos table with a zero CLS slot (MoCo v3 / SDSSL / MAE style)."""
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij"
    )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    wx, wy = xs.reshape(-1, 1) * omega, ys.reshape(-1, 1) * omega
    table = torch.cat([wx.sin(), wx.cos(), wy.sin(), wy.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), table])[None]


class _Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Attention(nn.Module):
    """Multi-head self-attention. ``beit_bias``: no qkv bias, separate ``q_bias``/``v_bias`` and no key bias."""

    def __init__(self, dim: int, heads: int, beit_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=not beit_bias)
        if beit_bias:
            self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.heads
        bias = self.qkv.bias
        if bias is None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, h, c // h).unbind(2)  # each [B, N, h, d]
        attn = (torch.einsum("bqhd,bkhd->bhqk", q, k) * (c // h) ** -0.5).softmax(dim=-1)
        return self.proj(torch.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, beit_bias: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads, beit_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefViT(nn.Module):
    """A pre-norm ViT with a CLS token and the key names DINO/MAE/DeiT/iBOT/MoCo v3 save: ``cls_token``,
    ``pos_embed``, ``patch_embed.proj``, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``.

    Every parameter is random (norm scales and biases included) so each one matters. ``beit_bias`` gives MFM's
    attention; ``sincos`` a frozen sin-cos ``pos_embed``. An input whose patch grid differs from the table's is
    handled like DINO's ``interpolate_pos_encoding`` (bicubic, ``scale_factor`` with DINO's +0.1, no antialias).
    """

    def __init__(
        self,
        *,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        patch: int = 16,
        img: int = 32,
        in_chans: int = 3,
        beit_bias: bool = False,
        sincos: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        grid = img // patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim), requires_grad=not sincos)
        self.blocks = nn.ModuleList(_Block(dim, heads, beit_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.05 * torch.randn(p.shape, generator=gen))
            if sincos:
                self.pos_embed.copy_(sincos_2d(grid, dim))
        self.eval()

    def _pos(self, gh: int, gw: int) -> torch.Tensor:
        side = int((self.pos_embed.shape[1] - 1) ** 0.5)
        if (gh, gw) == (side, side):
            return self.pos_embed
        grid = self.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side), mode="bicubic")
        return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1)

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W]`` -> the ``[B, 1 + N, D]`` tokens after every block (no final norm)."""
        x = self.patch_embed.proj(x)
        gh, gw = x.shape[2:]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self._pos(gh, gw)
        outs = []
        for blk in self.blocks:
            x = blk(x)
            outs.append(x)
        return outs

    def dense(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Patch tokens of the given blocks as ``[B, D, H/p, W/p]`` maps."""
        gh, gw = x.shape[2] // self.patch_embed.proj.stride[0], x.shape[3] // self.patch_embed.proj.stride[1]
        outs = self.block_outputs(x)
        return [outs[i][:, 1:].transpose(1, 2).reshape(x.shape[0], -1, gh, gw) for i in indices]

    def cls(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: the normed CLS token (DINO/MAE/MoCo v3 linear-probe feature)."""
        return self.norm(self.block_outputs(x)[-1])[:, 0]

    def avg(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: the mean of the normed patch tokens."""
        return self.norm(self.block_outputs(x)[-1])[:, 1:].mean(dim=1)


def assert_parity(enc: Encoder, ref: RefViT, x: torch.Tensor, pool: str = "token") -> None:
    """``forward_dense`` and ``forward_global`` equal the reference's features to 1e-4."""
    with torch.no_grad():
        got, want = enc.forward_dense(x), ref.dense(x, enc.spec.indices)
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=0)
        expected = ref.cls(x) if pool == "token" else ref.avg(x)
        torch.testing.assert_close(enc.forward_global(x), expected, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------------ layout pieces
class DDP(nn.Module):
    """``DistributedDataParallel`` as far as ``state_dict`` can tell: every key gains ``module.``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def prefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


def dino_head(dim: int, out: int = 48, hidden: int = 32, bottleneck: int = 16) -> dict[str, torch.Tensor]:
    """DINOHead (also iBOT's): a 3-layer MLP and a weight-normed last layer (``weight_g``/``weight_v``)."""
    return {
        "mlp.0.weight": torch.randn(hidden, dim),
        "mlp.0.bias": torch.randn(hidden),
        "mlp.2.weight": torch.randn(hidden, hidden),
        "mlp.2.bias": torch.randn(hidden),
        "mlp.4.weight": torch.randn(bottleneck, hidden),
        "mlp.4.bias": torch.randn(bottleneck),
        "last_layer.weight_g": torch.ones(out, 1),
        "last_layer.weight_v": torch.randn(out, bottleneck),
    }


def mae_decoder(dim: int, grid: int, patch: int, dec_dim: int = 32) -> dict[str, torch.Tensor]:
    """The decoder half of MAE's ``MaskedAutoencoderViT`` (``models_mae.py``) under its ``state_dict()`` names."""
    m = nn.Module()
    m.decoder_embed = nn.Linear(dim, dec_dim)
    m.mask_token = nn.Parameter(torch.randn(1, 1, dec_dim) * 0.02)
    m.decoder_pos_embed = nn.Parameter(sincos_2d(grid, dec_dim), requires_grad=False)
    m.decoder_blocks = nn.ModuleList([_Block(dec_dim, 4, beit_bias=False)])
    m.decoder_norm = nn.LayerNorm(dec_dim, eps=1e-6)
    m.decoder_pred = nn.Linear(dec_dim, patch * patch * 3)
    return dict(m.state_dict())


def bn_mlp(layers: int, dim: int, hidden: int, out: int, last_bn: bool = True) -> nn.Sequential:
    """MoCo v3 / BYOL-style projector: (Linear no bias, BN, ReLU) x (layers - 1), Linear, BN without affine."""
    mods: list[nn.Module] = []
    for i in range(layers):
        d_in, d_out = dim if i == 0 else hidden, out if i == layers - 1 else hidden
        mods.append(nn.Linear(d_in, d_out, bias=False))
        if i < layers - 1:
            mods += [nn.BatchNorm1d(d_out), nn.ReLU()]
        elif last_bn:
            mods.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*mods)


def optimizer_state(module: nn.Module, step: bool = True) -> dict:
    """``AdamW.state_dict()`` of ``module``; after one zero-gradient step (parameters unchanged) when ``step``."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.0)
    if step:
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        for p in params:
            p.grad = None
    return opt.state_dict()


SCALER = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 7}


def namespace(**kwargs: Any) -> argparse.Namespace:
    """The ``args`` training scripts pickle next to the weights (paths included)."""
    return argparse.Namespace(output_dir=Path("/checkpoint/run"), seed=0, **kwargs)


def save(obj: Any, path: Path) -> Path:
    torch.save(obj, path)
    return path


# ------------------------------------------------------------------------------------------------ declared layouts
def official_file(
    adapter: MethodAdapter, variant: Variant, layout: OfficialLayout, sd: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """What the authors' code saves for a model whose weights, in our names, are ``sd``, following ``layout``.

    Other copies of the network hold ``weights + 1`` (a loader that picks the wrong one gives other features); extra
    weights hold placeholders, since the loader must drop them unread.
    """
    official = adapter.to_official(dict(sd), variant)
    entry = {layout.prefix + k: v for k, v in official.items()}
    # A classifier built in (build(classifier=True)) is in ``official`` already: its real tensors stay.
    entry |= {name: torch.zeros(2) for name in layout.extra_weights if name not in entry}
    others: dict[str, dict[str, torch.Tensor]] = {}
    for where, prefix in layout.copies:
        assert where is None or where != layout.key, f"{layout.name}: a copy cannot replace the weights' entry"
        copy = {prefix + k: (v + 1 if v.is_floating_point() else v) for k, v in official.items()}
        (entry if where is None else others.setdefault(where, {})).update(copy)
    if layout.key is None:
        assert not others and not layout.extras, f"{layout.name}: a flat file has no other top-level entries"
        return entry
    return {layout.key: entry, **others, **layout.extras}


def assert_declared_layout(method: str, variant: str, layout: str, handmade: dict[str, Any]) -> None:
    """``method:variant``'s declared ``layout`` writes the top-level entries of ``handmade`` (a file a test builds
    from the authors' code) and only weight names that ``handmade``'s weight entry has (declared extra weights may be
    a sample of the real ones). Call it under the same :func:`shrink` as the file, so block counts agree."""
    adapter = get_adapter(method)
    v = adapter.variant(variant)
    lay = next(x for x in v.official_layouts if x.name == layout)
    enc = adapter.build(variant, weights="random")
    declared = official_file(adapter, v, lay, {k.removeprefix("model."): t for k, t in enc.state_dict().items()})
    if lay.key is None:
        declared, handmade = {None: declared}, {None: handmade}
    assert set(handmade) <= set(declared), f"entries the declaration lacks: {sorted(set(handmade) - set(declared))}"
    missing = sorted(set(declared[lay.key]) - set(handmade[lay.key]))
    assert not missing, f"declared names the hand-made file does not have: {missing[:8]}"
