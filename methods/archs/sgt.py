"""SGT, the saliency-guided ViT (Ma et al., arXiv 2206.08567), as a timm model. No code or weights were released.

The paper's abstract gives the design: a computational saliency model predicts a saliency map, the map selects the
most informative patches, self-attention runs among those patches only, and a residual connection in the last
encoder layer attends over all patches. Everything else is **assumed**. It is taken from EG-ViT, the eye-gaze
predecessor by the same first author, whose released code (MoMarky/Eye-gaze-Guided-Vision-Transformer, MIT,
``models/EGViT.py``) implements this design with gaze heatmaps where SGT uses saliency:

- Backbone: timm ViT-S/16 at 224 (EG-ViT: ``vit_small_patch16_224``). Parameter names are timm's ViT names.
- Selection: the map is resized bilinearly to the patch grid, and the ``keep_ratio`` highest patches are kept
  (EG-ViT keeps the 64 hottest of 196; its min-max normalisation does not change the ranking).
- Blocks ``0 .. masked_depth-1`` (default ``depth - 1``, EG-ViT's ``res_layer=11``) see only [CLS + kept patches].
  Here this is an attention mask on the keys, so masked patches get zero attention weight. For the CLS token and the
  kept patches this equals EG-ViT's dropping of the masked tokens, and it allows a different number of kept patches
  per image. EG-ViT inserts the raw ``cls_token`` in this stage, without its ``pos_embed`` term; we keep that.
- Residual: before block ``masked_depth`` every patch rejoins. A kept patch is its input embedding plus its processed
  state (EG-ViT's ``index_add_``), a masked patch is its input embedding, and the CLS token carries on. The remaining
  block(s) attend over all tokens.
- Without a saliency map the model is a plain ViT over all patches. EG-ViT evaluates this way, and trains so on
  half of the steps.
- Saliency comes in as an extra argument ``saliency`` (``[B, h, w]`` or ``[B, 1, h, w]``, any resolution, higher =
  more salient). With ``saliency_model='spectral_residual'`` the model computes it from the input instead, using
  the spectral-residual method (Hou & Zhang, CVPR 2007). That is a simple, parameter-free stand-in for the
  paper's unspecified saliency model.

``forward_intermediates`` with a saliency map reports, for blocks of the masked stage, the processed state of kept
patches and the unchanged input embedding of masked ones (what the residual carries).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from methods.errors import VitbenchError

__all__ = ["SaliencyGuidedViT", "saliency_keep_mask", "spectral_residual_saliency"]

SALIENCY_MODELS = (None, "spectral_residual")


def spectral_residual_saliency(x: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Spectral-residual saliency (Hou & Zhang 2007): ``[B, C, H, W] -> [B, 1, size, size]``, higher = salient.

    Grey image at ``size`` x ``size``; log amplitude spectrum minus its 3x3 local mean (the "spectral residual");
    back to the image domain with the original phase; squared magnitude; a 5x5 Gaussian blur (sigma 8).
    """
    grey = F.interpolate(
        x.float().mean(dim=1, keepdim=True), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    spec = torch.fft.fft2(grey)
    log_amp = torch.log(spec.abs().clamp_min(1e-8))
    residual = log_amp - F.avg_pool2d(F.pad(log_amp, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    sal = torch.fft.ifft2(torch.polar(torch.exp(residual), torch.angle(spec))).abs() ** 2
    t = torch.arange(5, dtype=sal.dtype, device=sal.device) - 2
    g = torch.exp(-(t**2) / (2 * 8.0**2))
    kernel = (g[:, None] * g[None, :] / (g.sum() ** 2))[None, None]
    return F.conv2d(F.pad(sal, (2, 2, 2, 2), mode="replicate"), kernel)


def saliency_keep_mask(saliency: torch.Tensor, grid: tuple[int, int], keep_ratio: float) -> torch.Tensor:
    """``[B, h, w]`` or ``[B, 1, h, w]`` saliency -> ``[B, H*W]`` bool, True for the kept (most salient) patches."""
    s = saliency[:, None] if saliency.ndim == 3 else saliency
    if s.ndim != 4 or s.shape[1] != 1:
        raise VitbenchError(f"saliency must be [B, h, w] or [B, 1, h, w], got {list(saliency.shape)}")
    s = s.float()
    if tuple(s.shape[-2:]) != tuple(grid):
        s = F.interpolate(s, size=grid, mode="bilinear", align_corners=False)
    s = s.flatten(1)
    n = s.shape[1]
    k = min(n, max(1, round(keep_ratio * n)))
    keep = torch.zeros_like(s, dtype=torch.bool)
    return keep.scatter_(1, s.topk(k, dim=1).indices, True)


class SaliencyGuidedViT(VisionTransformer):
    """timm ``VisionTransformer`` whose first ``masked_depth`` blocks attend over salient patches only.

    Every forward takes an optional ``saliency`` map; see the module docstring for what happens with and without it.
    """

    def __init__(
        self,
        *args: Any,
        masked_depth: int | None = None,
        keep_ratio: float = 64 / 196,
        saliency_model: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        depth = len(self.blocks)
        self.masked_depth = depth - 1 if masked_depth is None else masked_depth
        if not 0 < self.masked_depth < depth:
            raise ValueError(f"masked_depth must be in [1, depth-1={depth - 1}], got {self.masked_depth}")
        if self.cls_token is None or self.num_prefix_tokens != 1:
            raise ValueError("SGT needs exactly one prefix token (the CLS token)")
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        if saliency_model not in SALIENCY_MODELS:
            raise ValueError(f"saliency_model must be one of {SALIENCY_MODELS}, got {saliency_model!r}")
        self.keep_ratio = keep_ratio
        self.saliency_model = saliency_model

    # -- saliency -----------------------------------------------------------------------------------------------
    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        if self.dynamic_img_size:
            return tuple(self.patch_embed.dynamic_feat_size(x.shape[-2:]))
        return tuple(self.patch_embed.grid_size)

    def keep_mask(self, x: torch.Tensor, saliency: torch.Tensor | None = None) -> torch.Tensor | None:
        """``[B, N]`` bool of kept patches for image ``x`` (None: no saliency, every patch attends everywhere)."""
        if saliency is None and self.saliency_model == "spectral_residual":
            saliency = spectral_residual_saliency(x)
        if saliency is None:
            return None
        return saliency_keep_mask(saliency.to(x.device), self._grid(x), self.keep_ratio)

    # -- the saliency-guided forward ------------------------------------------------------------------------------
    def _guided_blocks(self, x: torch.Tensor, keep: torch.Tensor, last: int):
        """Yield ``(block index, [B, 1+N, D] tokens)`` after blocks ``0..last`` of the saliency-guided forward."""
        b = x.shape[0]
        tokens = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        emb = tokens[:, self.num_prefix_tokens :]  # patch embeddings (+ pos): the residual's source
        assert self.cls_token is not None  # SGT keeps timm's class token (built with class_token=True)
        cls = self.norm_pre(self.cls_token.expand(b, -1, -1))  # EG-ViT: the raw cls_token, no pos_embed term
        h = torch.cat([cls, emb], dim=1)
        attn_mask = torch.cat([keep.new_ones(b, 1), keep], dim=1)[:, None, None, :]  # [B, 1, 1, 1+N], keys only
        kept = keep[..., None]
        for i in range(min(self.masked_depth, last + 1)):
            h = self.blocks[i](h, attn_mask=attn_mask)
            yield i, torch.cat([h[:, :1], torch.where(kept, h[:, 1:], emb)], dim=1)
        if last < self.masked_depth:
            return
        h = torch.cat([h[:, :1], emb + torch.where(kept, h[:, 1:], torch.zeros_like(emb))], dim=1)
        for i in range(self.masked_depth, last + 1):
            h = self.blocks[i](h)
            yield i, h

    def forward_features(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        *,
        saliency: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, 1 + N, D]`` (normed). Saliency-guided when a map is given or computed."""
        keep = self.keep_mask(x, saliency) if attn_mask is None and not is_causal else None
        if keep is None:
            return super().forward_features(x, attn_mask=attn_mask, is_causal=is_causal)
        _, h = deque(self._guided_blocks(x, keep, len(self.blocks) - 1), maxlen=1)[0]  # the last block's output
        return self.norm(h)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        *,
        saliency: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # ``saliency`` is keyword-only, after VisionTransformer's own parameters, so the override keeps its signature.
        return self.forward_head(self.forward_features(x, attn_mask=attn_mask, is_causal=is_causal, saliency=saliency))

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
        saliency: torch.Tensor | None = None,
    ) -> Any:
        """timm's ``forward_intermediates`` plus ``saliency``; without one it is ``VisionTransformer``'s own."""
        keep = self.keep_mask(x, saliency) if attn_mask is None and not is_causal else None
        if keep is None:
            return super().forward_intermediates(
                x,
                indices=indices,
                return_prefix_tokens=return_prefix_tokens,
                norm=norm,
                stop_early=stop_early,
                output_fmt=output_fmt,
                intermediates_only=intermediates_only,
                output_dict=output_dict,
                attn_mask=attn_mask,
                is_causal=is_causal,
            )
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError("output_fmt must be 'NCHW' or 'NLC'")
        take, max_index = feature_take_indices(len(self.blocks), indices)
        b = x.shape[0]
        gh, gw = self._grid(x)
        last_index = max_index if stop_early else len(self.blocks) - 1
        inter, h = [], None
        for i, h in self._guided_blocks(x, keep, last_index):
            if i in take:
                inter.append(self.norm(h) if norm else h)
        prefix = [y[:, : self.num_prefix_tokens] for y in inter]
        inter = [y[:, self.num_prefix_tokens :] for y in inter]
        if output_fmt == "NCHW":
            inter = [y.reshape(b, gh, gw, -1).permute(0, 3, 1, 2).contiguous() for y in inter]
        if output_dict:
            out = {"image_intermediates": inter}
            if return_prefix_tokens:
                out["image_intermediates_prefix"] = prefix
            if not intermediates_only:
                out["image_features"] = self.norm(h)
            return out
        if return_prefix_tokens:
            inter = list(zip(inter, prefix))
        return inter if intermediates_only else (self.norm(h), inter)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    # EG-ViT's eval transform: resize to 224 (no crop), bilinear, Normalize(mean 0.5, std 0.3).
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "fixed_input_size": True,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.3, 0.3, 0.3),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"sgt_vit_small_patch16_224": _cfg()})


@register_model
def sgt_vit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> SaliencyGuidedViT:
    """SGT on ViT-S/16 (384-d, 12 blocks, 6 heads): blocks 0-10 on salient patches, block 11 on all."""
    if pretrained:
        raise VitbenchError("SGT has no released weights; pass --weights PATH to a checkpoint you trained")
    args = {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, **kwargs}
    out_indices = args.pop("out_indices", 3)
    return build_model_with_cfg(
        SaliencyGuidedViT,
        "sgt_vit_small_patch16_224",
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **args,
    )
