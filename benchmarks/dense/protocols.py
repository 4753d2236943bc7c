"""The dense protocols (COCO detection, ADE20K segmentation): flat frozen dataclasses (no protocol derives from
another), torch- and mm*-free.

Each class declares every field with its paper value, so reading one class tells the whole recipe. The COCO classes
share only their smoke setting (:data:`COCO_SMOKE`), the ADE20K ones :data:`ADE20K_SMOKE`; neither is a paper value.
Their hashes are pinned by ``tests/dense/test_protocols.py``: records written before the protocols were flattened
keep matching.
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


@dataclass(frozen=True)
class CocoCascade1xProtocol(Protocol):
    """iBOT's COCO protocol: Cascade Mask R-CNN 1x with layer-wise lr decay (papers_part2.md § baselines, iBOT).

    From ``bytedance/ibot`` ``evaluation/object_detection/configs/cascade_rcnn/vit_base_giou_4conv1f_coco_3x.py``
    as its README runs it for the 1x numbers (``lr_config.step=8,11 runner.max_epochs=12
    optimizer.paramwise_cfg.layer_decay_rate=0.75``, 8 GPUs x ``samples_per_gpu=2``): 12 epochs, LR x0.1 after
    epochs 8 and 11, mmdet's ``schedule_1x`` warmup (500 iterations from 0.001x); AdamW lr 1e-4 at a total batch
    of 16, betas (0.9, 0.999), weight decay 0.05 through BEiT's ``LayerDecayOptimizerConstructor`` with
    ``layer_decay_rate`` 0.75 over the 12 blocks; drop-path 0.2 (ViT-B); three cascade stages of Swin-style
    ``4conv1fc`` box heads (SyncBN, GIoU loss x10); the XCiT pyramid (deconv / identity / max-pool) on blocks
    3/5/7/11; DETR-style augmentation as the other COCO tasks; fp16; test at (1333, 800).

    **Layer decay** (rule, for encoders of family ``vit``): parameter ``p`` of block ``i`` trains at
    ``lr * layer_decay ** (L - i)`` for an ``L``-block encoder, the patch/position embeddings and prefix tokens at
    ``layer_decay ** (L + 1)``, the neck and heads at ``lr`` (BEiT's rule; :meth:`methods.Encoder.layer_ids`).
    Hierarchical encoders train at one lr. Weight decay: BEiT's constructor skips 1-D parameters, biases,
    ``pos_embed`` and ``cls_token``; ``no_decay_keys`` lists those as name substrings ("norm" covers the
    norms' weights, "gamma" layer-scale vectors).
    """

    NAME: ClassVar[str] = "ibot-coco-cascade-1x"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict[str, Any]] = COCO_SMOKE

    detector: str = "cascade_mask_rcnn"
    bbox_head: str = "4conv1fc_giou"  # Swin-style 4conv1fc, GIoU loss
    epochs: int = 12
    lr_steps: tuple[int, ...] = (8, 11)
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    lr: float = 1e-4  # for base_batch_size images per step; scaled linearly (see CocoDetProtocol)
    base_batch_size: int = 16
    batch_per_gpu: int = 2
    scale_lr: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.05
    # substrings of parameter names (BEiT's rule: biases, 1-D parameters, position embedding, class token)
    no_decay_keys: tuple[str, ...] = ("bias", "norm", "gamma", "pos_embed", "cls_token")
    layer_decay: float = 0.75  # per-block lr decay for plain ViTs (1.0 = none); see the class docstring
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


# ------------------------------------------------------------------------------------------------ ADE20K
# ADE20K's multi-scale test ratios (mmseg's ADE20K configs, Swin/BEiT/XCiT): 0.5 ... 1.75 of the test scale.
ADE20K_MS_RATIOS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)

# The smoke setting of the ADE20K protocols: 6 iterations of batch 2 on 64 x 64 crops of ~100-px images, narrow
# heads, a checkpoint every 3 iterations (so resume is exercised) and a higher lr so a few steps move the head.
ADE20K_SMOKE: dict[str, Any] = {
    "iters": 6,
    "warmup_iters": 2,
    "lr": 1e-3,
    "base_batch_size": 2,
    "batch_per_gpu": 2,
    "crop_size": (64, 64),
    "train_scale": (128, 64),
    "test_scale": (128, 64),
    "neck_channels": 32,
    "head_channels": 32,
    "num_workers": 0,
    "checkpoint_interval": 3,
    "log_interval": 1,
}


@dataclass(frozen=True)
class Ade20kSemFpnProtocol(Protocol):
    """Semantic FPN, 40k iterations: SelfPatch's ADE20K protocol (protocols_wave2.md § ADE20K Semantic FPN 40k;
    papers_part1.md § SelfPatch (b)).

    From ``alinlab/SelfPatch`` ``segmentation/configs/semfpn_vit-s16_512x512_40k_ade20k.py`` with its
    ``_base_/datasets/ade20k.py`` and mmseg 0.x's ``schedule_40k.py`` (hyper-parameters "adopted from XCiT", its
    README says), field by field:

    - model: ``EncoderDecoder``; backbone blocks 2/5/8/11 (``vit_indices``) of the 12-block ViT-S/16, drop-path
      0.1, 6 heads as pretrained; **no pyramid** (``pyramid=False``): the four stride-16 maps go straight into
      ``FPN`` (256 channels, 4 outputs), and ``FPNHead`` (128 channels, dropout 0.1, SyncBN) declares
      ``feature_strides`` [4, 8, 16, 32], so its per-level upsampling runs and is resized back to stride 16
      (``segmentation/backbones/vit_SelfPatch.py`` returns the block outputs reshaped, no cls token, no final norm).
      ``pyramid=True`` inserts the XCiT simple pyramid instead (strides 4/8/16/32), the same neck as COCO;
    - data: ``LoadAnnotations(reduce_zero_label=True)``; ``Resize`` to scale (2048, 512) with ratio 0.5-2.0;
      ``RandomCrop`` 512 x 512, ``cat_max_ratio`` 0.75; flip 0.5; ``PhotoMetricDistortion``; pad with 0 / 255;
    - optimiser: AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except ``pos_embed``, ``cls_token`` and
      ``norm`` parameters; 4 images per GPU x 4 GPUs = 16 (a config comment says "8 GPUs x 2": 16 either way);
    - schedule: 40k iterations, poly decay with power 1.0 to 0, linear warmup over 1500 iterations from 1e-6 x lr;
    - test: single-scale, whole-image inference, resized to (2048, 512) keeping the ratio; mIoU at the end.

    **Rules.** ``vit_indices`` are for a 12-block ViT: an ``L``-block plain ViT uses ``round((i + 1) * L / 12) - 1``
    for each ``i`` (the same fractions of depth); hierarchical encoders feed their stages (strides 4..32) to FPN as
    they are. ``lr`` is for ``base_batch_size`` images per step and is scaled linearly with the real total batch.
    Layer decay is off (``layer_decay`` 1.0), as in the config. Deviation: mmseg 1.x replaces mmseg 0.x's
    ``MultiScaleFlipAug`` test pipeline by ``Resize(keep_ratio)``, the same operation.
    """

    NAME: ClassVar[str] = "selfpatch-ade20k-semfpn-40k"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict[str, Any]] = ADE20K_SMOKE

    head: str = "semfpn"
    pyramid: bool = False  # SelfPatch: the stride-16 maps go to FPN as they are; True: the XCiT simple pyramid
    vit_indices: tuple[int, ...] = (2, 5, 8, 11)  # for a 12-block plain ViT (scaled to other depths)
    pyramid_strides: tuple[int, ...] = (4, 8, 16, 32)  # FPNHead's feature_strides
    neck_channels: int = 256
    head_channels: int = 128
    dropout_ratio: float = 0.1
    drop_path_rate: float = 0.1
    iters: int = 40_000
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    min_lr: float = 0.0
    lr: float = 6e-5  # for base_batch_size images per step; scaled linearly
    base_batch_size: int = 16
    batch_per_gpu: int = 4
    scale_lr: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    no_decay_keys: tuple[str, ...] = ("pos_embed", "cls_token", "norm")  # substrings of parameter names
    layer_decay: float = 1.0  # per-block lr decay for plain ViTs (1.0 = none)
    crop_size: tuple[int, int] = (512, 512)
    train_scale: tuple[int, int] = (2048, 512)  # (long, short) before ratio_range
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    test_scale: tuple[int, int] = (2048, 512)
    test_mode: str = "whole"  # "whole" | "slide"
    slide_stride: tuple[int, int] = (341, 341)  # only for test_mode "slide"
    ms_ratios: tuple[float, ...] = ()  # multi-scale + flip test ratios; empty: single-scale only
    sync_bn: bool = True
    amp: bool = False  # mmseg 0.x configs without fp16
    train_split: str = "training"
    val_split: str = "validation"
    num_workers: int = 4
    checkpoint_interval: int = 4000  # iterations; the last two checkpoints are kept for resume
    log_interval: int = 50


@dataclass(frozen=True)
class Ade20kUperNetProtocol(Protocol):
    """UperNet, 160k iterations, 512 x 512: the XCiT/Swin ADE20K recipe of SelfPatch's and GC ViT's UperNet rows
    (papers_part1.md § SelfPatch (b), SP-ViT; papers_part2.md § GC ViT, baselines).

    SelfPatch's UperNet config is not in its repository; its segmentation README says its hyper-parameters are
    XCiT's, whose ``semantic_segmentation/configs/xcit/upernet/upernet_xcit_small_12_p16_160k_ade20k.py`` (with
    ``_base_/models/upernet_xcit_p16.py`` and ``_base_/datasets/ade20k.py``) is, field by field:

    - model: blocks 3/5/7/11 through the simple pyramid (strides 4/8/16/32); ``UPerHead`` 512 channels, PPM
      scales 1/2/3/6, dropout 0.1, SyncBN; ``FCNHead`` auxiliary on level 2, 256 channels, 1 conv, no input concat,
      loss weight 0.4; hierarchical encoders (GC ViT, Swin's recipe) feed their stages directly; drop-path 0.05
      (XCiT-S12/16's value; XCiT-T12/16 uses 0.0, SelfPatch's Semantic FPN 0.1);
    - data: as the Semantic FPN task (scale (2048, 512), ratio 0.5-2.0, 512 crop, ``cat_max_ratio`` 0.75, flip,
      photometric distortion, ``reduce_zero_label``);
    - optimiser: AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except position embeddings, relative
      position bias tables and norms; 8 GPUs x 2 images = 16;
    - schedule: 160k iterations, poly (power 1.0, to 0), linear warmup 1500 iterations from 1e-6 x lr;
    - test: whole image at (2048, 512), single-scale (``mIoU``), and multi-scale + flip over ratios 0.5-1.75
      (``mIoU_ms``), the second number Swin, GC ViT and SP-ViT report.

    Swin's UperNet recipe, which GC ViT's segmentation follows (its code is not released), has the same optimiser,
    schedule, heads and test; ``drop_path_rate`` is per model there (Swin-T 0.3); here it is XCiT-S12/16's 0.05 for
    every encoder (``--set drop_path_rate=0.3`` for Swin-T's).
    SP-ViT reports single- and multi-scale mIoU and pixel accuracy (``aAcc``) of TokenLabeling's mmseg code.

    **Layer decay** is a field: 1.0 (off) is XCiT's and Swin's value; BEiT, MAE, MFM and SemMAE fine-tune plain
    ViTs with 0.65 (with lr 1e-4 and weight decay 0.05 in MAE), iBOT ViT-B 0.65 and ViT-S 0.9: set it with
    ``--set layer_decay=0.65`` (a different protocol hash). The rule (plain ViTs only) is
    :class:`CocoCascade1xProtocol`'s. ``vit_indices`` scale with depth as in :class:`Ade20kSemFpnProtocol`, and
    ``lr`` is for ``base_batch_size`` images per step, scaled linearly with the real total batch.
    """

    NAME: ClassVar[str] = "xcit-ade20k-upernet-160k"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict[str, Any]] = {**ADE20K_SMOKE, "aux_channels": 16, "ms_ratios": (0.75, 1.25)}

    head: str = "upernet"
    pyramid: bool = True  # the XCiT simple pyramid for plain ViTs
    vit_indices: tuple[int, ...] = (3, 5, 7, 11)  # for a 12-block plain ViT (scaled to other depths)
    pyramid_strides: tuple[int, ...] = (4, 8, 16, 32)
    neck_channels: int = 256  # unused by UperNet (no FPN); kept so both ADE20K protocols read alike
    head_channels: int = 512
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)
    aux_channels: int = 256
    aux_loss_weight: float = 0.4
    dropout_ratio: float = 0.1
    drop_path_rate: float = 0.05  # XCiT-S12/16's upernet config
    iters: int = 160_000
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    min_lr: float = 0.0
    lr: float = 6e-5  # for base_batch_size images per step; scaled linearly
    base_batch_size: int = 16
    batch_per_gpu: int = 2
    scale_lr: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    # substrings of parameter names: XCiT's absolute_pos_embed / relative_position_bias_table / norm, in timm names
    no_decay_keys: tuple[str, ...] = ("pos_embed", "cls_token", "relative_position_bias_table", "rel_pos", "norm")
    layer_decay: float = 1.0  # per-block lr decay for plain ViTs (1.0 = none); see the class docstring
    crop_size: tuple[int, int] = (512, 512)
    train_scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    test_scale: tuple[int, int] = (2048, 512)
    test_mode: str = "whole"  # "whole" | "slide"
    slide_stride: tuple[int, int] = (341, 341)  # only for test_mode "slide" (BEiT/MAE/iBOT: 341 for 512 crops)
    ms_ratios: tuple[float, ...] = ADE20K_MS_RATIOS  # multi-scale + flip test; empty: single-scale only
    sync_bn: bool = True
    amp: bool = False
    train_split: str = "training"
    val_split: str = "validation"
    num_workers: int = 4
    checkpoint_interval: int = 4000  # iterations; the last two checkpoints are kept for resume
    log_interval: int = 50
