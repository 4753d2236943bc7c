"""ViT-VQGAN encoder + factorised code lookup (Yu et al., ICLR 2022), as timm models. No code or weights released.

ViT-VQGAN is the image tokenizer of VIM and of Parti (Parti uses the Small encoder with 8192 codes; its decoder is
enlarged and fine-tuned after encoder and codebook are frozen). This module has the encoder and the quantizer's
lookup only, no decoder. From the paper:

- a ViT over non-overlapping 8x8 patches: a 256x256 image gives 32x32 = 1024 tokens;
- at the output of the transformer blocks, a two-layer feed-forward network with a tanh in the middle, and no
  activation at the encoder's output (``out_ffn``);
- factorised codes: a linear projection from the encoder output to a low-dimensional lookup space (32-d), where the
  projected latents and the codebook vectors (8192) are l2-normalised. The code is the nearest normalised codebook
  vector, i.e. the one with the largest cosine similarity.
- sizes: Small has 8 blocks, width 512, 8 heads, MLP 2048; Base has 12 blocks, width 768, 12 heads, MLP 3072. These
  numbers are the paper's Table 1 as the unofficial thuanz123/enhancing-transformers configs reproduce it. The
  "Large" ViT-VQGAN pairs the Small encoder with a 32-block, 1280-wide decoder, so it has no encoder of its own.

**Assumed** (not stated in the paper's text as far as we know): timm's pre-norm ViT block (qkv bias, GELU MLP,
LayerNorm eps 1e-6), learned absolute position embeddings, no CLS token, a final LayerNorm before ``out_ffn``,
``out_ffn`` hidden width = the blocks' MLP width, and inputs scaled to [-1, 1] (mean = std = 0.5).

API: ``forward_features`` returns ``[B, N, D]`` = the pre-quantisation encoder output ``z_e``. ``forward_head``
(pre_logits) returns its token mean. ``forward_intermediates(norm=True)`` passes each block output through the
output stage (final LayerNorm + ``out_ffn``), so the last block's map equals ``z_e``. ``encode_latents`` gives the
normalised 32-d lookup latents, ``encode_codes`` the ``[B, H/8, W/8]`` code indices. Checkpoint layout: this
module's own ``state_dict()`` (timm ViT keys plus ``out_ffn.fc1/fc2``, ``quantizer.proj``,
``quantizer.codebook.weight``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from methods.errors import VitbenchError

__all__ = ["FactorizedQuantizer", "ViTVQGANEncoder"]


class FactorizedQuantizer(nn.Module):
    """Code lookup in a low-dimensional, l2-normalised space. ``z_e [..., D] -> codes [...]``."""

    def __init__(self, dim: int, code_dim: int = 32, num_codes: int = 8192) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, code_dim)  # the lookup projection
        self.codebook = nn.Embedding(num_codes, code_dim)
        trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        nn.init.normal_(self.codebook.weight)  # the paper initialises codes from a normal distribution

    def latents(self, z: torch.Tensor) -> torch.Tensor:
        """``[..., D] -> [..., code_dim]``: projected, l2-normalised lookup latents."""
        return F.normalize(self.proj(z), dim=-1)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest l2-normalised code. On the unit sphere ``|a - b|^2 = 2 - 2 a.b``: max cosine."""
        return (self.latents(z) @ F.normalize(self.codebook.weight, dim=-1).t()).argmax(dim=-1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_e [..., D] -> (quantised latents [..., code_dim] (normalised codes), codes [...])``."""
        codes = self.codes(z)
        return F.normalize(self.codebook(codes), dim=-1), codes


class ViTVQGANEncoder(VisionTransformer):
    """ViT-VQGAN's encoder (no CLS token) with its tanh output FFN and the factorised quantizer's lookup."""

    def __init__(self, *args: Any, code_dim: int = 32, num_codes: int = 8192, **kwargs: Any) -> None:
        kwargs.update(class_token=False, global_pool=kwargs.get("global_pool", "avg"), fc_norm=False)
        super().__init__(*args, **kwargs)
        dim = self.embed_dim
        first: Any = self.blocks[0]  # a timm Block
        hidden = int(first.mlp.fc1.out_features)
        self.out_ffn = Mlp(dim, hidden, act_layer=nn.Tanh)  # two layers, tanh between, no output activation
        self.quantizer = FactorizedQuantizer(dim, code_dim, num_codes)
        for lin in (self.out_ffn.fc1, self.out_ffn.fc2):
            trunc_normal_(lin.weight, std=0.02)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def output_stage(self, x: torch.Tensor) -> torch.Tensor:
        """Block output ``[B, N, D]`` -> encoder output ``z_e``: final LayerNorm, then the tanh FFN."""
        return self.out_ffn(self.norm(x))

    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        if self.dynamic_img_size:
            return tuple(self.patch_embed.dynamic_feat_size(x.shape[-2:]))
        return tuple(self.patch_embed.grid_size)

    def forward_features(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """``[B, 3, H, W] -> z_e [B, N, D]`` (pre-quantisation)."""
        h = self.patch_embed(x)
        h = self.norm_pre(self.patch_drop(self._pos_embed(h)))
        for blk in self.blocks:
            h = blk(h, attn_mask=attn_mask, is_causal=is_causal) if attn_mask is not None or is_causal else blk(h)
        return self.output_stage(h)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        output_dict: bool = False,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> Any:
        """``VisionTransformer``'s, except that ``norm=True`` applies the whole output stage (LayerNorm + tanh FFN)."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError("output_fmt must be 'NCHW' or 'NLC'")
        if output_dict:
            raise ValueError("output_dict=True is not supported by ViTVQGANEncoder")
        out: Any = super().forward_intermediates(
            x,
            indices=indices,
            norm=False,
            stop_early=stop_early,
            output_fmt="NLC",
            intermediates_only=False,
            attn_mask=attn_mask,
            is_causal=is_causal,
        )
        final, inter = out  # (norm(blocks(x)) [B, N, D], list of [B, N, D]) with intermediates_only=False
        if norm:
            inter = [self.output_stage(y) for y in inter]
        if output_fmt == "NCHW":
            gh, gw = self._grid(x)
            inter = [y.reshape(y.shape[0], gh, gw, -1).permute(0, 3, 1, 2).contiguous() for y in inter]
        if intermediates_only:
            return inter
        return self.out_ffn(final), inter  # the parent's final is norm(blocks(x))

    # -- tokenizer side ---------------------------------------------------------------------------------------
    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, N, code_dim]``: the normalised lookup latents."""
        return self.quantizer.latents(self.forward_features(x))

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, H/8, W/8]`` code indices (row-major token grid)."""
        gh, gw = self._grid(x)
        return self.quantizer.codes(self.forward_features(x)).reshape(x.shape[0], gh, gw)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, 256, 256),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "vit_vqgan_small_patch8_256": _cfg(),
        "vit_vqgan_base_patch8_256": _cfg(),
    }
)


def _create(variant: str, pretrained: bool, **kwargs: Any) -> ViTVQGANEncoder:
    if pretrained:
        raise VitbenchError("ViT-VQGAN has no released weights; pass --weights PATH to a checkpoint you trained")
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(
        ViTVQGANEncoder, variant, pretrained, feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **kwargs
    )


@register_model
def vit_vqgan_small_patch8_256(pretrained: bool = False, **kwargs: Any) -> ViTVQGANEncoder:
    """ViT-VQGAN Small encoder (Parti's tokenizer): 8 blocks, 512-d, 8 heads, MLP 2048; 32-d x 8192 codes."""
    args = {"img_size": 256, "patch_size": 8, "embed_dim": 512, "depth": 8, "num_heads": 8, "mlp_ratio": 4.0}
    return _create("vit_vqgan_small_patch8_256", pretrained, **{**args, **kwargs})


@register_model
def vit_vqgan_base_patch8_256(pretrained: bool = False, **kwargs: Any) -> ViTVQGANEncoder:
    """ViT-VQGAN Base encoder: 12 blocks, 768-d, 12 heads, MLP 3072; 32-d x 8192 codes."""
    args = {"img_size": 256, "patch_size": 8, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0}
    return _create("vit_vqgan_base_patch8_256", pretrained, **{**args, **kwargs})
