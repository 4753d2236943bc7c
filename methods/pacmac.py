"""PACMAC (Prabhu et al., NeurIPS 2022): adapting self-supervised ViTs across domains; its released backbones.

The released models are ViT-B/16s pretrained *in domain* on OfficeHome Clipart + Product (Google Drive only): one
by MAE (800 epochs from IN-1k MAE, ``main_pretrain.py`` = MAE's ``save_model``: ``{'model', 'optimizer', 'epoch',
'scaler', 'args'}`` with the whole ``MaskedAutoencoderViT``) and one by DINO (200 epochs; a DINO training checkpoint
whose ``teacher`` holds ``backbone.*`` + ``head.*``; DINO's training code is not in the repo). ``main_finetune.py``
reads ``checkpoint[--checkpoint_key]`` (``model`` by default, ``teacher`` for DINO) and strips ``module.`` and
``backbone.`` before loading into timm's ViT, which is what the variants declare.
"""

from __future__ import annotations

from methods.base import MethodAdapter, Paper, Variant, with_variant
from methods.dino import DINO_TRAINING
from methods.mae import MAE_DECODER_KEYS, MAE_TRAINING

_NOTE = "OfficeHome Clipart->Product in-domain {}; Google Drive only (no stable URL, no sha256): pass --weights PATH"
_MAE = Variant(
    name="vitb16-mae",
    arch="vit_base_patch16_224",
    license="CC-BY-NC-4.0",
    checkpoint_keys=("model",),
    strip_prefixes=("module.", "backbone."),
    drop=MAE_DECODER_KEYS,
    official_layouts=(MAE_TRAINING,),
    params_m=85.8,
    notes=_NOTE.format("MAE, 800 epochs"),
)


class PACMAC(MethodAdapter):
    name = "pacmac"
    paper = Paper(
        title="Adapting Self-Supervised Vision Transformers by Probing Attention-Conditioned Masking Consistency",
        arxiv="2206.08222",
        code_url="https://github.com/virajprabhu/PACMAC",
        venue="NeurIPS 2022",
    )
    variants = (
        _MAE,
        with_variant(
            _MAE,
            name="vitb16-dino",
            checkpoint_keys=("teacher",),
            drop=("head.*",),
            official_layouts=(DINO_TRAINING,),
            notes=_NOTE.format("DINO, 200 epochs") + "; layout assumed from DINO's main_dino.py",
        ),
    )
