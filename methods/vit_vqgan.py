"""ViT-VQGAN (Yu et al., ICLR 2022), the image tokenizer of VIM and Parti. Its encoder and code lookup only.

Neither Google's code nor its weights are public (google-research/parti holds only PartiPrompts), so the variants
are ``released=False``: build with ``--weights random`` or a checkpoint trained with
:mod:`methods.archs.vit_vqgan`, whose own ``state_dict()`` is the layout read here (``{'state_dict': ...}`` or flat,
``module.`` stripped, a full autoencoder's ``decoder.*`` dropped). ``forward_global`` is the token mean of the
pre-quantisation encoder output ``z_e`` (no CLS token). ``forward_dense`` maps go through the encoder's output stage
(final LayerNorm + tanh FFN), so the last one is ``z_e`` itself. What is assumed is listed in the arch module.
"""

from __future__ import annotations

import methods.archs.vit_vqgan  # noqa: F401  (registers vit_vqgan_*_patch8_256 with timm)
from methods.base import MethodAdapter, OfficialLayout, Paper, Variant, with_variant

_NOTES = (
    "no public code or weights; sizes from the paper's Table 1, block details / learned pos_embed / [-1, 1] "
    "inputs assumed; features = pre-quantisation encoder output z_e; 32-d lookup, 8192 l2-normalised codes"
)

_SMALL = Variant(
    name="small",
    arch="vit_vqgan_small_patch8_256",
    license="none (no code or weights released)",
    checkpoint_keys=("state_dict", "model"),
    strip_prefixes=("module.",),
    drop=("decoder.*",),
    # The arch module's own state_dict() (no official layout exists); a full autoencoder's file adds its decoder.
    official_layouts=(
        OfficialLayout(
            name="autoencoder",
            key="state_dict",
            extra_weights=("decoder.blocks.0.mlp.fc1.weight",),
            extras={"epoch": 3},
        ),
    ),
    params_m=28.2,
    data_config={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 1.0},  # [-1, 1] inputs (assumed)
    released=False,
    notes=_NOTES + "; the Small encoder is Parti's tokenizer encoder (8 blocks, 512-d)",
)


class ViTVQGAN(MethodAdapter):
    name = "vit-vqgan"
    lane = "generative"
    global_pool = "avg"
    dense_norm = True  # through the output stage: the last map is z_e, the features the quantizer sees
    paper = Paper(
        title="Vector-quantized Image Modeling with Improved VQGAN",
        arxiv="2110.04627",
        code_url=None,
        venue="ICLR 2022",
    )
    variants = (
        _SMALL,
        with_variant(
            _SMALL,
            name="base",
            arch="vit_vqgan_base_patch8_256",
            params_m=91.0,
            notes=_NOTES + "; the Base encoder (12 blocks, 768-d)",
        ),
    )
