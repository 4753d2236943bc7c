"""The COCO detection protocols: flat frozen dataclasses (no protocol derives from another), torch- and mm*-free.

Each class declares every field with its paper value, so reading one class tells the whole recipe. The three share
only the smoke setting (:data:`COCO_SMOKE`), which is not a paper value. Their hashes are pinned by
``tests/dense/test_protocols.py``: records written before the protocols were flattened keep matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from benchmarks.protocol import Protocol

# DETR-style multi-scale training (Swin/XCiT/SelfPatch/GC ViT detection configs): short side in 480..800 step 32.
DETR_SCALES: tuple[int, ...] = tuple(range(480, 801, 32))

# The smoke setting of all three COCO protocols: 2 epochs of 128-px images, batch 2, a short warmup and a higher
# lr so that a few iterations move the heads. It exercises every code path of the paper setting (multi-scale +
# crop branch, checkpoint per epoch, resume) on CPU in tens of seconds.
COCO_SMOKE: dict[str, Any] = {
    "epochs": 2,
    "lr_steps": (2,),
    "warmup_iters": 2,
    "lr": 2e-4,
    "base_batch_size": 2,
    "batch_per_gpu": 2,
    "train_scales": (96, 112, 128),
    "crop_prescales": (80, 96, 112),
    "crop_size": (64, 96),
    "max_size": 160,
    "test_scale": (160, 128),
    "amp": False,
    "num_workers": 0,
    "log_interval": 1,
    # Narrower heads and fewer RoIs: at full width the mask head alone costs ~10 s per CPU iteration once the
    # RPN finds the (large) synthetic objects and most of the 512 sampled RoIs become positives.
    "fpn_channels": 64,
    "fc_channels": 256,
    "rcnn_samples": 64,
    "proposals": 200,
}


@dataclass(frozen=True)
class CocoDetProtocol(Protocol):
    """Mask R-CNN + FPN, 1x schedule: SelfPatch's COCO protocol (papers_part1.md § SelfPatch (b)).

    From ``alinlab/SelfPatch`` ``detection/configs/selfpatch/mask_rcnn_vit_small_12_p16_1x_coco.py`` (mmdet 2.x):
    12 epochs, LR x0.1 at epochs 8 and 11, linear warmup over 1000 iterations from 0.001x; AdamW lr 5e-5,
    betas (0.9, 0.999), weight decay 0.05 except parameters whose name contains ``pos_embed``/``cls_token``/
    ``norm``; drop-path 0.05; DETR-style augmentation (flip, then either a multi-scale resize with short side
    480..800 and long side <= 1333, or resize 400/500/600 + random crop 384..600 + multi-scale resize); test at
    (1333, 800); fp16; SyncBN in the pyramid.

    **LR scaling rule.** The config sets ``lr = 1e-4 / 2`` with 1 image per GPU, i.e. Swin's 1e-4 at batch 16
    halved for a total batch of 8 (8 GPUs x 1; the GPU count is not stated, 8 is the XCiT/Swin setting).
    We therefore read ``lr`` as the rate for ``base_batch_size = 8`` and scale it linearly with the real total
    batch, ``lr_eff = lr * world_size * batch_per_gpu / base_batch_size`` (mmengine's ``auto_scale_lr``), so
    8 GPUs x 1 image reproduce the paper exactly. The effective lr is written into the record.

    **Attention heads.** SelfPatch's official detection config builds the ViT-S backbone with ``num_heads=8``
    (copied from XCiT-S12) although it was pretrained with 6; the weights load either way because qkv is
    [1152, 384]. ``backbone_num_heads=None`` (default) keeps the pretrained head count, which is faithful to
    pretraining; ``backbone_num_heads=8`` reproduces the official config (and, presumably, the paper's number).

    Evaluation happens once, after the last epoch (the mmdet 2.x config evaluated every epoch and the paper
    reports the final one).
    """

    NAME: ClassVar[str] = "selfpatch-coco-maskrcnn-fpn-1x"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict[str, Any]] = COCO_SMOKE

    detector: str = "mask_rcnn"  # "mask_rcnn" | "cascade_mask_rcnn"
    bbox_head: str = "shared2fc"  # "shared2fc" (mmdet default, L1) | "4conv1fc_giou" (Swin/GC ViT cascade)
    epochs: int = 12
    lr_steps: tuple[int, ...] = (8, 11)  # epochs after which the lr is multiplied by 0.1
    warmup_iters: int = 1000
    warmup_ratio: float = 0.001
    lr: float = 5e-5  # for base_batch_size images per step; scaled linearly (see the class docstring)
    base_batch_size: int = 8
    batch_per_gpu: int = 1
    scale_lr: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.05
    no_decay_keys: tuple[str, ...] = ("pos_embed", "cls_token", "norm")  # substrings of parameter names
    drop_path_rate: float = 0.05
    backbone_num_heads: int | None = None  # None: as pretrained; 8: SelfPatch's official config for ViT-S
    pyramid_strides: tuple[int, ...] = (4, 8, 16, 32)
    fpn_channels: int = 256  # also the width of the RPN, RoI features and mask head convs (mmdet: 256)
    fpn_num_outs: int = 5
    fc_channels: int = 1024  # box head fully connected width
    rcnn_samples: int = 512  # RoIs sampled per image for the box/mask heads (25% positive)
    proposals: int = 1000  # RPN proposals kept per image (train and test; nms_pre is twice this in training)
    train_scales: tuple[int, ...] = DETR_SCALES  # short sides of the multi-scale branch
    crop_prescales: tuple[int, ...] = (400, 500, 600)  # short sides before the random crop
    crop_size: tuple[int, int] = (384, 600)  # (min, max) side of the random crop, 'absolute_range'
    max_size: int = 1333  # long-side cap of every resize
    test_scale: tuple[int, int] = (1333, 800)  # (long, short)
    flip_prob: float = 0.5
    sync_bn: bool = True  # SyncBN in the pyramid / conv heads (falls back to BN in a single process)
    amp: bool = True  # fp16 mixed precision on CUDA (ignored on CPU)
    train_split: str = "train2017"
    val_split: str = "val2017"
    num_workers: int = 2
    checkpoint_interval: int = 1  # epochs; the last two checkpoints are kept for resume
    log_interval: int = 50


@dataclass(frozen=True)
class CocoMaskRcnn3xProtocol(Protocol):
    """GC ViT's Mask R-CNN 3x protocol (papers_part2.md § GC ViT; NVlabs/GCVit ``detection/configs/gcvit/
    mask_rcnn_gcvit_tiny_3x_coco.py``, mmdet 2.19): 36 epochs, steps 27/33, warmup 2500 iterations, AdamW 1e-4
    at a total batch of 16 (8 GPUs x 2, the mmdet ``coco_instance`` default), wd 0.05 except relative position
    bias tables and norms, drop-path 0.2 (GC ViT-T), same DETR-style augmentation, fp16, test at (1333, 800)."""

    NAME: ClassVar[str] = "gcvit-coco-maskrcnn-3x"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict[str, Any]] = COCO_SMOKE

    detector: str = "mask_rcnn"  # "mask_rcnn" | "cascade_mask_rcnn"
    bbox_head: str = "shared2fc"  # "shared2fc" (mmdet default, L1) | "4conv1fc_giou" (Swin/GC ViT cascade)
    epochs: int = 36
    lr_steps: tuple[int, ...] = (27, 33)
    warmup_iters: int = 2500
    warmup_ratio: float = 0.001
    lr: float = 1e-4  # for base_batch_size images per step; scaled linearly (see CocoDetProtocol)
    base_batch_size: int = 16
    batch_per_gpu: int = 2
    scale_lr: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.05
    # substrings of parameter names
    no_decay_keys: tuple[str, ...] = ("relative_position_bias_table", "rel_pos", "norm")
    drop_path_rate: float = 0.2
    backbone_num_heads: int | None = None  # None: as pretrained
    pyramid_strides: tuple[int, ...] = (4, 8, 16, 32)
    fpn_channels: int = 256  # also the width of the RPN, RoI features and mask head convs (mmdet: 256)
    fpn_num_outs: int = 5
    fc_channels: int = 1024  # box head fully connected width
    rcnn_samples: int = 512  # RoIs sampled per image for the box/mask heads (25% positive)
    proposals: int = 1000  # RPN proposals kept per image (train and test; nms_pre is twice this in training)
    train_scales: tuple[int, ...] = DETR_SCALES  # short sides of the multi-scale branch
    crop_prescales: tuple[int, ...] = (400, 500, 600)  # short sides before the random crop
    crop_size: tuple[int, int] = (384, 600)  # (min, max) side of the random crop, 'absolute_range'
    max_size: int = 1333  # long-side cap of every resize
    test_scale: tuple[int, int] = (1333, 800)  # (long, short)
    flip_prob: float = 0.5
    sync_bn: bool = True  # SyncBN in the pyramid / conv heads (falls back to BN in a single process)
    amp: bool = True  # fp16 mixed precision on CUDA (ignored on CPU)
    train_split: str = "train2017"
    val_split: str = "val2017"
    num_workers: int = 2
    checkpoint_interval: int = 1  # epochs; the last two checkpoints are kept for resume
    log_interval: int = 50


@dataclass(frozen=True)
class CocoCascade3xProtocol(Protocol):
    """GC ViT's Cascade Mask R-CNN 3x protocol: as :class:`CocoMaskRcnn3xProtocol`, with three cascade stages of
    Swin-style ``4conv1fc`` box heads (SyncBN, GIoU loss x10, decoded-box regression)."""

    NAME: ClassVar[str] = "gcvit-coco-cascade-3x"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict[str, Any]] = COCO_SMOKE

    detector: str = "cascade_mask_rcnn"
    bbox_head: str = "4conv1fc_giou"  # Swin-style 4conv1fc, GIoU loss
    epochs: int = 36
    lr_steps: tuple[int, ...] = (27, 33)
    warmup_iters: int = 2500
    warmup_ratio: float = 0.001
    lr: float = 1e-4  # for base_batch_size images per step; scaled linearly (see CocoDetProtocol)
    base_batch_size: int = 16
    batch_per_gpu: int = 2
    scale_lr: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.05
    # substrings of parameter names
    no_decay_keys: tuple[str, ...] = ("relative_position_bias_table", "rel_pos", "norm")
    drop_path_rate: float = 0.2
    backbone_num_heads: int | None = None  # None: as pretrained
    pyramid_strides: tuple[int, ...] = (4, 8, 16, 32)
    fpn_channels: int = 256  # also the width of the RPN, RoI features and mask head convs (mmdet: 256)
    fpn_num_outs: int = 5
    fc_channels: int = 1024  # box head fully connected width
    rcnn_samples: int = 512  # RoIs sampled per image for the box/mask heads (25% positive)
    proposals: int = 1000  # RPN proposals kept per image (train and test; nms_pre is twice this in training)
    train_scales: tuple[int, ...] = DETR_SCALES  # short sides of the multi-scale branch
    crop_prescales: tuple[int, ...] = (400, 500, 600)  # short sides before the random crop
    crop_size: tuple[int, int] = (384, 600)  # (min, max) side of the random crop, 'absolute_range'
    max_size: int = 1333  # long-side cap of every resize
    test_scale: tuple[int, int] = (1333, 800)  # (long, short)
    flip_prob: float = 0.5
    sync_bn: bool = True  # SyncBN in the pyramid / conv heads (falls back to BN in a single process)
    amp: bool = True  # fp16 mixed precision on CUDA (ignored on CPU)
    train_split: str = "train2017"
    val_split: str = "val2017"
    num_workers: int = 2
    checkpoint_interval: int = 1  # epochs; the last two checkpoints are kept for resume
    log_interval: int = 50
