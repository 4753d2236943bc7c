"""CLIP ResNets built by open_clip, as an :class:`~methods.image_text.ImageText`: the one module importing open_clip.

open_clip builds the whole CLIP (``open_clip.model.CLIP``: the ``ModifiedResNet`` visual tower and the text
transformer) from a model config, either one of its own (``"RN50"``, ``"RN101"``: ``model_configs/*.json`` shipped
with the package, nothing downloaded) or a dict of the same shape (tests build a tiny CLIP that way). OpenAI's
ResNets use QuickGELU, so the model is built with ``quick_gelu=True``. Weights are OpenAI's key layout, which is
open_clip's (``visual.*``, ``transformer.*``, ``token_embedding.*``, ``positional_embedding``, ``ln_final.*``,
``text_projection``, ``logit_scale``); they are loaded strictly, in fp32 (OpenAI's files are fp16; DualCoOp calls
``clip_model.float()``), and the scalars OpenAI's archive carries (``input_resolution``, ``context_length``,
``vocab_size``) and the text tower's ``attn_mask`` attributes of its TorchScript archive are reported as dropped.

:meth:`OpenClipResNet.forward_regions` is DualCoOp's ``AttentionConv`` (``clip/model.py``,
``build_model_conv_proj``): CLIP's attention pool without the attention. Every location of the last stage, and the
mean token in front, gets the pool's positional embedding (bicubic-resized from its native grid when the input size
differs, e.g. 7 x 7 -> 14 x 14 at 448 px) and goes through the pool's value and output projections,
``c_proj(v_proj(x + pos))``: ``[B, 1 + h * w, D]`` region features in the text space. Because both projections are
affine and attention weights sum to one, CLIP's own pool output is an attention-weighted mixture of these features
per head; with a uniform attention (a zero query projection) it is exactly their mean, which the tests check against
open_clip's ``AttentionPool2d``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import text_global_pool

from methods.errors import CheckpointError
from methods.image_text import ImageText
from methods.weights import LoadReport, load_strict, select_state_dict, strip_prefixes

# Tensors of OpenAI's files that open_clip's CLIP does not hold (clip.build_model deletes the first three).
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size", "transformer.resblocks.*.attn_mask", "attn_mask")


def model_config(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """An open_clip model config: one of the package's own by name (``"RN50"``), or a dict of the same shape."""
    if isinstance(config, str):
        cfg = open_clip.get_model_config(config)
        if cfg is None:
            raise CheckpointError(f"open_clip has no model config named {config!r}")
        return dict(cfg)
    return dict(config)


class OpenClipResNet(ImageText):
    """An open_clip CLIP whose visual tower is a ``ModifiedResNet`` (RN50, RN101, ...)."""

    def __init__(self, name: str, config: str | Mapping[str, Any]) -> None:
        super().__init__()
        cfg = model_config(config)
        self.name = f"open_clip:{name}"
        self.clip = open_clip.model.CLIP(
            embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"], quick_gelu=True
        )
        if not isinstance(self.clip.visual, ModifiedResNet):
            raise CheckpointError(f"{self.name}: the visual tower is {type(self.clip.visual).__name__}, not a ResNet")
        self.embed_dim = int(cfg["embed_dim"])
        self.context_length = int(self.clip.context_length)
        self.token_width = int(self.clip.ln_final.weight.shape[0])
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=self.context_length)
        self.load_report = None

    # -- weights ------------------------------------------------------------------------------------------------
    def load_openai(self, ckpt: Any, path: Path | str) -> LoadReport:
        """Strictly load a full CLIP state dict in OpenAI's layout (an OpenAI archive's tensors, a
        ``model.state_dict()``, an open_clip file); a file without the text tower is refused naming what it lacks."""
        sd, key = select_state_dict(ckpt, ("state_dict",), path)
        sd, stripped = strip_prefixes(sd, ("module.",))
        if "token_embedding.weight" not in sd:
            raise CheckpointError(
                f"{path}: no text tower (token_embedding.weight missing): {self.name} needs a full CLIP checkpoint "
                "(OpenAI's RN50.pt / RN101.pt or an open_clip state dict), not the visual tower alone"
            )
        half = sorted({str(v.dtype).removeprefix("torch.") for v in sd.values() if v.is_floating_point()})
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
        report = LoadReport(checkpoint_key=key, stripped_prefixes=stripped)
        if half != ["float32"]:
            report.converted.append(f"{'/'.join(half)} -> float32 ({self.name}, as DualCoOp's clip_model.float())")
        load_strict(self.clip, sd, drop=OPENAI_EXTRAS, path=path, what=self.name, report=report)
        self.load_report = report
        return report

    # -- text -----------------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.clip.token_embedding.weight.device)

    def token_count(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.token_embedding(tokens)

    def encode_embedded(self, embedded: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        # open_clip's CLIP.encode_text from its second line on: it starts from token ids, we from their embeddings.
        clip = self.clip
        x = embedded + clip.positional_embedding.to(embedded.dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x)
        x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        proj = clip.text_projection
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj

    # -- image ----------------------------------------------------------------------------------------------------
    def forward_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images)

    def forward_regions(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        x = visual.stem(images)
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = layer(x)
        b, c, h, w = x.shape
        pool = visual.attnpool
        pos = pool.positional_embedding  # [1 + s * s, C]
        if pos.shape[0] != h * w + 1:  # DualCoOp's AttentionConv: bicubic resize of the spatial part
            s = round((pos.shape[0] - 1) ** 0.5)
            grid = pos[1:].T.reshape(1, c, s, s)
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:1], grid.reshape(c, h * w).T], dim=0)
        tokens = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1) + pos.to(tokens.dtype)
        return pool.c_proj(pool.v_proj(tokens))  # [B, 1 + HW, D]
