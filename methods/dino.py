"""DINO (Caron et al., ICCV 2021): the baseline most 2022 SSL ViTs compare against.

Two file layouts are released (facebookresearch/dino): backbone-only ``dino_*_pretrain.pth`` (a flat state
dict with timm's key names) and ``*_full_checkpoint.pth`` training checkpoints
``{student, teacher, optimizer, epoch, args: argparse.Namespace, dino_loss, fp16_scaler}``. DINO evaluates the
EMA *teacher*, not the student; its keys are ``backbone.*`` (the student's are ``module.backbone.*``, DDP) plus
the projection ``head.*``, which is not part of the encoder.
"""

from __future__ import annotations

import argparse

import torch

from methods.base import MethodAdapter, OfficialLayout, Paper, Variant, with_variant

# DINOHead (iBOT's too): a 3-layer MLP and a weight-normed last layer, under the teacher's `head.`.
DINO_HEAD = tuple(
    f"head.{k}"
    for k in (
        *(f"mlp.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")),
        "last_layer.weight_g",
        "last_layer.weight_v",
    )
)
# main_dino.py's save_dict: the EMA teacher (MultiCropWrapper: backbone.* + head.*), the DDP student and training
# state (`fp16_scaler` with --use_fp16, the default).
DINO_TRAINING = OfficialLayout(
    name="training",
    key="teacher",
    prefix="backbone.",
    extra_weights=DINO_HEAD,
    copies=(("student", "module.backbone."),),
    extras={
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "weight_decay": 0.04, "params": []}]},
        "epoch": 100,
        "args": argparse.Namespace(out_dim=65536, momentum_teacher=0.996, output_dir="/checkpoint/dino"),
        "dino_loss": {"center": torch.zeros(1, 8)},
        "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
    },
)
_BACKBONE = OfficialLayout(name="backbone")  # dino_*_pretrain.pth: the teacher backbone as a flat state dict

_URL = "https://dl.fbaipublicfiles.com/dino/{0}/{0}.pth"
_VITS16 = Variant(
    name="vits16",
    arch="vit_small_patch16_224",
    weights_url=_URL.format("dino_deitsmall16_pretrain"),
    file_name="dino_deitsmall16_pretrain.pth",
    license="Apache-2.0",
    checkpoint_keys=("teacher",),
    strip_prefixes=("module.", "backbone."),
    drop=("head.*",),  # the DINO projection head (mlp + weight-normed last_layer) of full checkpoints
    official_layouts=(_BACKBONE, DINO_TRAINING),
    params_m=21.7,
)


class Dino(MethodAdapter):
    name = "dino"
    paper = Paper(
        title="Emerging Properties in Self-Supervised Vision Transformers",
        arxiv="2104.14294",
        code_url="https://github.com/facebookresearch/dino",
        venue="ICCV 2021",
    )
    variants = (
        _VITS16,
        with_variant(
            _VITS16,
            name="vits8",
            arch="vit_small_patch8_224",
            weights_url=_URL.format("dino_deitsmall8_pretrain"),
            file_name="dino_deitsmall8_pretrain.pth",
            params_m=21.7,
        ),
        with_variant(
            _VITS16,
            name="vitb16",
            arch="vit_base_patch16_224",
            weights_url=_URL.format("dino_vitbase16_pretrain"),
            file_name="dino_vitbase16_pretrain.pth",
            params_m=85.8,
        ),
        with_variant(
            _VITS16,
            name="vitb8",
            arch="vit_base_patch8_224",
            weights_url=_URL.format("dino_vitbase8_pretrain"),
            file_name="dino_vitbase8_pretrain.pth",
            params_m=85.8,
        ),
        # torchvision ResNet-50 names equal timm's; the backbone-only file has no fc (timm's is Identity here).
        with_variant(
            _VITS16,
            name="rn50",
            arch="resnet50",
            weights_url=_URL.format("dino_resnet50_pretrain"),
            file_name="dino_resnet50_pretrain.pth",
            drop=("head.*", "fc.*"),
            dense_indices=(1, 2, 3, 4),
            params_m=23.5,
        ),
    )
