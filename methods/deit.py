"""DeiT (Touvron et al., ICML 2021): supervised ImageNet-1k ViTs; DeiT-B is the victim model of the ViT backdoor
paper (Subramanya et al., arXiv 2206.08477: a frozen ``deit_base_patch16_224`` with a new linear head).

The released ``deit_{small,base}_patch16_224-<hash>.pth`` hold ``{'model': state_dict}`` (``models.py`` loads
``checkpoint["model"]`` with ``strict=True``) in timm's ViT names, including the 1000-class ``head`` we drop: the
encoder ends at the normed CLS token. A ``main.py`` training checkpoint (``{'model', 'optimizer', 'lr_scheduler',
'epoch', 'model_ema', 'scaler', 'args'}``) loads the same way (``model``, not the EMA).
"""

from __future__ import annotations

from methods.base import MethodAdapter, Paper, Variant, with_variant

_URL = "https://dl.fbaipublicfiles.com/deit/{}.pth"
_NOTE = (
    "sha256 not published; the file name carries torch.hub's check_hash prefix {} (first 8 hex digits of the "
    "sha256, verified by hubconf's check_hash=True)"
)
_DEITS16 = Variant(
    name="deits16",
    arch="deit_small_patch16_224",
    weights_url=_URL.format("deit_small_patch16_224-cd65a155"),
    file_name="deit_small_patch16_224-cd65a155.pth",
    license="Apache-2.0",
    checkpoint_keys=("model",),
    drop=("head.*",),  # the supervised ImageNet-1k classifier
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
            notes=_NOTE.format("b5f2ef4d") + "; the backdoor paper's (arXiv 2206.08477) victim",
        ),
    )
