"""DualCoOp (Sun, Hu, Saenko; NeurIPS 2022): prompt learning for multi-label recognition on a frozen CLIP ResNet.

The image encoder is OpenAI CLIP's ``ModifiedResNet`` visual tower (RN101 for partial labels, RN50 for zero-shot),
which timm builds as ``resnet{50,101}_clip``. DualCoOp releases no trained weights (its prompts are learned per
dataset), so the weights are OpenAI's CLIP release, in any of these layouts:

- OpenAI's ``RN50.pt`` / ``RN101.pt``: TorchScript archives. They are never run: ``read_checkpoint`` reads their
  tensors through the safe unpickler (:mod:`methods.torchscript`), and the sha256 pinned below is OpenAI's own
  (their download URL embeds it; ``clip._download`` checks it).
- a plain CLIP state dict: ``model.state_dict()`` / open_clip's converted files (``visual.*`` plus the text tower,
  which is dropped), or the visual tower alone without the ``visual.`` prefix;
- timm's own layout (``resnet50_clip.openai``), loaded unchanged.

``forward_global`` is CLIP's attention pool *with* its output projection ``c_proj`` (the 1024-d / 512-d embedding
that lives in text space); ``forward_dense`` is the four stage outputs (strides 4..32). DualCoOp itself does not pool:
``clip.build_model_conv_proj`` swaps the attention pool for ``AttentionConv``, which projects every location of the
last stage, ``c_proj(v_proj(x_hw + pos_hw))`` (no attention; ``pos`` bicubic-resized from 7x7 to input/32, e.g. 14x14
at its 448 px training size), plus the same for the mean token, giving ``[B, D, HW+1]`` region features that the
prompt logits aggregate by a class-wise softmax over regions.

DualCoOp itself needs CLIP's text tower too: :meth:`Encoder.image_text` builds the whole CLIP with open_clip
(:mod:`methods.open_clip_towers`, the ``clip`` extra) from the same file, OpenAI's names being open_clip's, and
gives the region features above (``forward_regions``) and the text tower on token embeddings. The open_clip model
config of each variant is :attr:`DualCoOp.clip_configs` (open_clip's own ``RN50`` / ``RN101``, shipped with the
package; tests put a tiny config dict there).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from torch import nn

from methods.base import EncoderSpec, MethodAdapter, OfficialLayout, Paper, Variant, with_variant
from methods.errors import CheckpointError, VitbenchError
from methods.image_text import ImageText
from methods.weights import read_checkpoint

_OPENAI = "https://openaipublic.azureedge.net/clip/models/{}/{}.pt"  # clip/clip.py _MODELS (DualCoOp's copy)
_RN50_SHA = "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"
_RN101_SHA = "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599"
_CONV = {"1": "conv1_1x1", "2": "conv2_kxk", "3": "conv3_1x1"}  # Bottleneck conv{n}/bn{n} -> timm ByobNet names
_POOL = {"positional_embedding": "pos_embed", "q_proj": "q", "k_proj": "k", "v_proj": "v", "c_proj": "proj"}
_POOL_INV = {v: k for k, v in _POOL.items()}


def _visual_key(key: str) -> str | None:
    """OpenAI ModifiedResNet name (without ``visual.``) -> timm ``resnet*_clip`` name; None if not a tower key."""
    if m := re.fullmatch(r"(conv|bn)([123])\.(.+)", key):  # the 3-conv stem
        return f"stem.conv{m[2]}.{'conv' if m[1] == 'conv' else 'bn'}.{m[3]}"
    if m := re.fullmatch(r"layer([1-4])\.(\d+)\.(conv|bn)([123])\.(.+)", key):
        return f"stages.{int(m[1]) - 1}.{m[2]}.{_CONV[m[4]]}.{'conv' if m[3] == 'conv' else 'bn'}.{m[5]}"
    if m := re.fullmatch(r"layer([1-4])\.(\d+)\.downsample\.([01])\.(.+)", key):  # ("-1" avgpool, "0" conv, "1" bn)
        return f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.conv.{'conv' if m[3] == '0' else 'bn'}.{m[4]}"
    if m := re.fullmatch(r"attnpool\.(positional_embedding|[qkvc]_proj)(\.weight|\.bias)?", key):
        return f"head.{_POOL[m[1]]}{m[2] or ''}"
    return None


def _openai_key(key: str) -> str:
    """The inverse of :func:`_visual_key`: timm ``resnet*_clip`` name -> OpenAI ModifiedResNet name."""
    if m := re.fullmatch(r"stem\.conv([123])\.(conv|bn)\.(.+)", key):
        return f"{m[2]}{m[1]}.{m[3]}"
    if m := re.fullmatch(r"stages\.(\d)\.(\d+)\.(conv[123])_(?:1x1|kxk)\.(conv|bn)\.(.+)", key):
        return f"layer{int(m[1]) + 1}.{m[2]}.{m[4]}{m[3][-1]}.{m[5]}"
    if m := re.fullmatch(r"stages\.(\d)\.(\d+)\.shortcut\.conv\.(conv|bn)\.(.+)", key):
        return f"layer{int(m[1]) + 1}.{m[2]}.downsample.{'0' if m[3] == 'conv' else '1'}.{m[4]}"
    if m := re.fullmatch(r"head\.(pos_embed|[qkv]|proj)(\.weight|\.bias)?", key):
        return f"attnpool.{_POOL_INV[m[1]]}{m[2] or ''}"
    raise ValueError(f"CLIP: no OpenAI name for timm key {key}")


class CLIPAttentionPool(nn.Module):
    """``forward_features [B, C, h, w] -> [B, D]``: CLIP's attention pool including ``c_proj`` (timm's
    ``pre_logits`` stops before it). The weights stay in ``model.head``: this holds a reference, not a copy."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        clip_resnet: Any = model  # timm ByobNet with CLIP's attention-pool head
        self.embed_dim = int(clip_resnet.head.out_features)
        # A tuple, so it is not registered as a submodule (no second copy of the weights).
        self._model: tuple[Any] = (clip_resnet,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._model[0].forward_head(x)


# CLIP's text tower and the scalars OpenAI's archive carries (clip.build_model deletes the last three).
_TEXT = (
    "transformer.*",
    "token_embedding.*",
    "ln_final.*",
    "positional_embedding",
    "text_projection",
    "logit_scale",
    "input_resolution",
    "context_length",
    "vocab_size",
)
# A CLIP `model.state_dict()` (open_clip's converted files; OpenAI's TorchScript archive holds the same names, in fp16,
# tests/methods/test_dualcoop.py writes one): the visual tower under `visual.` and the text tower's tensors.
_CLIP_STATE_DICT = OfficialLayout(
    name="clip-state-dict",
    prefix="visual.",
    extra_weights=(
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.0.ln_1.weight",
        "token_embedding.weight",
        "ln_final.weight",
        "ln_final.bias",
        *(k for k in _TEXT if "*" not in k),
    ),
)

_RN50 = Variant(
    name="rn50",
    arch="resnet50_clip",
    model_kwargs={"num_classes": 1024},  # the attention pool's c_proj: 2048 -> 1024 (CLIP embed_dim)
    weights_url=_OPENAI.format(_RN50_SHA, "RN50"),
    sha256=_RN50_SHA,
    file_name="RN50.pt",
    license="MIT",  # OpenAI CLIP's weights; the DualCoOp repository itself has no LICENSE file
    checkpoint_keys=("state_dict",),
    strip_prefixes=("module.",),
    drop=_TEXT,
    official_layouts=(_CLIP_STATE_DICT,),
    params_m=38.3,
    dense_indices=(1, 2, 3, 4),  # timm's feature_info: 0 = stem (stride 2), 1..4 = stages (strides 4..32)
    data_config={"mean": OPENAI_CLIP_MEAN, "std": OPENAI_CLIP_STD, "crop_pct": 1.0},  # CLIP: Resize + CenterCrop
    notes="DualCoOp's zero-shot backbone (COCO 48/17, NUS-WIDE; 224 px, 64+64 context tokens). No DualCoOp "
    "weights are released: these are OpenAI CLIP's. forward_global = attnpool incl. c_proj (1024-d); "
    "DualCoOp's region features = c_proj(v_proj(stage4 + pos)) per location, no attention (module doc).",
)


class DualCoOp(MethodAdapter):
    name = "dualcoop"
    paper = Paper(
        title="DualCoOp: Fast Adaptation to Multi-Label Recognition with Limited Annotations",
        arxiv="2206.09541",
        code_url="https://github.com/sunxm2357/DualCoOp",
        venue="NeurIPS 2022",
    )
    lane = "multimodal"
    variants = (
        _RN50,
        with_variant(
            _RN50,
            name="rn101",
            arch="resnet101_clip",
            model_kwargs={"num_classes": 512},
            weights_url=_OPENAI.format(_RN101_SHA, "RN101"),
            sha256=_RN101_SHA,
            file_name="RN101.pt",
            params_m=56.3,
            notes="DualCoOp's partial-label backbone (MS-COCO 2014, VOC2007; trained at 448 px, the "
            "attention pool's 7x7 pos embed resampled bicubically). No DualCoOp weights are released: "
            "these are OpenAI CLIP's. forward_global = attnpool incl. c_proj (512-d); DualCoOp's "
            "region features = c_proj(v_proj(stage4 + pos)) per location, no attention (module doc).",
        ),
    )

    def create_global_head(self, variant: Variant, model: nn.Module) -> nn.Module:
        return CLIPAttentionPool(model)

    # variant -> open_clip model config (a name of open_clip's model_configs, or a dict of that shape)
    clip_configs: ClassVar[dict[str, str | dict[str, Any]]] = {"rn50": "RN50", "rn101": "RN101"}

    def has_image_text(self, variant: Variant) -> bool:
        return variant.name in self.clip_configs

    def create_image_text(self, variant: Variant, weights: Path | None, seed: int) -> ImageText:
        try:
            from methods.open_clip_towers import OpenClipResNet
        except ImportError as err:
            raise VitbenchError(
                f"{self.name}:{variant.name}: its text tower is built by open_clip, which is not installed ({err}); "
                "install the clip extra: pip install -e '.[clip]'"
            ) from None
        config = self.clip_configs[variant.name]
        name = config if isinstance(config, str) else f"{variant.name}-custom"
        with torch.random.fork_rng(devices=[]):  # random towers are reproducible per seed, global RNG untouched
            torch.manual_seed(seed)
            towers = OpenClipResNet(name, config)
        if weights is not None:
            towers.load_openai(read_checkpoint(weights), weights)
        return towers.eval().requires_grad_(False)

    def make_spec(self, model: nn.Module, variant: Variant, head: nn.Module | None) -> EncoderSpec:
        return replace(super().make_spec(model, variant, head), global_pool="clip_attn_pool")

    def convert(self, sd: dict[str, torch.Tensor], variant: Variant) -> tuple[dict[str, torch.Tensor], list[str]]:
        prefix = "visual." if any(k.startswith("visual.") for k in sd) else ""
        out: dict[str, torch.Tensor] = {}
        n = 0
        for key, v in sd.items():
            new = _visual_key(key.removeprefix(prefix)) if key.startswith(prefix) else None
            if new is None:
                out[key] = v  # the text tower (dropped by the variant) or timm-layout keys
                continue
            if (new.endswith("conv.weight") and v.ndim != 4) or (new == "head.pos_embed" and v.ndim != 2):
                raise CheckpointError(f"CLIP: {key} has shape {list(v.shape)}, not a CLIP ResNet tensor")
            out[new] = v.float() if v.is_floating_point() else v  # OpenAI's archives store fp16
            n += 1
        if not n:
            return sd, []
        dtypes = "/".join(sorted({str(v.dtype).removeprefix("torch.") for k, v in sd.items() if k.startswith(prefix)}))
        return out, [f"{prefix or '<visual tower>'} ModifiedResNet -> timm {variant.arch} ({n} keys, {dtypes})"]

    def to_official(self, sd: dict[str, torch.Tensor], variant: Variant) -> dict[str, torch.Tensor]:
        # fp32 (open_clip's dtype): OpenAI's fp16 would round the weights, and the round trip compares to 1e-4.
        return {_openai_key(k): v for k, v in sd.items()}
