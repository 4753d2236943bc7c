"""SGT (Ma et al., arXiv 2206.08567): a ViT whose self-attention is restricted to salient patches, with a last layer
over all patches. Supervised fine-tuning (medical and natural images). Neither code nor weights are public.

The architecture and what it assumes are in :mod:`methods.archs.sgt`. In short: ViT-S/16, top 64/196 patches kept,
blocks 0-10 masked, block 11 over all patches, the data flow of the authors' earlier EG-ViT code. The ``Encoder``
API cannot pass a saliency map, so the two variants differ only in where the map comes from. ``vits16`` has none,
so every patch is kept and the model is a plain ViT-S/16 (EG-ViT's evaluation mode). ``vits16-sr`` computes a
spectral-residual saliency map from the input, so masking is active. Checkpoints: EG-ViT's train script saves
``{'model': state_dict, 'args', 'optimizer', 'lr_scheduler', 'epoch'}`` with timm ViT keys (DDP may add
``module.``); we read the same layout. ``head.*`` (the task classifier) is dropped.
"""

from __future__ import annotations

import argparse

import methods.archs.sgt  # noqa: F401  (registers sgt_vit_small_patch16_224 with timm)
from methods.base import MethodAdapter, OfficialLayout, Paper, Variant, with_variant

_NOTES = (
    "no public code or weights; architecture assumed from the abstract + the authors' EG-ViT code (ViT-S/16, "
    "top 64/196 salient patches, blocks 0-10 masked, residual re-join + block 11 over all patches)"
)

_VITS16 = Variant(
    name="vits16",
    arch="sgt_vit_small_patch16_224",
    license="none (no code or weights released)",
    checkpoint_keys=("model", "state_dict"),
    strip_prefixes=("module.",),
    drop=("head.*",),
    # EG-ViT's main_siim.py: the DDP model (module.*, task classifier included) and training state.
    official_layouts=(
        OfficialLayout(
            name="eg-vit",
            key="model",
            prefix="module.",
            extra_weights=("module.head.weight", "module.head.bias"),
            extras={
                "args": argparse.Namespace(res_layer=11, gaze_mask_num=64),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "params": []}]},
                "lr_scheduler": {"last_epoch": 5},
                "epoch": 5,
            },
        ),
    ),
    params_m=21.7,
    data_config={"mean": (0.5, 0.5, 0.5), "std": (0.3, 0.3, 0.3), "interpolation": "bilinear", "crop_pct": 1.0},
    released=False,
    notes=_NOTES + "; no saliency map through the Encoder API, so all patches are kept (a plain ViT-S/16)",
)


class SGT(MethodAdapter):
    name = "sgt"
    lane = "supervised"
    paper = Paper(
        title="Rectify ViT Shortcut Learning by Visual Saliency",
        arxiv="2206.08567",
        code_url=None,
        venue="arXiv 2022",
    )
    variants = (
        _VITS16,
        with_variant(
            _VITS16,
            name="vits16-sr",
            model_kwargs={"saliency_model": "spectral_residual"},
            notes=_NOTES + "; saliency = spectral residual (Hou & Zhang 2007) of the input, a stand-in for "
            "the paper's unspecified saliency model",
        ),
    )
