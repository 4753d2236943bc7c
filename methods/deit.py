"""DeiT (Touvron et al., ICML 2021): supervised ImageNet-1k ViTs; DeiT-B is the victim model of the ViT backdoor
paper (Subramanya et al., arXiv 2206.08477: a frozen ``deit_base_patch16_224`` with a new linear head).

The released ``deit_{small,base}_patch16_224-<hash>.pth`` hold ``{'model': state_dict}`` (``models.py`` loads
``checkpoint["model"]`` with ``strict=True``) in timm's ViT names, including the 1000-class ``head``: dropped for the
encoder (which ends at the normed CLS token), kept by ``build(classifier=True)`` (``imagenet-supervised``). A
``main.py`` training checkpoint (``{'model', 'optimizer', 'lr_scheduler', 'epoch', 'model_ema', 'scaler', 'args'}``)
loads the same way (``model``, not the EMA).
"""

from __future__ import annotations

import argparse

from methods.base import Classifier, MethodAdapter, OfficialLayout, Paper, Variant, with_variant

_HEAD = ("head.weight", "head.bias")
# The release: {'model': ViT + ImageNet classifier}; main.py's checkpoint adds the EMA copy and training state.
_RELEASE = OfficialLayout(name="release", key="model", extra_weights=_HEAD)
_TRAINING = OfficialLayout(
    name="training",
    key="model",
    extra_weights=_HEAD,
    copies=(("model_ema", ""),),
    extras={
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "weight_decay": 0.05, "params": []}]},
        "lr_scheduler": {"t_initial": 300, "warmup_t": 5},
        "epoch": 299,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
        "args": argparse.Namespace(model="deit_base_patch16_224", input_size=224, smoothing=0.1),
    },
)

_URL = "https://dl.fbaipublicfiles.com/deit/{}.pth"
_NOTE = (
    "full sha256 not published; the file name carries torch.hub's check_hash prefix {} (the first 8 hex digits of "
    "the sha256, hubconf's check_hash=True): vitbench verifies the file against that prefix"
)
_DEITS16 = Variant(
    name="deits16",
    arch="deit_small_patch16_224",
    weights_url=_URL.format("deit_small_patch16_224-cd65a155"),
    file_name="deit_small_patch16_224-cd65a155.pth",
    license="Apache-2.0",
    checkpoint_keys=("model",),
    drop=("head.*",),  # the supervised ImageNet-1k classifier
    official_layouts=(_RELEASE, _TRAINING),
    params_m=21.7,
    digest_prefix="sha256:cd65a155",
    # Eval transform (datasets.py build_transform): Resize(int(224 / 0.875) = 256, bicubic), CenterCrop(224),
    # ImageNet mean/std (main.py --eval-crop-ratio 0.875): the base data config.
    classifier=Classifier(),
    notes=_NOTE.format("cd65a155"),
)


class DeiT(MethodAdapter):
    name = "deit"
    lane = "supervised"
    paper = Paper(
        title="Training data-efficient image transformers & distillation through attention",
        arxiv="2012.12877",
        code_url="https://github.com/facebookresearch/deit",
        venue="ICML 2021",
    )
    variants = (
        _DEITS16,
        with_variant(
            _DEITS16,
            name="deitb16",
            arch="deit_base_patch16_224",
            weights_url=_URL.format("deit_base_patch16_224-b5f2ef4d"),
            file_name="deit_base_patch16_224-b5f2ef4d.pth",
            params_m=85.8,
            digest_prefix="sha256:b5f2ef4d",
            notes=_NOTE.format("b5f2ef4d") + "; the backdoor paper's (arXiv 2206.08477) victim",
        ),
    )
