"""SP-ViT (Zhou et al., BMVC 2022): LV-ViT + spatial-prior self-attention, supervised on ImageNet-1k with token labels.

The architecture lives in :mod:`methods.archs.spvit` (timm names ``spvit_s/m/l``, ``spvit_l_public``). Official
files come from the TokenLabeling train script (timm's ``CheckpointSaver``): ``{'state_dict', 'state_dict_ema'
(with --model-ema, which all three scripts pass), 'optimizer', 'args': argparse.Namespace, 'epoch', 'arch',
'version', 'amp_scaler', 'metric'}``, or a bare state dict. We take the EMA weights when present: with
``--model-ema`` timm's train loop ranks checkpoints by the EMA model's accuracy, so the reported top-1 is the EMA's.
``head``/``aux_head`` (classifier and token-label head) are dropped; ``forward_global`` is the final-normed CLS
token, i.e. the input of ``head`` (the ``0.5 * max(aux_head)`` term of the official logits is not part of it).
``build(classifier=True)`` keeps both heads: ``forward_logits`` is the official inference ``head(cls) + 0.5 *
max aux_head(patches)``.

Eval transforms (the official ``tlt/models/spvit.py`` default_cfgs, resolved by timm 0.4.5's
``resolve_data_config`` in ``main.py``): bicubic, ImageNet mean/std, crop_pct 0.9 for S and 1.0 for M and L. The
384-px fine-tuned models (``distributed_fine_tune.sh``: ``--img-size 384``, same constructors) keep their model's
crop_pct, so S at 384 resizes to 426 and crops 384; they are the ``s384``/``m384``/``l384`` variants.
"""

from __future__ import annotations

import argparse

import torch

import methods.archs.spvit as arch  # registers the timm names
from methods.base import Classifier, MethodAdapter, OfficialLayout, Paper, Variant, with_variant
from methods.errors import CheckpointError

_NOTES = (
    "weights: GitHub release assets (github.com/ZhouYuxuanYX/SP-ViT/releases/tag/download), file names not "
    "recorded here, so pass --weights PATH; forward_global = normalised CLS token (input of `head`); blocks "
    "before local_up_to_layer carry no CLS token, so per-block probes there see the learned cls_token"
)

# timm's CheckpointSaver in the TokenLabeling train script (--model-ema); our names are the official ones.
_TRAIN_PY = OfficialLayout(
    name="train.py",
    key="state_dict_ema",
    extra_weights=("head.weight", "head.bias", "aux_head.weight", "aux_head.bias"),
    copies=(("state_dict", ""),),
    extras={
        "epoch": 299,
        "arch": "lvvit_s",
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "weight_decay": 0.05, "params": []}]},
        "version": 2,
        "args": argparse.Namespace(model="lvvit_s", local_up_to_layer=14, model_ema=True),
        "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000},
        "metric": 83.9,
    },
)

_S = Variant(
    name="s",
    arch="spvit_s",
    license="Apache-2.0",
    checkpoint_keys=("state_dict_ema", "state_dict", "model"),
    strip_prefixes=("module.",),
    drop=("head.*", "aux_head.*"),
    data_config={"crop_pct": 0.9},
    official_layouts=(_TRAIN_PY,),
    params_m=25.5,
    pos_embed_grids=(24,),  # the paper's 384-px fine-tuned models
    notes=_NOTES,
    classifier=Classifier(keys=("head.weight", "head.bias", "aux_head.weight", "aux_head.bias")),
)
_FT384 = "; fine-tuned at 384 px (distributed_fine_tune.sh: --img-size 384, lr 5e-6, wd 1e-8)"


def _spsa_blocks(arch_name: str, model_kwargs: dict) -> set[int]:
    """Indices of the blocks a variant builds with SP-SA."""
    args = {**arch.MODEL_ARGS[arch_name], **model_kwargs}
    return set(range(args["local_up_to_layer"])) if args.get("use_spsa", True) else set()


def _span(blocks: set[int]) -> str:
    return f"blocks {min(blocks)}-{max(blocks)}" if blocks else "no block"


class SPViT(MethodAdapter):
    name = "spvit"
    lane = "supervised"
    paper = Paper(
        title="SP-ViT: Learning 2D Spatial Priors for Vision Transformers",
        arxiv="2206.07662",
        code_url="https://github.com/ZhouYuxuanYX/SP-ViT-Learning-2D-Spatial-Priors-for-Vision-Transformers",
        venue="BMVC 2022",
    )
    variants = (
        _S,
        with_variant(_S, name="s384", model_kwargs={"img_size": 384}, params_m=25.6, notes=_NOTES + _FT384),
        with_variant(_S, name="m", arch="spvit_m", data_config={"crop_pct": 1.0}, params_m=54.9),
        with_variant(
            _S,
            name="m384",
            arch="spvit_m",
            model_kwargs={"img_size": 384},
            data_config={"crop_pct": 1.0},
            params_m=55.1,
            notes=_NOTES + _FT384,
        ),
        with_variant(
            _S,
            name="l",
            arch="spvit_l",
            data_config={"crop_pct": 1.0},
            params_m=148.7,
            notes=_NOTES + "; the paper's L (SP-SA in blocks 0-21); a file without SP-SA keys needs l-public",
        ),
        with_variant(
            _S,
            name="l384",
            arch="spvit_l",
            model_kwargs={"img_size": 384},
            data_config={"crop_pct": 1.0},
            params_m=149.0,
            notes=_NOTES + _FT384 + "; the paper's L (SP-SA in blocks 0-21)",
        ),
        with_variant(
            _S,
            name="l-public",
            arch="spvit_l_public",
            data_config={"crop_pct": 1.0},
            params_m=148.7,
            notes=_NOTES + "; the graph the public code's lvvit_l builds: no SP-SA layer (its `order` path "
            "ignores use_psa), CLS joins at block 22",
        ),
    )

    def convert(self, sd: dict[str, torch.Tensor], variant: Variant) -> tuple[dict[str, torch.Tensor], list[str]]:
        done: list[str] = []
        # Which blocks the file trained with SP-SA (attn.qk/v/w1/w2/b2) and which with plain attention (attn.qkv).
        found = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.") and k.endswith(".attn.qk.weight")}
        expected = _spsa_blocks(variant.arch, dict(variant.model_kwargs))
        if any(k.startswith("blocks.") for k in sd) and found != expected:
            hint = ""
            if not found and variant.name == "l":
                hint = " This is what the public code's lvvit_l builds: load it as spvit:l-public."
            elif found and variant.name == "l-public":
                hint = " It is the paper's SP-ViT-L: load it as spvit:l."
            raise CheckpointError(
                f"checkpoint has SP-SA layers in {_span(found)} but {self.name}:{variant.name} builds them in "
                f"{_span(expected)}.{hint}"
            )
        done.append(f"layout: SP-SA in {_span(found)}")
        # 384-px fine-tuned files carry a 24x24 pos_embed: resample it to the variant's grid (no CLS slot in it).
        pos = sd.get("pos_embed")
        args = {**arch.MODEL_ARGS[variant.arch], "patch_size": 16, "img_size": 224, **variant.model_kwargs}
        side = args["img_size"] // args["patch_size"]
        n_prefix = 1 if args["local_up_to_layer"] == 0 else 0
        if pos is not None and pos.ndim == 3 and pos.shape[1] != side * side + n_prefix:
            from timm.layers import resample_abs_pos_embed

            old = int(round((pos.shape[1] - n_prefix) ** 0.5))
            if old * old + n_prefix != pos.shape[1]:
                raise CheckpointError(f"pos_embed {list(pos.shape)} is not a square grid (+{n_prefix} CLS slot)")
            sd = dict(sd)
            sd["pos_embed"] = resample_abs_pos_embed(
                pos, new_size=[side, side], old_size=[old, old], num_prefix_tokens=n_prefix
            )
            done.append(f"pos_embed {old}x{old} -> {side}x{side} (bicubic)")
        return sd, done
