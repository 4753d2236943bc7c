"""MoCo v3 (Chen, Xie, He, ICCV 2021): contrastive learning with a momentum encoder, on ViT.

The released ``vit-{s,b}-300ep.pth.tar`` are ``main_moco.py`` checkpoints ``{'epoch', 'arch', 'state_dict',
'optimizer', 'scaler'}`` of the DDP-wrapped ``MoCo_ViT``: ``module.base_encoder.*`` (the ViT, whose ``head`` is the
3-layer projector), ``module.momentum_encoder.*`` (its EMA copy) and ``module.predictor.*``. We keep the base encoder
without its projector, as ``main_lincls.py`` and ``convert_to_deit.py`` do (the latter's ``{'model': ...}`` output
loads too). MoCo v3's ViT-S has **12 heads** (``vits.py``), not DeiT's 6. Its position embedding is a fixed 2D sin-cos
table stored as a frozen parameter, so it is in the file and loads like any weight.
"""

from __future__ import annotations

from methods.base import MethodAdapter, Paper, Variant, with_variant

_URL = "https://dl.fbaipublicfiles.com/moco-v3/{0}/{0}.pth.tar"
_VITS16 = Variant(
    name="vits16",
    arch="vit_small_patch16_224",
    model_kwargs={"num_heads": 12},
    weights_url=_URL.format("vit-s-300ep"),
    file_name="vit-s-300ep.pth.tar",
    license="CC-BY-NC-4.0",
    checkpoint_keys=("state_dict", "model"),
    strip_prefixes=("module.", "base_encoder."),
    drop=("momentum_encoder.*", "predictor.*", "head.*"),  # EMA encoder, predictor MLP, projector MLP
    notes="12 heads (MoCo v3 vits.py); sha256 not published",
)


class MoCoV3(MethodAdapter):
    name = "mocov3"
    paper = Paper(
        title="An Empirical Study of Training Self-Supervised Vision Transformers",
        arxiv="2104.02057",
        code_url="https://github.com/facebookresearch/moco-v3",
        venue="ICCV 2021",
    )
    variants = (
        _VITS16,
        with_variant(
            _VITS16,
            name="vitb16",
            arch="vit_base_patch16_224",
            model_kwargs={},
            weights_url=_URL.format("vit-b-300ep"),
            file_name="vit-b-300ep.pth.tar",
            notes="sha256 not published",
        ),
    )
