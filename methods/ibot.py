"""iBOT (Zhou et al., ICLR 2022): self-distillation with masked image modeling and an online tokenizer.

Two layouts are released (bytedance/ibot README): the backbone file ``checkpoint_teacher.pth``, written by
``extract_backbone_weights.py`` as ``{'state_dict': {...}}`` with the ``backbone.`` prefix already removed, and the
full ``checkpoint.pth`` of ``main_ibot.py`` ``{'student', 'teacher', 'optimizer', 'epoch', 'args', 'ibot_loss'
(, 'fp16_scaler')}`` where the teacher (a ``MultiCropWrapper``, not DDP-wrapped for ViTs) has ``backbone.*`` and the
``iBOTHead`` ``head.*``. The ViT's names equal timm's. ``masked_embed`` (the [MASK] token of the masked-image-modeling
student) is not used on unmasked images and is dropped where a file carries it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from methods.base import MethodAdapter, OfficialLayout, Paper, Variant, with_variant
from methods.dino import DINO_HEAD, DINO_TRAINING

# main_ibot.py's save_dict: DINO's, with iBOTHead (a second weight-normed layer for patch tokens) and iBOT's loss.
_TRAINING = replace(
    DINO_TRAINING,
    extra_weights=(*DINO_HEAD, "head.last_layer2.weight_g", "head.last_layer2.weight_v"),
    extras={
        **{k: v for k, v in DINO_TRAINING.extras.items() if k != "dino_loss"},
        "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=8192, pred_ratio=0.3),
        "ibot_loss": {"center": torch.zeros(1, 8), "center2": torch.zeros(1, 1, 8)},
        "fp16_scaler": {"scale": 65536.0},
    },
)
# checkpoint_teacher.pth (extract_backbone_weights.py): {'state_dict': teacher backbone, `backbone.` removed}.
_BACKBONE = OfficialLayout(name="backbone", key="state_dict")

_URL = "https://lf3-nlp-opensource.bytetos.com/obj/nlp-opensource/archive/2022/ibot/{}/checkpoint_teacher.pth"
_VITS16 = Variant(
    name="vits16",
    arch="vit_small_patch16_224",
    weights_url=_URL.format("vits_16"),
    file_name="checkpoint_teacher.pth",
    license="Apache-2.0",
    checkpoint_keys=("teacher", "state_dict"),
    strip_prefixes=("module.", "backbone."),
    drop=("masked_embed", "head.*"),
    official_layouts=(_BACKBONE, _TRAINING),
    params_m=21.7,
    finetune_recipe="ibot",  # evaluation/README.md + run.sh imagenet_cls (BEiT's code)
    notes="teacher backbone (the README's 'backbone (t)'); sha256 not published",
)


class IBOT(MethodAdapter):
    name = "ibot"
    paper = Paper(
        title="iBOT: Image BERT Pre-Training with Online Tokenizer",
        arxiv="2111.07832",
        code_url="https://github.com/bytedance/ibot",
        venue="ICLR 2022",
    )
    variants = (
        _VITS16,
        with_variant(
            _VITS16, name="vitb16", arch="vit_base_patch16_224", weights_url=_URL.format("vitb_16"), params_m=85.8
        ),
    )
