"""MAE (He et al., CVPR 2022): masked autoencoders; we load the pretrained *encoder*.

The released ``mae_pretrain_vit_{base,large,huge}.pth`` hold ``{'model': encoder}`` whose names are timm's ViT names
one-to-one (facebookresearch/mae ``models_vit.py`` subclasses timm's VisionTransformer), final ``norm`` included:
``main_finetune.py`` loads them with only ``head.*`` (and ``fc_norm.*`` under global pooling) missing. A training
checkpoint from ``main_pretrain.py`` (``util/misc.py::save_model``: ``{'model', 'optimizer', 'epoch', 'scaler',
'args'}``, the whole ``MaskedAutoencoderViT``) loads too: its decoder and mask token are not encoder weights.
``forward_global`` is the normed CLS token, as in ``main_linprobe.py`` (``global_pool`` off by default).
"""

from __future__ import annotations

from methods.base import MethodAdapter, Paper, Variant, with_variant

# MaskedAutoencoderViT parameters that belong to the pixel decoder, not the encoder (also used by SemMAE, PACMAC).
MAE_DECODER_KEYS = ("mask_token", "decoder_*")

_URL = "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_{}.pth"
_NOTE = "sha256 not published; the README lists md5 prefixes only ({})"
_VITB16 = Variant(
    name="vitb16",
    arch="vit_base_patch16_224",
    weights_url=_URL.format("base"),
    file_name="mae_pretrain_vit_base.pth",
    license="CC-BY-NC-4.0",
    checkpoint_keys=("model",),
    drop=MAE_DECODER_KEYS,
    notes=_NOTE.format("8cad7c"),
)


class MAE(MethodAdapter):
    name = "mae"
    paper = Paper(
        title="Masked Autoencoders Are Scalable Vision Learners",
        arxiv="2111.06377",
        code_url="https://github.com/facebookresearch/mae",
        venue="CVPR 2022",
    )
    variants = (
        _VITB16,
        with_variant(
            _VITB16,
            name="vitl16",
            arch="vit_large_patch16_224",
            weights_url=_URL.format("large"),
            file_name="mae_pretrain_vit_large.pth",
            notes=_NOTE.format("b8b06e"),
        ),
        with_variant(
            _VITB16,
            name="vith14",
            arch="vit_huge_patch14_224",
            weights_url=_URL.format("huge"),
            file_name="mae_pretrain_vit_huge.pth",
            notes=_NOTE.format("9bdbb0"),
        ),
    )
