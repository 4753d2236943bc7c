"""SelfPatch (Yun et al., CVPR 2022): DINO + patch-level self-supervision, ViT-S/16.

The backbone differs from DINO's ViT: it has **no class token and no final norm**, and its ``pos_embed`` is
``[1, 196, 384]`` (patch tokens only). The image-level token lives in the head ``ca_head``: a learned CLS
token refined by two CaiT-style class-attention blocks over the patch tokens, then a LayerNorm. We use that
head for ``forward_global`` (it is what SelfPatch trains its image-level DINO loss on); per-block probes use
avg-pooled patch tokens since the backbone carries no CLS. The released file is a DINO-style training
checkpoint: ``teacher`` holds ``backbone.*``, ``ca_head.*`` and two projection heads ``c_head.*``/``p_head.*``.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from methods.base import MethodAdapter, OfficialLayout, Paper, Variant
from methods.dino import DINO_HEAD, DINO_TRAINING


class _ClassAttentionProj(nn.Module):
    """Separate q/k/v projections and the output projection, named as in the released keys (``attn.q.weight``...)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))


class ClassAttentionBlock(nn.Module):
    """Pre-norm class-attention block: only the CLS query attends to [CLS; patches]. ``x_cls [B,1,C]``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _ClassAttentionProj(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, x_cls: torch.Tensor) -> torch.Tensor:
        u = self.norm1(torch.cat([x_cls, x], dim=1))  # [B, 1+N, C]
        b, n, c = u.shape
        h = self.num_heads
        q = self.attn.q(u[:, :1]).reshape(b, 1, h, c // h).transpose(1, 2)  # [B, h, 1, c/h]
        k = self.attn.k(u).reshape(b, n, h, c // h).transpose(1, 2)
        v = self.attn.v(u).reshape(b, n, h, c // h).transpose(1, 2)
        attn = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        x_cls = x_cls + self.attn.proj(attn.transpose(1, 2).reshape(b, 1, c))
        return x_cls + self.mlp(self.norm2(x_cls))


class ClassAttentionHead(nn.Module):
    """SelfPatch's ``ca_head``: patch tokens ``[B, N, C]`` -> normalised CLS embedding ``[B, C]``."""

    def __init__(self, dim: int, num_heads: int, depth: int = 2) -> None:
        super().__init__()
        self.embed_dim = dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_blocks = nn.ModuleList([ClassAttentionBlock(dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for blk in self.cls_blocks:
            cls = blk(x, cls)
        # SelfPatch normalises cat([cls, x]); LayerNorm is per token, so norm(cls) is the same CLS output.
        return self.norm(cls)[:, 0]


class SelfPatch(MethodAdapter):
    name = "selfpatch"
    paper = Paper(
        title="Patch-level Representation Learning for Self-supervised Vision Transformers",
        arxiv="2206.07990",
        code_url="https://github.com/alinlab/SelfPatch",
        venue="CVPR 2022",
    )
    variants = (
        Variant(
            name="vits16",
            arch="vit_small_patch16_224",
            # Released on Google Drive only (file dino_selfpatch.pth): no stable URL to pin; pass --weights PATH.
            model_kwargs={"class_token": False, "global_pool": "avg", "fc_norm": False, "final_norm": False},
            file_name="dino_selfpatch.pth",
            license="Apache-2.0",
            checkpoint_keys=("teacher",),
            strip_prefixes=("module.", "backbone."),
            drop=("c_head.*", "p_head.*"),  # image- and patch-level DINO projection heads
            # DINO's save_dict; the teacher holds backbone.*, the class-attention ca_head.* and two DINOHeads.
            official_layouts=(
                OfficialLayout(
                    name="training",
                    key="teacher",
                    extra_weights=tuple(k.replace("head.", p, 1) for p in ("c_head.", "p_head.") for k in DINO_HEAD),
                    copies=(("student", "module."),),
                    extras={
                        **DINO_TRAINING.extras,
                        "args": argparse.Namespace(arch="vit_small", k_num=4, out_dim=65536),
                    },
                ),
            ),
            params_m=25.2,
            notes="no CLS in the backbone: forward_global = ca_head (class attention); probes avg-pool patches",
        ),
    )

    def create_global_head(self, variant: Variant, model: nn.Module) -> nn.Module:
        vit: Any = model  # timm VisionTransformer
        return ClassAttentionHead(vit.embed_dim, num_heads=len(vit.blocks) and vit.blocks[0].attn.num_heads)

    def convert(self, sd: dict[str, torch.Tensor], variant: Variant) -> tuple[dict[str, torch.Tensor], list[str]]:
        if not any(k.startswith("ca_head.") for k in sd):
            return sd, []
        renamed = {
            ("global_head." + k.removeprefix("ca_head.") if k.startswith("ca_head.") else k): v for k, v in sd.items()
        }
        return renamed, ["ca_head.* -> global_head.* (class-attention head used by forward_global)"]

    def to_official(self, sd: dict[str, torch.Tensor], variant: Variant) -> dict[str, torch.Tensor]:
        # The teacher is a MultiCropWrapper: the ViT under backbone., the class-attention head beside it as ca_head.
        return {
            ("ca_head." + k.removeprefix("global_head.") if k.startswith("global_head.") else "backbone." + k): v
            for k, v in sd.items()
        }
