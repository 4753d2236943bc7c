"""GC ViT (Hatamizadeh et al., ICML 2023): a supervised hierarchical ViT with local + global-query window attention.

The official checkpoints (HF ``nvidia/GCViT``, ``gcvit_1k_*.pth.tar``) are timm ``train.py`` files
``{epoch, arch, state_dict, optimizer, version, args: Namespace, amp_scaler?, state_dict_ema?, metric}`` with
NVlabs' names (``models/gc_vit.py``), which timm's from-scratch ``gcvit_*`` does not share and has no filter for:

| NVlabs                                                   | timm                                                   |
|----------------------------------------------------------|--------------------------------------------------------|
| ``patch_embed.proj``                                     | ``stem.conv1``                                         |
| ``patch_embed.conv_down.*`` (ReduceSize, keep_dim)       | ``stem.down.*`` (Downsample2d)                         |
| ``levels.{i}.downsample.*`` (end of level i)             | ``stages.{i+1}.downsample.*`` (start of stage i+1)     |
| ``levels.{i}.q_global_gen.to_q_global.{k}.conv.*``       | ``stages.{i}.global_block.blocks.conv{k+1}.*``         |
| ReduceSize/FeatExtract ``conv.{0,2.fc.0,2.fc.2,3}``      | MbConvBlock ``conv_dw, se.fc1, se.fc2, conv_pw``       |
| SE ``fc.{0,2}.weight`` Linear ``[o, i]``                 | SEModule ``fc{1,2}.weight`` 1x1 conv ``[o, i, 1, 1]``  |
| ``blocks.{j}.attn.relative_position_bias_table``         | ``blocks.{j}.attn.rel_pos.relative_position_bias_table``|
| ``blocks.{j}.attn.relative_position_index`` (buffer)     | — (checked to be the standard index, dropped)          |
| ``blocks.{j}.gamma{1,2}`` (layer scale: S, S2, B, L)     | ``blocks.{j}.ls{1,2}.gamma``                           |
| ``norm`` (after the last level)                          | ``stages.3.norm`` (inside the last stage)              |
| ``head`` (ImageNet classifier, on the avg-pooled norm)   | ``head.fc`` (dropped, or kept with ``classifier=True``) |

NVlabs' first code (2022-06, v1) kept ``levels.{i}.to_q_global`` on the level and built the global query with a
different tensor layout; its files are refused. Files already in timm's layout (timm's own converted weights) load
unchanged. forward_dense = the four stage outputs (strides 4..32, before the next stage's downsample, the last one
after the final norm), the features NVlabs' detection backbone taps (it adds its own per-level norms).

**Any input size** (:class:`AnySizeGCViT`). timm's model fixes its windows (7/7/14/7) and global queries from
``img_size`` (224), so a 800 x 1216 detection image or a 512 x 683 segmentation crop does not fit its window grid.
We keep the pretrained windows and do what NVlabs' detection backbone (``detection/models/gc_vit.py``) does at
other sizes: each block pads its input, after ``norm1``, to a multiple of its window (zeros on the bottom/right,
cropped after attention) and the global query, pooled by the same learned levels, is resized bicubically to the
window. Nothing is resampled, so features at 224 px are exactly timm's. NVlabs' detection backbone further
enlarges every window to 24 and resamples the relative-position tables bicubically: that is a fine-tuning choice
of their detector, which we do not make (the tables would no longer be the pretrained ones) -- a deviation to keep
in mind when comparing with their COCO numbers.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.gcvit import GlobalContextVit
from torch import nn

from methods.base import Classifier, MethodAdapter, OfficialLayout, Paper, Variant, with_variant
from methods.errors import CheckpointError

_HF = "https://huggingface.co/nvidia/GCViT/resolve/main/gcvit_1k_{}.pth.tar"  # NVlabs models/gc_vit.py, 2023-07+


def _notes(top1: str, earlier: str = "", prefix: str = "") -> str:
    """Which README version a number belongs to: the weights changed several times under the same names."""
    older = f"; older README tables ({earlier}) describe earlier releases" if earlier else ""
    return (
        f"{prefix}HF gcvit_1k_*.pth.tar = NVlabs' 2023-05-21 IN-1k release: README table of 2023-05, top-1 {top1} "
        f"(models/gc_vit.py cfgs point at HF instead of that release's Drive links since 2023-07-22){older}"
    )


_BUILT = "arch not in timm: timm's GlobalContextVit class with NVlabs' gc_vit_{} config. "
# Every variant is timm's GlobalContextVit class (as AnySizeGCViT) with these hyper-parameters: timm's gcvit_*
# builders' for the five timm has, NVlabs' (models/gc_vit.py @ 8e1941f) for the three it lacks (tiny2, small2, large).
ARCHS: dict[str, dict[str, Any]] = {
    "gcvit_xxtiny": dict(depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16)),
    "gcvit_xtiny": dict(depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16)),
    "gcvit_tiny": dict(depths=(3, 4, 19, 5), num_heads=(2, 4, 8, 16)),
    "gcvit_small": dict(depths=(3, 4, 19, 5), num_heads=(3, 6, 12, 24), embed_dim=96, mlp_ratio=2, layer_scale=1e-5),
    "gcvit_base": dict(depths=(3, 4, 19, 5), num_heads=(4, 8, 16, 32), embed_dim=128, mlp_ratio=2, layer_scale=1e-5),
    "gcvit_tiny2": dict(depths=(3, 4, 29, 5), num_heads=(2, 4, 8, 16), embed_dim=64, mlp_ratio=3),
    "gcvit_small2": dict(depths=(3, 4, 23, 5), num_heads=(3, 6, 12, 24), embed_dim=96, mlp_ratio=3, layer_scale=1e-5),
    "gcvit_large": dict(depths=(3, 4, 19, 5), num_heads=(6, 12, 24, 48), embed_dim=192, mlp_ratio=2, layer_scale=1e-5),
}


def _block(blk: Any, x: torch.Tensor, q_global: torch.Tensor) -> torch.Tensor:
    """timm's ``GlobalContextVitBlock`` on ``x [B, H, W, C]`` of any ``H, W``: windowed attention on the normed
    input padded (zeros, bottom/right) to the window multiple and cropped back, as NVlabs' GCViTBlock does; otherwise
    timm's forward."""
    _, h, w, _ = x.shape
    wh, ww = blk.window_size
    y = blk.norm1(x)
    pad_h, pad_w = -h % wh, -w % ww
    if pad_h or pad_w:
        y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
    y = blk._window_attn(y, q_global)[:, :h, :w]
    x = x + blk.drop_path1(blk.ls1(y))
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def _stage(stage: Any, x: torch.Tensor) -> torch.Tensor:
    """timm's ``GlobalContextVitStage`` on ``x [B, C, H, W]`` of any size: the global query (``[B, C, h, w]`` after
    the learned pooling levels) is resized bicubically to the window, as NVlabs' GlobalQueryGen does; at 224 px it
    already is."""
    x = stage.downsample(x)
    q = stage.global_block(x)
    window = tuple(stage.blocks[0].window_size)
    if tuple(q.shape[-2:]) != window:
        q = F.interpolate(q, size=window, mode="bicubic", align_corners=False)
    x = x.permute(0, 2, 3, 1)
    q = stage.global_norm(q.permute(0, 2, 3, 1))
    for blk in stage.blocks:
        x = _block(blk, x, q)
    return stage.norm(x).permute(0, 3, 1, 2).contiguous()


class AnySizeGCViT(GlobalContextVit):
    """timm's GlobalContextVit (same modules, names and weights) whose forward takes any input size whose sides are
    multiples of 32 (see the module docstring). ``forward_intermediates`` returns the stage outputs
    ``[B, C_i, H / 2^(i+2), W / 2^(i+2)]``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = _stage(stage, x)
        return x

    def forward_intermediates(  # type: ignore[override]
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        from timm.models._features import feature_take_indices

        if output_fmt != "NCHW":
            raise ValueError("GC ViT returns NCHW maps only")
        take, max_index = feature_take_indices(len(self.stages), indices)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            if stop_early and i > max_index:
                break
            x = _stage(stage, x)
            if i in take:
                outs.append(x)
        return outs if intermediates_only else (x, outs)


# The conv stack NVlabs' ReduceSize and FeatExtract share -> timm's MbConvBlock (dw 3x3, GELU, SE, pw 1x1).
_MBCONV = {
    "conv.0.weight": "conv_dw.weight",
    "conv.2.fc.0.weight": "se.fc1.weight",
    "conv.2.fc.2.weight": "se.fc2.weight",
    "conv.3.weight": "conv_pw.weight",
}
_REDUCE_OWN = ("reduction.weight", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")
_BLOCK = re.compile(
    r"levels\.(\d+)\.blocks\.(\d+)\.(norm[12]\.(?:weight|bias)|attn\.(?:qkv|proj)\.(?:weight|bias)"
    r"|mlp\.fc[12]\.(?:weight|bias)|attn\.relative_position_bias_table|gamma[12])$"
)


def _mbconv(suffix: str, v: torch.Tensor, key: str) -> tuple[str, torch.Tensor]:
    if suffix not in _MBCONV:
        raise CheckpointError(f"GC ViT: no timm name for NVlabs key {key}")
    if ".fc." in suffix:  # SE: nn.Linear [o, i] in NVlabs, 1x1 nn.Conv2d [o, i, 1, 1] in timm
        if v.ndim != 2:
            raise CheckpointError(f"GC ViT: {key} should be a Linear weight [o, i], got {list(v.shape)}")
        v = v[:, :, None, None]
    elif suffix == "conv.0.weight" and (v.ndim != 4 or v.shape[1] != 1):
        raise CheckpointError(f"GC ViT: {key} should be a depthwise conv [C, 1, 3, 3], got {list(v.shape)}")
    return _MBCONV[suffix], v


def _reduce(suffix: str, v: torch.Tensor, key: str) -> tuple[str, torch.Tensor]:
    """NVlabs ReduceSize (norm1, conv stack, strided reduction, norm2) -> timm Downsample2d."""
    if suffix in _REDUCE_OWN:
        return suffix, v
    name, v = _mbconv(suffix, v, key)
    return "conv_block." + name, v


@functools.cache
def _standard_index(w: int) -> torch.Tensor:
    from timm.layers import gen_relative_position_index

    return gen_relative_position_index((w, w)).view(w * w, w * w)


def _check_rel_index(key: str, index: torch.Tensor, table: torch.Tensor | None) -> None:
    """NVlabs stores the Swin relative-position index; timm recomputes it, so it must be the standard one."""
    w = int(round(index.shape[0] ** 0.5))
    if index.ndim != 2 or w * w != index.shape[0] or index.shape[0] != index.shape[1]:
        raise CheckpointError(f"GC ViT: {key} has shape {list(index.shape)}, expected [w*w, w*w]")
    if table is not None and table.shape[0] != (2 * w - 1) ** 2:
        raise CheckpointError(f"GC ViT: {key} is for a {w}x{w} window but its bias table has {table.shape[0]} rows")
    if not torch.equal(index.long(), _standard_index(w)):
        raise CheckpointError(f"GC ViT: {key} is not the standard {w}x{w} relative-position index timm computes")


def convert_nvlabs(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map an NVlabs GC ViT state dict to timm ``GlobalContextVit`` names (every key; shapes checked)."""
    if any(re.match(r"levels\.\d+\.to_q_global\.", k) for k in sd):
        raise CheckpointError(
            "GC ViT: this file has NVlabs' 2022-06 (v1) layout (levels.N.to_q_global): that code built the global "
            "query with a different tensor layout than later NVlabs code and timm, so it cannot be loaded faithfully"
        )
    last = max(int(m[1]) for k in sd if (m := re.match(r"levels\.(\d+)\.", k)))
    out: dict[str, torch.Tensor] = {}
    lines: dict[str, int] = {}
    for key, v in sd.items():
        if key.startswith("patch_embed.proj."):
            new, kind = "stem.conv1." + key.removeprefix("patch_embed.proj."), "patch_embed.proj -> stem.conv1"
        elif key.startswith("patch_embed.conv_down."):
            name, v = _reduce(key.removeprefix("patch_embed.conv_down."), v, key)
            new, kind = "stem.down." + name, "patch_embed.conv_down -> stem.down"
        elif m := re.match(r"levels\.(\d+)\.downsample\.(.+)$", key):
            name, v = _reduce(m[2], v, key)
            new, kind = f"stages.{int(m[1]) + 1}.downsample.{name}", "levels.i.downsample -> stages.i+1.downsample"
        elif m := re.match(r"levels\.(\d+)\.q_global_gen\.to_q_global\.(\d+)\.(.+)$", key):
            name, v = _mbconv(m[3], v, key)
            new = f"stages.{m[1]}.global_block.blocks.conv{int(m[2]) + 1}.{name}"
            kind = "levels.i.q_global_gen.to_q_global.k -> stages.i.global_block.blocks.conv(k+1)"
        elif m := re.match(r"levels\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_index$", key):
            _check_rel_index(key, v, sd.get(key.replace("relative_position_index", "relative_position_bias_table")))
            new, kind = key, "relative_position_index: checked to be the standard Swin index (timm recomputes it)"
        elif m := _BLOCK.match(key):
            part = m[3]
            if part == "attn.relative_position_bias_table":
                part = "attn.rel_pos.relative_position_bias_table"
                kind = "attn.relative_position_bias_table -> attn.rel_pos.*"
                if v.ndim != 2:
                    raise CheckpointError(f"GC ViT: {key} should be [(2w-1)^2, heads], got {list(v.shape)}")
            elif part.startswith("gamma"):
                part, kind = f"ls{part[-1]}.gamma", "gamma1/gamma2 -> ls1.gamma/ls2.gamma (layer scale)"
            else:
                kind = "levels.i.blocks.j.{norm,attn.qkv,attn.proj,mlp} -> stages.i.blocks.j.* (same suffix)"
            new = f"stages.{m[1]}.blocks.{m[2]}.{part}"
        elif key in ("norm.weight", "norm.bias"):
            new, kind = f"stages.{last}.norm.{key.split('.')[1]}", f"norm -> stages.{last}.norm"
        elif key in ("head.weight", "head.bias"):  # timm's ClassifierHead pools, then its `fc` is NVlabs' `head`
            new, kind = "head.fc." + key.split(".")[1], "head -> head.fc (classifier)"
        else:
            new, kind = key, ""  # anything unknown: left for drop / the strict loader to name
        out[new] = v
        if kind:
            lines[kind] = lines.get(kind, 0) + 1
    return out, [f"{k} ({n} keys)" for k, n in lines.items()]


_MBCONV_INV = {v: k for k, v in _MBCONV.items()}


def _mbconv_to_nvlabs(name: str, v: torch.Tensor) -> tuple[str, torch.Tensor]:
    if name not in _MBCONV_INV:
        raise ValueError(f"GC ViT: no NVlabs name for timm key ...{name}")
    return _MBCONV_INV[name], (v[:, :, 0, 0] if ".fc" in name else v)  # SE 1x1 conv -> Linear


def _reduce_to_nvlabs(name: str, v: torch.Tensor) -> tuple[str, torch.Tensor]:
    return _mbconv_to_nvlabs(name.removeprefix("conv_block."), v) if name.startswith("conv_block.") else (name, v)


def to_nvlabs(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`convert_nvlabs`: timm ``GlobalContextVit`` names -> NVlabs', with the
    ``relative_position_index`` buffers NVlabs stores (the standard Swin index)."""
    last = max(int(m[1]) for k in sd if (m := re.match(r"stages\.(\d+)\.", k)))
    out: dict[str, torch.Tensor] = {}
    for key, v in sd.items():
        if key.startswith("stem.conv1."):
            out["patch_embed.proj." + key.removeprefix("stem.conv1.")] = v
        elif key.startswith("stem.down."):
            name, v = _reduce_to_nvlabs(key.removeprefix("stem.down."), v)
            out["patch_embed.conv_down." + name] = v
        elif m := re.match(r"stages\.(\d+)\.downsample\.(.+)$", key):
            name, v = _reduce_to_nvlabs(m[2], v)
            out[f"levels.{int(m[1]) - 1}.downsample.{name}"] = v
        elif m := re.match(r"stages\.(\d+)\.global_block\.blocks\.conv(\d+)\.(.+)$", key):
            name, v = _mbconv_to_nvlabs(m[3], v)
            out[f"levels.{m[1]}.q_global_gen.to_q_global.{int(m[2]) - 1}.{name}"] = v
        elif m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)$", key):
            block, part = f"levels.{m[1]}.blocks.{m[2]}.", m[3]
            if part == "attn.rel_pos.relative_position_bias_table":
                out[block + "attn.relative_position_bias_table"] = v
                w = (math.isqrt(v.shape[0]) + 1) // 2  # (2w-1)^2 rows
                out[block + "attn.relative_position_index"] = _standard_index(w).clone()
            elif m2 := re.fullmatch(r"ls([12])\.gamma", part):
                out[f"{block}gamma{m2[1]}"] = v
            else:
                out[block + part] = v
        elif key.startswith(f"stages.{last}.norm."):
            out["norm." + key.removeprefix(f"stages.{last}.norm.")] = v
        elif key.startswith("head.fc."):
            out["head." + key.removeprefix("head.fc.")] = v
        else:
            raise ValueError(f"GC ViT: no NVlabs name for timm key {key}")
    return out


# timm train.py's CheckpointSaver (NVlabs train.py, --model-ema --amp): the EMA and the raw weights, training state.
_TRAIN_PY = OfficialLayout(
    name="train.py",
    key="state_dict_ema",
    extra_weights=("head.weight", "head.bias"),
    copies=(("state_dict", ""),),
    extras={
        "epoch": 309,
        "arch": "gc_vit_xxtiny",
        "version": 2,
        "args": argparse.Namespace(model="gc_vit_xxtiny", lr=5e-3, model_ema=True, amp=True),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6, "betas": (0.9, 0.999), "params": []}]},
        "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
        "metric": 79.9,
    },
)

_XXTINY = Variant(
    name="xxtiny",
    arch="gcvit_xxtiny",
    weights_url=_HF.format("xxtiny"),
    file_name="gcvit_1k_xxtiny.pth.tar",
    license="CC-BY-NC-SA-4.0",
    # timm's train.py keeps the best epoch by the EMA's top-1 when trained with --model-ema (the README command),
    # so the EMA weights are what the reported accuracy measured; files without EMA fall back to state_dict.
    checkpoint_keys=("state_dict_ema", "state_dict"),
    strip_prefixes=("module.",),
    drop=("head.*", "levels.*.attn.relative_position_index"),  # classifier; index buffers timm recomputes
    dense_indices=(0, 1, 2, 3),
    # NVlabs' per-model eval crop (models/gc_vit.py default_cfgs, which validate.py resolves through timm's
    # resolve_data_config: bicubic, ImageNet mean/std, 224 px); variants below override crop_pct where it differs.
    data_config={"crop_pct": 1.0},
    official_layouts=(_TRAIN_PY,),
    classifier=Classifier(keys=("head.fc.weight", "head.fc.bias")),
    params_m=11.5,
    notes=_notes("79.9", "2022-07: 79.78, 2022-08: 79.80"),
)


class GCViT(MethodAdapter):
    name = "gcvit"
    paper = Paper(
        title="Global Context Vision Transformers",
        arxiv="2206.09959",
        code_url="https://github.com/NVlabs/GCVit",
        venue="ICML 2023",
    )
    lane = "supervised"
    variants = (
        _XXTINY,
        with_variant(
            _XXTINY,
            name="xtiny",
            arch="gcvit_xtiny",
            weights_url=_HF.format("xtiny"),
            file_name="gcvit_1k_xtiny.pth.tar",
            params_m=19.5,
            data_config={"crop_pct": 0.875},
            notes=_notes("82.0", "2022-07: 81.95, 2022-08: 82.04"),
        ),
        with_variant(
            _XXTINY,
            name="tiny",
            arch="gcvit_tiny",
            weights_url=_HF.format("tiny"),
            file_name="gcvit_1k_tiny.pth.tar",
            params_m=27.7,
            notes=_notes("83.5", "2022-06: 83.2, 2022-07: 83.37, 2022-08: 83.40"),
        ),
        with_variant(
            _XXTINY,
            name="small",
            arch="gcvit_small",
            weights_url=_HF.format("small"),
            file_name="gcvit_1k_small.pth.tar",
            params_m=50.3,
            data_config={"crop_pct": 0.875},
            notes=_notes("84.3", "2022-06: 83.9, 2022-07: 83.90, 2022-08: 83.95"),
        ),
        with_variant(
            _XXTINY,
            name="base",
            arch="gcvit_base",
            weights_url=_HF.format("base"),
            file_name="gcvit_1k_base.pth.tar",
            params_m=89.3,
            notes=_notes("85.0", "2022-06: 84.4, 2022-07/08: 84.47"),
        ),
        with_variant(
            _XXTINY,
            name="tiny2",
            arch="gcvit_tiny2",
            weights_url=_HF.format("tiny2"),
            file_name="gcvit_1k_tiny2.pth.tar",
            params_m=34.0,
            data_config={"crop_pct": 0.875},
            notes=_notes("83.7", "2023-02: 83.7", prefix=_BUILT.format("tiny2")),
        ),
        with_variant(
            _XXTINY,
            name="small2",
            arch="gcvit_small2",
            weights_url=_HF.format("small2"),
            file_name="gcvit_1k_small2.pth.tar",
            params_m=67.8,
            data_config={"crop_pct": 0.875},
            notes=_notes("84.8", "2023-02: 84.7", prefix=_BUILT.format("small2")),
        ),
        with_variant(
            _XXTINY,
            name="large",
            arch="gcvit_large",
            weights_url=_HF.format("large"),
            file_name="gcvit_1k_large.pth.tar",
            params_m=200.5,
            notes=_notes("85.7", "2022-11: 84.63, 2023-01: 84.8, 2023-02: 85.6", prefix=_BUILT.format("large")),
        ),
    )

    def create_model(self, variant: Variant) -> nn.Module:
        # Not the base hook: it adds ViT-only dynamic_img_size to any arch containing "vit", which GC ViT rejects.
        # img_size (224) fixes the windows (7/7/14/7) and global-query levels; AnySizeGCViT runs them at any size.
        return AnySizeGCViT(**{**ARCHS[variant.arch], "num_classes": 0, **variant.model_kwargs})

    def convert(self, sd: dict[str, torch.Tensor], variant: Variant) -> tuple[dict[str, torch.Tensor], list[str]]:
        if not any(k.startswith(("levels.", "patch_embed.")) for k in sd):
            return sd, []  # already timm's layout (e.g. timm's own converted gcvit_*.in1k weights)
        return convert_nvlabs(sd)

    def to_official(self, sd: dict[str, torch.Tensor], variant: Variant) -> dict[str, torch.Tensor]:
        return to_nvlabs(sd)
