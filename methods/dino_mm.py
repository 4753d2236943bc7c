"""DINO-MM (Wang, Albrecht, Zhu, IGARSS 2022): DINO on joint Sentinel-1 SAR + Sentinel-2 optical patches.

One checkpoint, ``B14_vits8_dinomm_ep99.pth`` (Hugging Face ``wangyi111/dino-mm``): a DINO ViT-S/8 with 14 input
bands, saved by the unmodified DINO logic of ``main_dino_B14.py`` (``{'student', 'teacher', 'optimizer', 'epoch',
'args', 'dino_loss'}``; teacher = ``backbone.*`` + the DINO projection ``head.*``). Its ``pos_embed`` is sized for the
default 224 px ([1, 785, 384], 28x28) although it trains and evaluates at 112 px, where DINO's
``interpolate_pos_encoding`` resizes it on every forward (bicubic, ``scale_factor=(14 + 0.1) / 28``, no antialias).
We apply that same interpolation once at load for the native 112 px grid, so features at 112 px equal the authors'.
Inputs: 12 Sentinel-2 bands (B10 dropped) then Sentinel-1 VH, VV; each band is scaled to uint8 from mean +- 2 std
(S1 first clipped to its per-image 1-99 % quantiles), then ``ToTensor`` (/255) and no mean/std normalisation;
evaluation resizes to 128 (bicubic) and center-crops 112 (``linear_dino_B14.py``).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from methods.base import BandStretch, MethodAdapter, Paper, Variant
from methods.dino import DINO_TRAINING

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "VH", "VV")
# Per-band mean / std of the raw values the stretch uses: S2 from SeCo's BAND_STATS
# (datasets/BigEarthNet/bigearthnet_dataset_seco.py), S1 (dB) from MEAN_S1 / STD_S1
# (datasets/BigEarthNet/bigearthnet_dataset_seco_lmdb_B14.py), in BANDS order.
_MEAN = (340.76769064, 429.9430203, 614.21682446, 590.23569706, 950.68368468, 1792.46290469, 2075.46795189,
         2218.94553375, 2266.46036911, 2246.0605464, 1594.42694882, 1009.32729131, -19.22, -12.59)  # fmt: skip
_STD = (554.81258967, 572.41639287, 582.87945694, 675.88746967, 729.89827633, 1096.01480586, 1273.45393088,
        1365.45589904, 1356.13789355, 1302.3292881, 1079.19066363, 818.86747235, 5.42, 5.04)  # fmt: skip
# normalize(): uint8 from mean +- 2 std; S1 first clipped to its per-image 1 / 99 % quantiles (LMDBDataset).
STRETCH = BandStretch(mean=_MEAN, std=_STD, n_std=2.0, quantize=True, clip_bands=("VH", "VV"), quantiles=(0.01, 0.99))
_SCALING = (
    "per band: uint8 from [mean - 2 std, mean + 2 std] (S1 first clipped to its 1-99 % quantiles), then /255; "
    "no mean/std normalisation; a missing modality is fed as zeros"
)


class DinoMM(MethodAdapter):
    name = "dino-mm"
    paper = Paper(
        title="Self-supervised Vision Transformers for Joint SAR-optical Representation Learning",
        arxiv="2204.05381",
        code_url="https://github.com/zhu-xlab/DINO-MM",
        venue="IGARSS 2022",
    )
    variants = (
        Variant(
            name="vits8",
            arch="vit_small_patch8_224",
            model_kwargs={"in_chans": len(BANDS), "img_size": 112},
            weights_url="hf-hub:wangyi111/dino-mm/B14_vits8_dinomm_ep99.pth",
            file_name="B14_vits8_dinomm_ep99.pth",
            license="Apache-2.0",
            checkpoint_keys=("teacher",),
            strip_prefixes=("module.", "backbone."),
            drop=("head.*",),
            # DINO's save_dict. The real file's pos_embed is 28x28 and resampled at load; the inverse of that is not
            # exact, so the contract test writes the native 14x14 table (tests/methods/test_dino_mm.py: the 28x28 one).
            official_layouts=(DINO_TRAINING,),
            params_m=21.7,
            pos_embed_grids=(28,),  # the released file's 224-px table, resampled at load as DINO does at run time
            data_config={
                "mean": (0.0,) * len(BANDS),
                "std": (1.0,) * len(BANDS),
                "crop_pct": 112 / 128,
                "interpolation": "bicubic",
                "band_order": BANDS,
                "band_scaling": STRETCH,
                "notes": _SCALING,
            },
            notes="14 bands (S2 x12 without B10, then S1 VH, VV) at 112 px; pos_embed 28x28 -> 14x14 at load with "
            "DINO's interpolation; sha256 not published",
        ),
    )

    def convert(self, sd: dict[str, torch.Tensor], variant: Variant) -> tuple[dict[str, torch.Tensor], list[str]]:
        pos = sd.get("pos_embed")
        grid = int(variant.model_kwargs["img_size"]) // 8  # patch size 8
        if pos is None or pos.ndim != 3:
            return sd, []
        side = math.isqrt(pos.shape[1] - 1)
        if side == grid or side * side != pos.shape[1] - 1:
            return sd, []
        patch = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
        # DINO's interpolate_pos_encoding, with the +0.1 it adds "to avoid floating point error".
        patch = F.interpolate(patch, scale_factor=((grid + 0.1) / side,) * 2, mode="bicubic")
        patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)
        sd = {**sd, "pos_embed": torch.cat([pos[:, :1], patch], dim=1)}
        return sd, [
            f"pos_embed {list(pos.shape)} -> {list(sd['pos_embed'].shape)} (DINO bicubic interpolation "
            f"for {grid * 8} px, no antialias)"
        ]
