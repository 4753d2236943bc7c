"""MoCo v3 (Chen, Xie, He, ICCV 2021): contrastive learning with a momentum encoder, on ViT.

The released ``vit-{s,b}-300ep.pth.tar`` are ``main_moco.py`` checkpoints ``{'epoch', 'arch', 'state_dict',
'optimizer', 'scaler'}`` of the DDP-wrapped ``MoCo_ViT``: ``module.base_encoder.*`` (the ViT, whose ``head`` is the
3-layer projector), ``module.momentum_encoder.*`` (its EMA copy) and ``module.predictor.*``. We keep the base encoder
without its projector, as ``main_lincls.py`` and ``convert_to_deit.py`` do (the latter's ``{'model': ...}`` output
loads too). MoCo v3's ViT-S has **12 heads** (``vits.py``), not DeiT's 6. Its position embedding is a fixed 2D sin-cos
table stored as a frozen parameter, so it is in the file and loads like any weight.
"""

from __future__ import annotations

from methods.base import MethodAdapter, OfficialLayout, Paper, Variant, with_variant


def _bn_mlp(prefix: str, layers: int) -> tuple[str, ...]:
    """State-dict names of MoCo v3's ``_build_mlp``: (Linear, BN, ReLU) x (layers - 1), Linear, BN without affine."""
    names = []
    for i in range(layers):
        names.append(f"{prefix}{3 * i}.weight")  # Linear(bias=False)
        bn = f"{prefix}{3 * i + 1}."
        affine = ("weight", "bias") if i < layers - 1 else ()
        names += [bn + p for p in (*affine, "running_mean", "running_var", "num_batches_tracked")]
    return tuple(names)


# main_moco.py::save_checkpoint of the DDP-wrapped MoCo_ViT: both encoders carry the 3-layer projector as `head`.
_TRAINING = OfficialLayout(
    name="training",
    key="state_dict",
    prefix="module.base_encoder.",
    extra_weights=(
        *_bn_mlp("module.base_encoder.head.", 3),
        *_bn_mlp("module.momentum_encoder.head.", 3),
        *_bn_mlp("module.predictor.", 2),
    ),
    copies=((None, "module.momentum_encoder."),),
    extras={
        "epoch": 300,
        "arch": "vit_small",
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "weight_decay": 0.1, "params": []}]},
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
    },
)
_DEIT = OfficialLayout(name="convert_to_deit", key="model")  # convert_to_deit.py: the base encoder, no head

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
    official_layouts=(_TRAINING, _DEIT),
    params_m=21.7,
    finetune_recipe="deit",  # README: ViT fine-tuning in the DeiT repository, its default configs
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
            params_m=85.8,
            notes="sha256 not published",
        ),
    )
