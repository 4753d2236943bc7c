"""SemMAE (Li et al., NeurIPS 2022): MAE whose masks follow semantic parts learned from iBOT attention.

SemMAE is built on MAE (timm 0.3.2): ``main_pretrain_setting3.py`` calls MAE's ``misc.save_model`` (``util/`` is not
in the repo; MAE's writes ``{'model', 'optimizer', 'epoch', 'scaler', 'args'}`` with the whole
``MaskedAutoencoderViT`` under ``model``); the encoder names are timm's and the decoder and mask token are dropped.
The ViT-B/8 model is defined with ``img_size=112`` (``models_vit.py``: 14x14 = 196 tokens, the token count of B/16
at 224), so B/8 runs at 112 px.
Position embeddings: ``models_mae_setting3.py`` hard-codes a 28x28 grid (``pos_embed`` [1, 785, C], fixed sin-cos)
and adds to each of its 196 tokens the entry of that patch's index, read from the repo's preprocessed ``.npy`` inputs
(not released). A plain image carries no such index, so a grid that differs from the model's is resampled (bicubic) at
load and the load report says so; this is our reading, the Drive files were not inspected.

The fine-tuned ViT-B/16 (README: ``SemMAE_epoch799_vit_base_checkpoint-99.pth``, 83.352 / 96.494 with
``main_finetune.py --eval --model vit_base_patch16``) is ``vitb16-ft``: MAE's fine-tuning layout (``--global_pool``,
the default: ``fc_norm`` replaces ``norm``, then ``head``) and MAE's eval transform (its ``util/datasets.py``; the repo
omits ``util/`` and ``vit_base_patch16``, so both are MAE's by assumption). The fine-tuned B/8 is left out: its
``forward_features`` reads preprocessed part-index arrays (``model/models_vit.py``), not images.
"""

from __future__ import annotations

from methods.base import Classifier, MethodAdapter, OfficialLayout, Paper, Variant, with_variant
from methods.mae import MAE_DECODER_KEYS, MAE_TRAINING

_VITB16 = Variant(
    name="vitb16",
    arch="vit_base_patch16_224",
    license="none (all rights reserved)",  # the repository has no LICENSE file
    checkpoint_keys=("model",),
    strip_prefixes=("module.",),
    drop=MAE_DECODER_KEYS,
    official_layouts=(MAE_TRAINING,),  # MAE's save_model (the Drive files were not inspected)
    params_m=85.8,
    digest_prefix="md5:1482ae",  # the README's md5 prefix: a local copy of the Drive file is checked against it
    pos_embed_grids=(28,),  # models_mae_setting3.py hard-codes a 28x28 table (module docstring)
    finetune_recipe="mae",  # the repository's main_finetune.py is MAE's; it publishes no command of its own
    notes="800-epoch pretrained file on Google Drive only (README md5 prefix 1482ae; no sha256); pass --weights PATH",
)


class SemMAE(MethodAdapter):
    name = "semmae"
    paper = Paper(
        title="SemMAE: Semantic-Guided Masking for Learning Masked Autoencoders",
        arxiv="2206.10207",
        code_url="https://github.com/ucasligang/SemMAE",
        venue="NeurIPS 2022",
    )
    variants = (
        _VITB16,
        with_variant(
            _VITB16,
            name="vitb8",
            arch="vit_base_patch8_224",
            model_kwargs={"img_size": 112},
            params_m=85.4,
            digest_prefix="md5:322b6a",
            notes="img_size=112 as SemMAE defines ViT-B/8; 800-epoch pretrained file on Google Drive only "
            "(README md5 prefix 322b6a; no sha256); pass --weights PATH",
        ),
        with_variant(
            _VITB16,
            name="vitb16-ft",
            model_kwargs={"global_pool": "avg"},  # MAE's --global_pool: fc_norm on the patch mean, no final norm
            drop=("head.*",),
            # MAE's misc.save_model during fine-tuning: the fine-tuned ViT with its classifier + training state.
            official_layouts=(
                OfficialLayout(
                    name="training", key="model", extra_weights=("head.weight", "head.bias"), extras=MAE_TRAINING.extras
                ),
            ),
            classifier=Classifier(),
            digest_prefix=None,  # another file than the pretrained one, whose md5 prefix the README gives
            notes="fine-tuned classifier (README: 83.352 top-1, epoch 99 of fine-tuning); Google Drive only (no "
            "sha256, no md5 for it: unpinned); pass --weights PATH",
        ),
    )
