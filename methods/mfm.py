"""MFM, Masked Frequency Modeling (Xie et al., ICLR 2023): reconstruct masked frequencies of the image spectrum.

Checkpoints are ``utils.py::save_checkpoint`` dicts ``{'model', 'optimizer', 'lr_scheduler', 'max_accuracy', 'epoch',
'config' (a pickled yacs CfgNode) (, 'amp')}``; ``model`` is the whole ``MFM`` module: ``encoder.*`` and the pixel
decoder ``decoder.0.*`` (a 1x1 conv before PixelShuffle). The ViT encoder is BEiT's: ``attn.qkv`` has no bias, and
separate ``attn.q_bias``/``attn.v_bias`` stand in for it with a zero key bias (``models/vision_transformer.py``), which
is exactly timm's ``qkv.bias = cat(q_bias, 0, v_bias)``. The pretraining configs use an absolute learned position
embedding, no layer scale, no relative position bias. MFM's loss sees only patch tokens (the encoder output drops the
CLS token before the decoder), so ``forward_global`` averages the normed patch tokens. The ResNet-50 encoder is timm's
``ResNet`` itself (``ResNetForMFM``), so its names are timm's.

The fine-tuned ViT-B/16 (README "Fine-tuned model", 83.1 top-1) is ``vitb16-ft``: ``main_finetune.py`` saves the bare
``VisionTransformer`` (no ``encoder.`` prefix) with the fine-tuning config's mean pooling (``USE_MEAN_POOLING``:
``fc_norm`` on the patch mean, ``norm`` = Identity, i.e. timm's ``global_pool='avg'``), no layer scale, an absolute
position embedding and the same BEiT q/v biases, then ``head``. Its eval transform (``data/data_finetune.py``,
``TEST.CROP``: Resize(int(256 / 224 * 224) = 256, bicubic), CenterCrop(224), ImageNet mean/std) is the base data
config. The fine-tuned ResNet-50s were trained with timm's recipe and their eval transform is not stated: left out.
"""

from __future__ import annotations

import torch

from methods.base import Classifier, MethodAdapter, OfficialLayout, Paper, Variant, with_variant
from methods.errors import CheckpointError

# utils.py::save_checkpoint; `model` is the whole MFM module: encoder.* and the 1x1-conv pixel decoder.
_TRAINING = OfficialLayout(
    name="training",
    key="model",
    prefix="encoder.",
    extra_weights=("decoder.0.weight", "decoder.0.bias"),
    extras={
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "weight_decay": 0.05, "params": []}]},
        "lr_scheduler": {"t_initial": 375300, "warmup_t": 25020},
        "max_accuracy": 0.0,
        "epoch": 299,
        # A yacs CfgNode in the real file; a plain dict here (tests/methods/test_mfm.py pickles a real-shaped one).
        "config": {"MODEL": {"TYPE": "vit", "NAME": "pretrain"}, "DATA": {"IMG_SIZE": 224}},
        "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 1251}},
    },
)

_VITB16 = Variant(
    name="vitb16",
    arch="vit_base_patch16_224",
    model_kwargs={"global_pool": "avg", "fc_norm": False},  # keep the pretrained `norm`, pool patch tokens
    license="S-Lab License 1.0 (non-commercial)",
    checkpoint_keys=("model",),
    strip_prefixes=("module.", "encoder."),
    drop=("decoder.*",),
    official_layouts=(_TRAINING,),
    params_m=85.8,
    finetune_recipe="mfm",  # configs/vit_*/finetune*.yaml (SimMIM's fine-tuning code)
    notes="Google Drive only (no stable URL, no sha256); pass --weights PATH to the MFM ViT-B/16 300-epoch file",
)


# main_finetune.py -> utils.py::save_checkpoint(model_without_ddp): the fine-tuned ViT with its classifier.
_FINETUNE = OfficialLayout(
    name="finetune", key="model", extra_weights=("head.weight", "head.bias"), extras=_TRAINING.extras
)


class MFM(MethodAdapter):
    name = "mfm"
    global_pool = "avg"
    paper = Paper(
        title="Masked Frequency Modeling for Self-Supervised Visual Pre-Training",
        arxiv="2206.07706",
        code_url="https://github.com/Jiahao000/MFM",
        venue="ICLR 2023",
    )
    variants = (
        _VITB16,
        with_variant(
            _VITB16,
            name="rn50",
            arch="resnet50",
            model_kwargs={},
            dense_indices=(1, 2, 3, 4),
            params_m=23.5,
            notes="Google Drive only (no stable URL, no sha256); MFM ResNet-50 300-epoch file",
        ),
        with_variant(
            _VITB16,
            name="vitb16-ft",
            model_kwargs={"global_pool": "avg"},  # USE_MEAN_POOLING: fc_norm on the patch mean, norm = Identity
            drop=("head.*",),
            official_layouts=(_FINETUNE,),
            classifier=Classifier(),
            notes="fine-tuned classifier (300-epoch MFM + 100-epoch fine-tuning, README top-1 83.1); Google Drive "
            "only (no stable URL, no sha256); pass --weights PATH",
        ),
    )

    def convert(self, sd: dict[str, torch.Tensor], variant: Variant) -> tuple[dict[str, torch.Tensor], list[str]]:
        q_keys = [k for k in sd if k.endswith("attn.q_bias")]
        if not q_keys:
            return sd, []
        sd = dict(sd)
        for q_key in q_keys:
            v_key = q_key.removesuffix("q_bias") + "v_bias"
            if v_key not in sd:
                raise CheckpointError(f"{q_key} has no matching {v_key}: not a BEiT-style attention layout")
            q, v = sd.pop(q_key), sd.pop(v_key)
            if not (q.is_floating_point() and v.is_floating_point()):  # torch.cat would promote them silently
                raise CheckpointError(f"{q_key}/{v_key} are {q.dtype}/{v.dtype}: refusing to cast them to float")
            sd[q_key.removesuffix("q_bias") + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
        return sd, [f"blocks.*.attn.q_bias/v_bias -> attn.qkv.bias = cat(q_bias, 0, v_bias) ({len(q_keys)} blocks)"]

    def to_official(self, sd: dict[str, torch.Tensor], variant: Variant) -> dict[str, torch.Tensor]:
        # BEiT attention has no key bias. Dropping it changes no output: q . b_k is the same for every key of a
        # query, and softmax ignores a per-row constant.
        out: dict[str, torch.Tensor] = {}
        for key, t in sd.items():
            if key.endswith("attn.qkv.bias"):
                q, _, v = t.clone().chunk(3)
                out[key.removesuffix("qkv.bias") + "q_bias"], out[key.removesuffix("qkv.bias") + "v_bias"] = q, v
            else:
                out[key] = t
        return out
