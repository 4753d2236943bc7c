"""The test-time blocking defense: where does the victim look, black that box out, classify again.

Saliency for the victim's top-1 class (``head(encoder.forward_global(x))``):

- gradient-weighted attention rollout (token-attention encoders, :func:`gradient_rollout`) from
  :meth:`methods.base.Encoder.attention_maps` and the gradients of the class score with respect to each map;
- Grad-CAM (others, :func:`gradcam`) from :meth:`methods.base.Encoder.forward_cam`.

The map is resized (bilinear) to the image, smoothed with a box filter, and a ``block_size`` box around its peak is
set to 0 in un-normalised pixel space (:func:`peak_boxes`, :func:`black_out`), as UCDvision/backdoor_transformer's
``test_time_defense.py`` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.backdoor.images import Normalizer
from methods import Encoder
from methods.errors import VitbenchError


def gradient_rollout(
    maps: list[torch.Tensor],
    grads: list[torch.Tensor],
    discard_ratio: float,
    num_prefix_tokens: int,
    cls_output: bool = True,
) -> torch.Tensor:
    """Relevance of each patch token for the output, ``[B, N_patches]``, from per-block attention
    ``maps[l]`` and its gradient ``grads[l]`` (``[B, heads, n_l, n_l]``, blocks in forward order).

    Per block: ``A = mean_heads(attention * gradient)``, negatives clipped to 0, the ``discard_ratio`` lowest
    entries of each image's ``n x n`` matrix set to 0; ``(A + I) / 2`` row-normalised; rolled out as
    ``R = A_L ... A_1``. A block that ran on the patch tokens only (SP-ViT's blocks before its CLS token joins) is
    placed in the patch part of the full matrix, its prefix rows left to the identity. The output row is the CLS
    token's (``R[:, 0, P:]``) when the embedding is the CLS token (``cls_output`` and a prefix token), else the
    mean of the patch rows (the embedding pools the patch tokens): ``R[:, P:, P:].mean(1)``.
    """
    n = max(m.shape[-1] for m in maps)
    b = maps[0].shape[0]
    eye = torch.eye(n, device=maps[0].device, dtype=torch.float32).expand(b, n, n)
    result = eye.clone()
    for attn, grad in zip(maps, grads, strict=True):
        fused = (attn.float() * grad.float()).mean(dim=1).clamp(min=0)  # [B, n_l, n_l]
        m = fused.shape[-1]
        flat = fused.reshape(b, -1).clone()
        k = int(flat.shape[1] * discard_ratio)
        if k:
            flat.scatter_(1, flat.topk(k, dim=1, largest=False).indices, 0.0)
        full = torch.zeros(b, n, n, device=flat.device)
        full[:, n - m :, n - m :] = flat.view(b, m, m)
        a = (full + eye) / 2
        result = (a / a.sum(dim=-1, keepdim=True)) @ result
    p = num_prefix_tokens
    return result[:, 0, p:] if cls_output and p else result[:, p:, p:].mean(dim=1)


def gradcam(fmap: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM ``[B, h, w]``: ``relu(sum_c mean_hw(grad_c) * fmap_c)`` from the final feature map
    ``[B, C, h, w]`` and the class score's gradient with respect to it."""
    weights = grad.float().mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * fmap.float()).sum(dim=1))


def saliency(
    encoder: Encoder,
    head: torch.nn.Module,
    x01: torch.Tensor,
    norm: Normalizer,
    method: str,
    discard_ratio: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(map [B, S, S] resized to the image, top-1 class [B])`` of pixel images ``x01 [B, 3, S, S]`` in [0, 1]."""
    x = norm(x01.float()).detach().requires_grad_(True)
    with torch.enable_grad():
        if method == "rollout":
            g, maps = encoder.attention_maps(x)
            logits = head(g.float())
            top = logits.argmax(dim=1)
            grads = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), maps)
            spec = encoder.spec
            rel = gradient_rollout(
                maps, list(grads), discard_ratio, spec.num_prefix_tokens, spec.global_pool == "token"
            )
            h, w = x.shape[-2] // encoder.spec.size_divisor, x.shape[-1] // encoder.spec.size_divisor
            small = rel.reshape(-1, h, w)
        elif method == "gradcam":
            g, fmap = encoder.forward_cam(x)
            logits = head(g.float())
            top = logits.argmax(dim=1)
            (grad,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), fmap)
            if not grad.any():  # a CLS-token embedding ignores the final patch tokens: no map to block by
                raise VitbenchError(
                    f"Grad-CAM: the global embedding of {encoder!r} ({encoder.spec.global_pool}) does not depend on "
                    "its final feature map; use defense=rollout"
                )
            small = gradcam(fmap, grad)
        else:
            raise ValueError(f"unknown saliency method {method!r}")
    big = F.interpolate(small.detach()[:, None], size=x01.shape[-2:], mode="bilinear", align_corners=False)
    return big[:, 0], top.detach()


def peak_boxes(sal: torch.Tensor, filter_size: int, block_size: int, border: str) -> torch.Tensor:
    """``int64 [B, 4]`` boxes ``(y0, y1, x0, x1)`` (half-open) of side ``block_size`` around the argmax of ``sal
    [B, H, W]`` smoothed by a ``filter_size`` box filter (zero padding ``filter_size // 2``: same size).

    The box starts ``block_size // 2`` before the peak. At a border, ``shift`` moves it inside the image (always
    ``block_size`` wide, [BT]'s rule); ``clip`` cuts it at the border.
    """
    b, h, w = sal.shape
    kernel = torch.ones(1, 1, filter_size, filter_size, device=sal.device, dtype=torch.float32)
    smooth = F.conv2d(sal[:, None].float(), kernel, padding=filter_size // 2)[:, 0]
    idx = smooth.reshape(b, -1).argmax(dim=1)
    py, px = idx // w, idx % w
    boxes = []
    for y, x in zip(py.tolist(), px.tolist(), strict=True):
        y0, x0 = y - block_size // 2, x - block_size // 2
        if border == "shift":
            y0, x0 = min(max(y0, 0), h - block_size), min(max(x0, 0), w - block_size)
            boxes.append((y0, y0 + block_size, x0, x0 + block_size))
        else:
            boxes.append((max(y0, 0), min(y0 + block_size, h), max(x0, 0), min(x0 + block_size, w)))
    return torch.tensor(boxes, dtype=torch.int64).reshape(b, 4)


def black_out(x01: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """A copy of pixel images ``[B, 3, H, W]`` with each image's box ``(y0, y1, x0, x1)`` set to 0 (black)."""
    out = x01.clone()
    for i, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
        out[i, :, y0:y1, x0:x1] = 0
    return out
