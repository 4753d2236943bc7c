"""The BigEarthNet-MM protocols (DINO-MM's linear probe and fine-tuning): torch-free frozen dataclasses.

Sources, field by field, are zhu-xlab/DINO-MM at its released commit: ``linear_dino_B14.py`` (+ ``_B12`` / ``_B2``
for S2- / S1-only), ``scripts/slurm/sar_optical/srun_B14*_lc_dino_{1,100}.sh`` (linear),
``srun_B14_sup_vit_{1,100}.sh`` + ``sup_rn_B14.py`` (the supervised scripts, whose ``--pretrained`` line is how the
repository fine-tunes), ``datasets/BigEarthNet/bigearthnet_dataset_seco_lmdb_B14.py`` (subsets, scaling), and
torchgeo 0.8.1's ``BigEarthNet`` / ``BigEarthNetV2`` (data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from benchmarks.protocol import Protocol

Modality = Literal["s1", "s2", "s1s2"]
Adaptation = Literal["rgb", "tile"]
Version = Literal["v1", "v2"]


@dataclass(frozen=True)
class BigEarthNetLinearProtocol(Protocol):
    """DINO-MM's linear evaluation on BigEarthNet-MM: frozen encoder, one linear head, multi-label.

    Data (``version``, ``modality``, ``num_classes``): torchgeo's ``BigEarthNet`` (v1, the data DINO-MM used; its
    split CSVs pair each S2 patch with its S1 patch) or ``BigEarthNetV2``; ``modality`` s1s2 = 14 bands (DINO-MM's
    ``linear_dino_B14.py``), s2 = S1 fed as zeros (``_B12.py``), s1 = S2 fed as zeros (``_B2.py``), the sensor drop
    being the encoder's input contract (``SensorDrop``). ``num_classes`` 19 = the new nomenclature
    (``use_new_labels=True``); 43 is the CLC Level-3 option (v1 only).

    Bands and scaling are the encoder's (``DataConfig.band_order`` / ``band_scaling``), matched by name. An encoder
    without a band order (any ImageNet model) sees the data through ``rgb_adaptation``: ``rgb`` = B04/B03/B02 as
    R/G/B, ``tile`` = its input convolution repeated over the modality's bands (S2 B01...B12 then VH, VV) and scaled by
    3 / C (timm's ``adapt_input_conv``, computed as a fold of the bands); both first scale each band as SeCo and
    DINO-MM do (uint8 from mean +- 2 std of SeCo's BigEarthNet statistics, S1 clipped to its per-image 1 / 99 %
    quantiles, / 255), then normalise with the encoder's mean/std (band ``c`` of ``tile`` with channel ``c % 3``'s).

    Evaluation transform: Resize ``resize`` (bicubic) + CenterCrop ``resolution`` (``val_transform``), for every
    encoder. Features: CLS of the last ``n_last_blocks`` blocks, concatenated (``get_intermediate_layers(inp, 4)``;
    a hierarchical encoder offers only its last stage, avg-pooled). Head: SGD, momentum 0.9, wd 0, lr 0.01 x
    batch / 256 with batch 4 x 64, 100 epochs, cosine, N(0, 0.01) init, ``MultiLabelSoftMarginLoss`` (= BCE with
    logits averaged over classes). ``label_fraction`` of train (``--train_frac`` 0.01 / 1) drawn with
    ``label_seed`` (the scripts' 42).

    Metrics on val (the split DINO-MM reports) and test: dataset-level micro / macro mAP, micro / macro F1 at
    ``threshold``, per-class AP (torchmetrics); and ``val_mAP_micro_batchavg``: sklearn-style micro AP per val batch of
    ``eval_batch_size``, averaged weighted by batch size — DINO-MM's logged figure, the one its reported numbers
    compare with.

    Deviations (in the record's probe card): features are cached from the eval transform, so the head trains without
    DINO-MM's RandomResizedCrop 128 + flip, at 112 px instead of 128; the cosine steps per iteration, not per epoch;
    the head of the last epoch is reported, not the best val epoch (selecting on the reported split); the subset is
    a seeded permutation's prefix (nested: 1 % within 10 % within 100 %), not ``rng.choice`` with replacement;
    torchgeo's v1 splits are BigEarthNet-MM's official 19-class lists, while DINO-MM's LMDB came from SeCo's
    lists minus snow / cloud patches; torchgeo resamples every band bilinearly to 120 px before the stretch, where
    DINO-MM stretched S2 at native size and resized to 128 with cv2 bicubic.
    """

    NAME: ClassVar[str] = "bigearthnet-linear"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 32, "resize": 36, "epochs": 60, "batch_size": 16, "lrs": (1.0,)}

    version: Version = "v1"
    modality: Modality = "s1s2"
    num_classes: int = 19
    label_fraction: float = 1.0  # of train: 0.01, 0.1, 1.0
    label_seed: int = 42  # random_subset(..., seed=42)
    rgb_adaptation: Adaptation = "rgb"  # encoders without a band order
    n_last_blocks: int = 4
    lrs: tuple[float, ...] = (0.01,)  # --lr 0.01, scaled by batch_size / 256
    epochs: int = 100
    batch_size: int = 256  # 4 GPUs x --batch_size_per_gpu 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    holdout_fraction: float = 0.0  # one head: nothing to select, all of the labelled train fits it
    resolution: int = 112  # CenterCrop(112)
    resize: int = 128  # Resize(128, interpolation='BICUBIC')
    eval_batch_size: int = 64  # the val loader's batch, for the batch-averaged micro AP
    threshold: float = 0.5


@dataclass(frozen=True)
class BigEarthNetFinetuneProtocol(Protocol):
    """End-to-end fine-tuning on BigEarthNet-MM with DINO-MM's supervised schedule.

    DINO-MM's repository fine-tunes with its supervised scripts given ``--pretrained`` (the commented line of
    ``srun_B14_sup_vit_{1,100}.sh``): AdamW lr 1e-3 (torch's default weight decay 0.01; the scripts set none),
    batch 4 x 64, 100 epochs, cosine per epoch (``--cos``), ``MultiLabelSoftMarginLoss``; train RandomResizedCrop 112
    (scale 0.08-1, bilinear) + horizontal flip, eval Resize 128 + CenterCrop 112 (``sup_rn_B14.py``). The head is a
    new linear layer on ``forward_global`` (N(0, 0.01), bias 0). Data, modality, label fraction, adaptations and
    metrics as :class:`BigEarthNetLinearProtocol` (for ``tile`` the folded input equals the tiled convolution at
    initialisation; the 3-channel convolution is what trains).

    Deviations (probe card): the last epoch is reported, not the best val epoch; ``sup_vit_B14_moco.py`` itself is not
    in the repository (its schedule is read from the script that calls it and from ``sup_rn_B14.py``); one process
    (``--launcher`` is not used).
    """

    NAME: ClassVar[str] = "bigearthnet-finetune"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"resolution": 32, "resize": 36, "train_crop": 32, "epochs": 2, "batch_size": 16}

    version: Version = "v1"
    modality: Modality = "s1s2"
    num_classes: int = 19
    label_fraction: float = 1.0
    label_seed: int = 42
    rgb_adaptation: Adaptation = "rgb"
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3  # --lr 0.001 --optimizer AdamW
    weight_decay: float = 0.01  # torch.optim.AdamW's default
    train_crop: int = 112  # RandomResizedCrop(112)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    resolution: int = 112
    resize: int = 128
    eval_batch_size: int = 64
    threshold: float = 0.5
