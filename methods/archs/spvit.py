"""SP-ViT (Zhou et al., BMVC 2022): LV-ViT with Spatial Prior-enhanced Self-Attention, as timm models.

Registered names: ``spvit_s``, ``spvit_m``, ``spvit_l`` (the paper's models) and ``spvit_l_public`` (what the
public code's ``lvvit_l`` really builds, see below). The official code registers ``lvvit_s``/``lvvit_m``/``lvvit_l``
into timm, which would collide with names timm may own, hence the ``spvit_`` prefix.

Written from the official code (ZhouYuxuanYX/SP-ViT-Learning-2D-Spatial-Priors-for-Vision-Transformers,
``tlt/models/spvit.py`` and ``tlt/models/layers.py``, Apache-2.0); module and parameter names equal the official
ones, so released state dicts load without renaming:

- ``patch_embed``: LV-ViT's stem, ``conv1`` 7x7/2 -> ``conv2`` 3x3 -> ``conv3`` 3x3 (each with BatchNorm ``bn1..3``
  and ReLU; 64 channels, 128 for L) then ``proj``, a (p/2)x(p/2) conv with stride p/2: ``[B, 3, H, W] -> [B, D, H/p,
  W/p]``.
- ``pos_embed``: learned, ``[1, N, D]`` **without** a CLS slot when ``local_up_to_layer > 0`` (every released model).
  The CLS token joins the sequence only in front of block ``local_up_to_layer``.
- ``blocks.i``: pre-norm block whose residual branches are divided by ``skip_lam``; blocks ``i < local_up_to_layer``
  use SP-SA (``attn.qk``, ``attn.v``, ``attn.w1``, ``attn.w2``, ``attn.b2``, ``attn.proj``), the others plain MHSA
  (``attn.qkv``, ``attn.proj``). Every block ends with ``pos_block.proj.0``, a CPVT-style depthwise 3x3 conv added
  to the patch tokens (the CLS token is passed through).
- ``norm``, then ``head`` on the CLS token and ``aux_head`` (token labelling) on the patch tokens; the official
  inference logits are ``head(cls) + 0.5 * max_n aux_head(patch_n)``.

SP-SA (``SpatialPriorAttention``): ``attn = softmax((q k^T / sqrt(d)) * P)`` where the prior multiplies the logits,
``P_h(i, j) = sum_m w2[h, m] * relu(w1(dx, dy))[h, m] + b2[h]`` and ``(dx, dy) = (x_j - x_i, y_j - y_i)`` is the
offset from query patch i to key patch j. ``w2`` starts at 0 and ``b2`` at 1, so an untrained prior is all ones.

Where this code differs from the official one (outputs are equal wherever the official code runs):
- The official ``PosCNN`` decides whether a CLS token is present by ``N % 2 == 1``, and SP-SA and ``PosCNN`` take
  the grid side as ``int(sqrt(N))``; that breaks for odd patch counts and non-square inputs. Here the grid is passed
  down explicitly and the CLS token is present exactly from block ``local_up_to_layer`` on.
- The official SP-SA runs ``w1`` over all N^2 query/key pairs. ``P`` depends on the offset only, so it is evaluated
  once per distinct offset ((2H-1)(2W-1) of them) and gathered to ``[heads, N, N]``: same values, ~N/4 x less work.
- ``dynamic_img_size=True`` resamples ``pos_embed`` to the input's grid (bicubic), so any input size divisible by
  the patch size runs; the official model is built for one ``img_size``.

The public ``lvvit_l`` pitfall: it passes ``order=['tr'] * 24``, and that path builds every block through
``get_block`` without ``use_psa``, so the public code's SP-ViT-L has **no SP-SA layer** (all blocks have
``attn.qkv``), while its training script still passes ``--local_up_to_layer 22`` (CLS joins at block 22, ``pos_embed``
without CLS slot). ``spvit_l`` builds the paper's model (SP-SA in blocks 0-21); ``spvit_l_public`` (or
``use_spsa=False``) builds the public code's graph. A checkpoint tells which one it is: ``blocks.0.attn.qk.weight``
versus ``blocks.0.attn.qkv.weight``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, resample_abs_pos_embed, to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from methods.errors import VitbenchError

__all__ = ["SPViT", "SpatialPriorAttention", "SPViTBlock", "ConvStemPatchEmbed"]


# ------------------------------------------------------------------------------------------------ layers
class ConvStemPatchEmbed(nn.Module):
    """LV-ViT's 4-conv patch embedding: ``[B, C_in, H, W] -> [B, D, H/p, W/p]`` (NCHW, as the official code)."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 384,
        stem_chs: int = 64,
    ) -> None:
        super().__init__()
        if patch_size % 2:
            raise ValueError(f"SP-ViT's stem halves the image first: patch_size must be even, got {patch_size}")
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.conv1 = nn.Conv2d(in_chans, stem_chs, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.conv2 = nn.Conv2d(stem_chs, stem_chs, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_chs)
        self.conv3 = nn.Conv2d(stem_chs, stem_chs, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(stem_chs)
        half = patch_size // 2
        self.proj = nn.Conv2d(stem_chs, embed_dim, kernel_size=half, stride=half)

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        """Token grid for an input of ``img_size``: conv1 gives ceil(H/2), the projection floors by p/2."""
        half = self.patch_size[0] // 2
        return math.ceil(img_size[0] / 2) // half, math.ceil(img_size[1] / 2) // half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.proj(x)


def _relative_offset_index(grid: tuple[int, int], device: torch.device) -> torch.Tensor:
    """``[N, N]`` index into the ``(2H-1) x (2W-1)`` offset table of the offset from query i to key j (row-major)."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[None, :] - ys[:, None] + (h - 1)  # [query, key] -> y_key - y_query, shifted to >= 0
    dx = xs[None, :] - xs[:, None] + (w - 1)
    return dy * (2 * w - 1) + dx


class SpatialPriorAttention(nn.Module):
    """SP-SA: self-attention whose logits are multiplied by a learned 2D spatial prior. ``[B, N, C] -> [B, N, C]``.

    ``x`` holds the patch tokens of an ``(H, W)`` grid in row-major order (no CLS token: SP-ViT inserts it after
    the SP-SA blocks). See the module docstring for the formula.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qk = nn.Linear(dim, dim * 2, bias=qkv_bias)  # [q | k], each split into heads
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.w1 = nn.Linear(2, dim)  # (dx, dy) -> one hidden vector of dim/heads per head
        self.w2 = nn.Parameter(torch.zeros(dim, 1))  # per-head reduction of the hidden vector
        self.b2 = nn.Parameter(torch.ones(num_heads))
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def spatial_prior(self, grid: tuple[int, int]) -> torch.Tensor:
        """The prior ``P`` as ``[heads, N, N]`` (query, key) for an ``(H, W)`` grid."""
        h, w = grid
        weight = self.w1.weight
        dy, dx = torch.meshgrid(
            torch.arange(1 - h, h, device=weight.device), torch.arange(1 - w, w, device=weight.device), indexing="ij"
        )
        offsets = torch.stack([dx.flatten(), dy.flatten()], dim=-1).to(weight.dtype)  # w1 reads (dx, dy)
        hidden = F.relu(self.w1(offsets)).view(-1, self.num_heads, weight.shape[0] // self.num_heads)
        table = (hidden * self.w2.view(1, self.num_heads, -1)).sum(-1) + self.b2  # [(2H-1)(2W-1), heads]
        return table[_relative_offset_index(grid, weight.device)].permute(2, 0, 1)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        if n != grid[0] * grid[1]:
            raise ValueError(f"SP-SA expects the {grid[0]}x{grid[1]} patch tokens only, got {n} tokens")
        h = self.num_heads
        q, k = self.qk(x).reshape(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4)  # each [B, h, N, c/h]
        v = self.v(x).reshape(b, n, h, c // h).transpose(1, 2)
        logits = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop((logits * self.spatial_prior(grid)).softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))


class Attention(nn.Module):
    """Plain multi-head self-attention with the official key names (``qkv``, ``proj``). ``[B, N, C] -> [B, N, C]``.

    timm's convention: the fused kernel unless ``fused_attn`` is False, when the probabilities are computed and
    passed through the ``attn_drop`` module (where :meth:`methods.base.Encoder.attention_maps` hooks them).
    """

    fused_attn: bool

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.fused_attn = True
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.fused_attn:
            dropout = self.attn_drop.p if self.training else 0.0
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        else:
            x = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)) @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class PosConv(nn.Module):
    """CPVT position generator as SP-ViT applies it after every block: patch tokens += dwconv3x3(patch tokens)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim))

    def forward(self, x: torch.Tensor, grid: tuple[int, int], num_prefix: int) -> torch.Tensor:
        b, _, c = x.shape
        feat = x[:, num_prefix:].transpose(1, 2).reshape(b, c, grid[0], grid[1])
        feat = (self.proj(feat) + feat).flatten(2).transpose(1, 2)
        return torch.cat([x[:, :num_prefix], feat], dim=1) if num_prefix else feat


class SPViTBlock(nn.Module):
    """``x + attn(norm1(x)) / skip_lam``, ``x + mlp(norm2(x)) / skip_lam``, then the depthwise position conv.

    ``[B, P + H*W, C] -> same``; ``P`` (0 or 1 CLS token) is inferred from the token count and the grid.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 3.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        skip_lam: float = 1.0,
        use_spsa: bool = False,
    ) -> None:
        super().__init__()
        self.skip_lam = skip_lam
        self.use_spsa = use_spsa
        self.norm1 = norm_layer(dim)
        attn_cls = SpatialPriorAttention if use_spsa else Attention
        self.attn = attn_cls(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=proj_drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop)
        self.pos_block = PosConv(dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        num_prefix = x.shape[1] - grid[0] * grid[1]
        x = x + self.drop_path(self.attn(self.norm1(x), grid)) / self.skip_lam
        x = x + self.drop_path(self.mlp(self.norm2(x))) / self.skip_lam
        return self.pos_block(x, grid, num_prefix)


# ------------------------------------------------------------------------------------------------ the model
class SPViT(nn.Module):
    """SP-ViT / LV-ViT backbone with timm's model API.

    ``forward_features``: ``[B, 3, H, W] -> [B, 1 + N, D]`` (normalised, CLS first).
    ``forward_head(x, pre_logits=True)``: the CLS token (``global_pool='token'``) or the patch mean (``'avg'``).
    ``forward_intermediates``: per block, the patch tokens (``NCHW`` or ``NLC``) and, with
    ``return_prefix_tokens``, the CLS token; before block ``local_up_to_layer`` the CLS token is not in the
    sequence yet, so the learned ``cls_token`` it will enter with is returned.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        embed_dim: int = 384,
        depth: int = 16,
        num_heads: int = 6,
        mlp_ratio: float = 3.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        stem_chs: int = 64,
        skip_lam: float = 1.0,
        local_up_to_layer: int = 10,
        use_spsa: bool = True,
        aux_head: bool = True,
        dynamic_img_size: bool = False,
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        if not 0 <= local_up_to_layer < depth:
            raise ValueError(f"local_up_to_layer must be in [0, depth={depth}), got {local_up_to_layer}")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.local_up_to_layer = local_up_to_layer
        self.use_spsa = use_spsa
        self.use_aux_head = aux_head
        self.dynamic_img_size = dynamic_img_size
        self.grad_checkpointing = False

        self.patch_embed = ConvStemPatchEmbed(img_size, patch_size, in_chans, embed_dim, stem_chs)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # The official model gives pos_embed a CLS slot only when the CLS token is there from the start.
        self.num_pos_prefix = 1 if local_up_to_layer == 0 else 0
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_pos_prefix, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear decay, no tensor (meta-safe)
        self.blocks = nn.ModuleList(
            [
                SPViTBlock(
                    embed_dim,
                    num_heads,
                    mlp_ratio,
                    qkv_bias,
                    qk_scale,
                    drop_rate,
                    attn_drop_rate,
                    dpr[i],
                    nn.LayerNorm,
                    skip_lam,
                    use_spsa=use_spsa and i < local_up_to_layer,
                )
                for i in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(embed_dim)  # torch's default eps=1e-5, as the official code
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if aux_head:
            self.aux_head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=patch_size) for i in range(depth)]

        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # -- timm housekeeping ------------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable  # accepted for API compatibility; blocks take a grid argument

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if self.use_aux_head:
            self.aux_head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    # -- forward ----------------------------------------------------------------------------------------------
    def _pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        if grid == tuple(self.patch_embed.grid_size):
            return self.pos_embed
        if not self.dynamic_img_size:
            raise VitbenchError(
                f"input gives a {grid[0]}x{grid[1]} token grid but the model was built for "
                f"{self.patch_embed.grid_size}; build it with dynamic_img_size=True to resample pos_embed"
            )
        return resample_abs_pos_embed(
            self.pos_embed,
            new_size=list(grid),
            old_size=list(self.patch_embed.grid_size),
            num_prefix_tokens=self.num_pos_prefix,
        )

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``[B, 3, H, W] -> ([B, N (+1 if local_up_to_layer == 0), D], (H/p, W/p))``."""
        x = self.patch_embed(x)
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        x = x.flatten(2).transpose(1, 2)
        if self.local_up_to_layer == 0:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + self._pos_embed_for(grid)), grid

    def _block(self, i: int, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Block ``i``; the CLS token joins in front of block ``local_up_to_layer`` (when that is > 0)."""
        if i == self.local_up_to_layer and i > 0:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.blocks[i](x, grid)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, 1 + N, D]``, final norm applied."""
        x, grid = self._embed(x)
        for i in range(len(self.blocks)):
            x = self._block(i, x, grid)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, 1 + N, D] -> [B, D]`` (pre_logits) or logits ``head(cls) + 0.5 * max aux_head(patches)``."""
        feat = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens :].mean(dim=1)
        if pre_logits:
            return feat
        out = self.head(feat)
        if self.use_aux_head and self.num_classes > 0:
            out = out + 0.5 * self.aux_head(x[:, self.num_prefix_tokens :]).max(dim=1)[0]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Any] | tuple[torch.Tensor, list[Any]]:
        """timm's ``forward_intermediates`` (same arguments and return structure as ``VisionTransformer``'s).

        Returns per selected block ``[B, D, H/p, W/p]`` (NCHW) or ``[B, N, D]`` (NLC), paired with the ``[B, 1, D]``
        CLS token when ``return_prefix_tokens``; with ``intermediates_only=False`` also the final normed tokens.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError("output_fmt must be 'NCHW' or 'NLC'")
        take, max_index = feature_take_indices(len(self.blocks), indices)
        b = x.shape[0]
        x, grid = self._embed(x)
        patches, prefixes = [], []
        for i in range(max_index + 1 if stop_early else len(self.blocks)):
            x = self._block(i, x, grid)
            if i not in take:
                continue
            y = self.norm(x) if norm else x
            if i >= self.local_up_to_layer:  # the CLS token is in the sequence
                prefix, y = y[:, :1], y[:, 1:]
            else:  # CLS joins later: report the token it will enter with
                prefix = self.cls_token.expand(b, -1, -1)
                prefix = self.norm(prefix) if norm else prefix
            if output_fmt == "NCHW":
                y = y.reshape(b, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()
            patches.append(y)
            prefixes.append(prefix)
        out = list(zip(patches, prefixes)) if return_prefix_tokens else patches
        if intermediates_only:
            return out
        return self.norm(x), out

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()  # type: ignore[assignment]  # timm's own prune_intermediate_layers does the same
        if prune_head:
            self.reset_classifier(0)
        return take


# ------------------------------------------------------------------------------------------------ registration
def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",  # weights are GitHub release assets loaded by methods/spvit.py, not by timm
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "patch_embed.conv1",
        "classifier": "head",
        "license": "apache-2.0",
        **kwargs,
    }


# crop_pct as the official default_cfgs: 0.9 for S, 1.0 for M and L.
default_cfgs = generate_default_cfgs(
    {
        "spvit_s": _cfg(),
        "spvit_m": _cfg(crop_pct=1.0),
        "spvit_l": _cfg(crop_pct=1.0),
        "spvit_l_public": _cfg(crop_pct=1.0),
    }
)

# The official constructors' arguments plus the local_up_to_layer their training scripts pass (M: the default 10).
MODEL_ARGS: dict[str, dict[str, Any]] = {
    "spvit_s": dict(
        embed_dim=384, depth=16, num_heads=6, mlp_ratio=3.0, skip_lam=2.0, stem_chs=64, local_up_to_layer=14
    ),
    "spvit_m": dict(
        embed_dim=512, depth=20, num_heads=8, mlp_ratio=3.0, skip_lam=2.0, stem_chs=64, local_up_to_layer=10
    ),
    "spvit_l": dict(
        embed_dim=768, depth=24, num_heads=12, mlp_ratio=3.0, skip_lam=3.0, stem_chs=128, local_up_to_layer=22
    ),
    "spvit_l_public": dict(
        embed_dim=768,
        depth=24,
        num_heads=12,
        mlp_ratio=3.0,
        skip_lam=3.0,
        stem_chs=128,
        local_up_to_layer=22,
        use_spsa=False,
    ),
}


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> SPViT:
    if pretrained:
        raise VitbenchError(
            f"{variant}: timm has no weights for SP-ViT; load the official release through "
            "methods.spvit (vitbench run --method spvit --weights PATH)"
        )
    args = {"patch_size": 16, **MODEL_ARGS[variant], **kwargs}
    return build_model_with_cfg(
        SPViT, variant, pretrained, feature_cfg=dict(out_indices=3, feature_cls="getter"), **args
    )


@register_model
def spvit_s(pretrained: bool = False, **kwargs: Any) -> SPViT:
    """SP-ViT-S: 16 blocks, 384-d, 6 heads, SP-SA in blocks 0-13 (26M)."""
    return _create("spvit_s", pretrained, **kwargs)


@register_model
def spvit_m(pretrained: bool = False, **kwargs: Any) -> SPViT:
    """SP-ViT-M: 20 blocks, 512-d, 8 heads, SP-SA in blocks 0-9 (56M)."""
    return _create("spvit_m", pretrained, **kwargs)


@register_model
def spvit_l(pretrained: bool = False, **kwargs: Any) -> SPViT:
    """SP-ViT-L as in the paper: 24 blocks, 768-d, 12 heads, 128-channel stem, SP-SA in blocks 0-21 (150M)."""
    return _create("spvit_l", pretrained, **kwargs)


@register_model
def spvit_l_public(pretrained: bool = False, **kwargs: Any) -> SPViT:
    """SP-ViT-L as the public code builds it (``lvvit_l``): no SP-SA layer, CLS joins at block 22."""
    return _create("spvit_l_public", pretrained, **kwargs)
