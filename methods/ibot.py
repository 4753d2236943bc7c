"""iBOT (Zhou et al., ICLR 2022): self-distillation with masked image modeling and an online tokenizer.

Two layouts are released (bytedance/ibot README): the backbone file ``checkpoint_teacher.pth``, written by
``extract_backbone_weights.py`` as ``{'state_dict': {...}}`` with the ``backbone.`` prefix already removed, and the
full ``checkpoint.pth`` of ``main_ibot.py`` ``{'student', 'teacher', 'optimizer', 'epoch', 'args', 'ibot_loss'
(, 'fp16_scaler')}`` where the teacher (a ``MultiCropWrapper``, not DDP-wrapped for ViTs) has ``backbone.*`` and the
``iBOTHead`` ``head.*``. The ViT's names equal timm's. ``masked_embed`` (the [MASK] token of the masked-image-modeling
student) is not used on unmasked images and is dropped where a file carries it.
"""

from __future__ import annotations

from methods.base import MethodAdapter, Paper, Variant, with_variant

_URL = "https://lf3-nlp-opensource.bytetos.com/obj/nlp-opensource/archive/2022/ibot/{}/checkpoint_teacher.pth"
_VITS16 = Variant(
    name="vits16",
    arch="vit_small_patch16_224",
    weights_url=_URL.format("vits_16"),
    file_name="checkpoint_teacher.pth",
    license="Apache-2.0",
    checkpoint_keys=("teacher", "state_dict"),
    strip_prefixes=("module.", "backbone."),
    drop=("masked_embed", "head.*"),
    notes="teacher backbone (the README's 'backbone (t)'); sha256 not published",
)


class IBOT(MethodAdapter):
    name = "ibot"
    paper = Paper(
        title="iBOT: Image BERT Pre-Training with Online Tokenizer",
        arxiv="2111.07832",
        code_url="https://github.com/bytedance/ibot",
        venue="ICLR 2022",
    )
    variants = (
        _VITS16,
        with_variant(_VITS16, name="vitb16", arch="vit_base_patch16_224", weights_url=_URL.format("vitb_16")),
    )
