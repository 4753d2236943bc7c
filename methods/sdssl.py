"""SDSSL (Jang et al., WACV 2023): self-distillation of intermediate ViT layers towards the final representation.

No weights are released (hagiss/SDSSL). Training runs in PyTorch Lightning (``pl_train_{moco,byol,simclr}.py``), so a
checkpoint is Lightning's ``{'epoch', 'global_step', 'pytorch-lightning_version', 'state_dict', 'optimizer_states',
'lr_schedulers', 'callbacks', ...}`` with ``state_dict`` holding ``PLLearner``'s modules: ``student`` and ``teacher``
are ``byol_pytorch.NetWrapper``s, so the ViT sits under ``student.net.*`` / ``teacher.net.*`` next to
``{student,teacher}.projector.*`` and ``student.predictor.*`` (MLPs; with ``st_inter`` one per layer). We load the
momentum *teacher* (what SDSSL's own k-NN monitor evaluates) and fall back to the student for SD-SimCLR, which has
no teacher. The ViT (``vision_transformer.py``) has timm's names, qkv bias, LayerNorm eps 1e-6 and a fixed 2D sin-cos
``pos_embed`` stored as a frozen parameter.
"""

from __future__ import annotations

import torch

from methods.base import MethodAdapter, OfficialLayout, Paper, Variant

# What Lightning's Trainer writes next to `state_dict` (PLLearner's modules).
_LIGHTNING = {
    "epoch": 299,
    "global_step": 375300,
    "pytorch-lightning_version": "1.5.10",
    "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 300, "completed": 299}}}},
    "callbacks": {"ModelCheckpoint": {"monitor": None, "best_model_path": ""}},
    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.0, "params": []}]}],
    "lr_schedulers": [],
}
# The MLPs of byol_pytorch.NetWrapper; with st_inter the student has one projector (and predictor) per layer. A sample.
_PROJECTORS = ("student.projector.0.net.0.weight", "student.projector.11.net.6.weight")
_SD_MOCO = OfficialLayout(  # pl_train_moco.py / pl_train_byol.py: a momentum teacher next to the student
    name="sd-moco",
    key="state_dict",
    prefix="teacher.net.",
    extra_weights=(
        *_PROJECTORS,
        "student.predictor.0.net.0.weight",
        "teacher.projector.net.0.weight",
        "teacher.projector.net.1.running_mean",
    ),
    copies=((None, "student.net."),),
    extras=_LIGHTNING,
)
_SD_SIMCLR = OfficialLayout(  # pl_train_simclr.py: no teacher
    name="sd-simclr", key="state_dict", prefix="student.net.", extra_weights=_PROJECTORS, extras=_LIGHTNING
)


class SDSSL(MethodAdapter):
    name = "sdssl"
    paper = Paper(
        title="Self-Distilled Self-Supervised Representation Learning",
        arxiv="2111.12958",
        code_url="https://github.com/hagiss/SDSSL",
        venue="WACV 2023",
    )
    variants = (
        Variant(
            name="vitb16",
            arch="vit_base_patch16_224",
            license="MIT",
            released=False,
            checkpoint_keys=("state_dict",),
            drop=("student.*", "teacher.*"),  # the other branch, projectors and predictors
            official_layouts=(_SD_MOCO, _SD_SIMCLR),
            params_m=85.8,
            notes="no public weights; loads a Lightning checkpoint of pl_train_*.py (teacher.net.* = the momentum "
            "encoder, else student.net.* for SD-SimCLR); layout read from the code, not from a released file",
        ),
    )

    def convert(self, sd: dict[str, torch.Tensor], variant: Variant) -> tuple[dict[str, torch.Tensor], list[str]]:
        branch = next((b for b in ("teacher.net.", "student.net.") if any(k.startswith(b) for k in sd)), None)
        if branch is None:
            return sd, []
        out = {(k.removeprefix(branch) if k.startswith(branch) else k): v for k, v in sd.items()}
        return out, [f"{branch}* -> * (the {branch.split('.')[0]} ViT; other branch and MLP heads dropped)"]
