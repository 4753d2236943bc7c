"""MAE (He et al., CVPR 2022): masked autoencoders; we load the pretrained *encoder*.

The released ``mae_pretrain_vit_{base,large,huge}.pth`` hold ``{'model': encoder}`` whose names are timm's ViT names
one-to-one (facebookresearch/mae ``models_vit.py`` subclasses timm's VisionTransformer), final ``norm`` included:
``main_finetune.py`` loads them with only ``head.*`` (and ``fc_norm.*`` under global pooling) missing. A training
checkpoint from ``main_pretrain.py`` (``util/misc.py::save_model``: ``{'model', 'optimizer', 'epoch', 'scaler',
'args'}``, the whole ``MaskedAutoencoderViT``) loads too: its decoder and mask token are not encoder weights.
``forward_global`` is the normed CLS token, as in ``main_linprobe.py`` (``global_pool`` off by default).

The fine-tuned classifiers (FINETUNE.md, ``mae_finetuned_vit_{base,large,huge}.pth``, ``{'model': ...}`` as
``main_finetune.py --eval --resume`` reads them) are the ``*-ft`` variants: ``--global_pool`` (the default) built
``fc_norm`` on the mean of the patch tokens in place of ``norm`` (timm's ``global_pool='avg'``), then ``head``. Their
eval transform (``util/datasets.py``: Resize(int(224 / (224 / 256)) = 256, bicubic), CenterCrop(224), ImageNet
mean/std) is the base data config.
"""

from __future__ import annotations

import argparse

from methods.base import Classifier, MethodAdapter, OfficialLayout, Paper, Variant, with_variant

# MaskedAutoencoderViT parameters that belong to the pixel decoder, not the encoder (also used by SemMAE, PACMAC).
MAE_DECODER_KEYS = ("mask_token", "decoder_*")
# Their names in a state dict (decoder shown with one block; the released models have 8).
MAE_DECODER = (
    "mask_token",
    "decoder_embed.weight",
    "decoder_embed.bias",
    "decoder_pos_embed",
    *(
        f"decoder_blocks.0.{m}.{p}"
        for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for p in ("weight", "bias")
    ),
    "decoder_norm.weight",
    "decoder_norm.bias",
    "decoder_pred.weight",
    "decoder_pred.bias",
)
# util/misc.py::save_model of main_pretrain.py (MAE, SemMAE, PACMAC): the whole MaskedAutoencoderViT + training state.
MAE_TRAINING = OfficialLayout(
    name="training",
    key="model",
    extra_weights=MAE_DECODER,
    extras={
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "weight_decay": 0.05, "params": []}]},
        "epoch": 799,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
        "args": argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75, norm_pix_loss=True),
    },
)

_URL = "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_{}.pth"
_NOTE = "sha256 not published; the README lists md5 prefixes only ({}): vitbench verifies the file against it"
_VITB16 = Variant(
    name="vitb16",
    arch="vit_base_patch16_224",
    weights_url=_URL.format("base"),
    file_name="mae_pretrain_vit_base.pth",
    license="CC-BY-NC-4.0",
    checkpoint_keys=("model",),
    drop=MAE_DECODER_KEYS,
    official_layouts=(OfficialLayout(name="release", key="model"), MAE_TRAINING),
    params_m=85.8,
    digest_prefix="md5:8cad7c",  # github.com/facebookresearch/mae README, "md5" row of the checkpoint table
    notes=_NOTE.format("8cad7c"),
    finetune_recipe="mae",  # FINETUNE.md / main_finetune.py
)


_FT_URL = "https://dl.fbaipublicfiles.com/mae/finetune/mae_finetuned_vit_{}.pth"
_FT_NOTE = "fine-tuned classifier (FINETUNE.md); sha256 not published, md5 prefix {}; reference top-1 {} / top-5 {}"
_HEAD = ("head.weight", "head.bias")
_VITB16_FT = with_variant(
    _VITB16,
    name="vitb16-ft",
    model_kwargs={"global_pool": "avg"},  # fc_norm on the patch mean, no final norm: MAE's --global_pool
    weights_url=_FT_URL.format("base"),
    file_name="mae_finetuned_vit_base.pth",
    drop=("head.*",),
    official_layouts=(OfficialLayout(name="release", key="model", extra_weights=_HEAD),),
    classifier=Classifier(),
    digest_prefix="md5:1b25e9",  # FINETUNE.md, "md5" row of the fine-tuned checkpoint table
    notes=_FT_NOTE.format("1b25e9", "83.664", "96.530"),
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
            params_m=303.3,
            digest_prefix="md5:b8b06e",
            notes=_NOTE.format("b8b06e"),
        ),
        with_variant(
            _VITB16,
            name="vith14",
            arch="vit_huge_patch14_224",
            weights_url=_URL.format("huge"),
            file_name="mae_pretrain_vit_huge.pth",
            params_m=630.8,
            digest_prefix="md5:9bdbb0",
            notes=_NOTE.format("9bdbb0"),
        ),
        _VITB16_FT,
        with_variant(
            _VITB16_FT,
            name="vitl16-ft",
            arch="vit_large_patch16_224",
            weights_url=_FT_URL.format("large"),
            file_name="mae_finetuned_vit_large.pth",
            params_m=303.3,
            digest_prefix="md5:51f550",
            notes=_FT_NOTE.format("51f550", "85.952", "97.570"),
        ),
        with_variant(
            _VITB16_FT,
            name="vith14-ft",
            arch="vit_huge_patch14_224",
            weights_url=_FT_URL.format("huge"),
            file_name="mae_finetuned_vit_huge.pth",
            params_m=630.8,
            digest_prefix="md5:2541f2",
            notes=_FT_NOTE.format("2541f2", "86.928", "98.088"),
        ),
    )
