"""What the leaderboard knows about tasks and metrics without importing a harness.

Reported numbers exist for tasks that have no harness yet (``imagenet-finetune``, ``coco-cascade-1x``...), so the
site needs a title, a headline metric and each metric's direction from somewhere else. A registered harness's own
metadata always wins over this table (see :func:`leaderboard.collect.task_meta`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    title: str
    headline: str
    group: str  # index section: "classification", "dense", "transfer", "generation", "robustness"


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool = True
    unit: str = "%"


# Order here is the order of the index page; unknown tasks follow alphabetically.
TASKS: dict[str, TaskInfo] = {
    "knn": TaskInfo("ImageNet-1k k-NN on frozen features", "top1", "classification"),
    "linear": TaskInfo("ImageNet-1k linear probe on frozen features", "top1", "classification"),
    "linear-perlayer": TaskInfo("ImageNet-1k linear probe per block", "top1", "classification"),
    "imagenet-finetune": TaskInfo("ImageNet-1k end-to-end fine-tuning", "top1", "classification"),
    "imagenet-supervised": TaskInfo(
        "ImageNet-1k top-1 of the released supervised classifier", "top1", "classification"
    ),
    "coco-maskrcnn-fpn-1x": TaskInfo("COCO Mask R-CNN + FPN, 1x schedule", "bbox_AP", "dense"),
    "coco-maskrcnn-3x": TaskInfo("COCO Mask R-CNN, 3x schedule", "bbox_AP", "dense"),
    "coco-cascade-1x": TaskInfo("COCO Cascade Mask R-CNN, 1x schedule", "bbox_AP", "dense"),
    "coco-cascade-3x": TaskInfo("COCO Cascade Mask R-CNN, 3x schedule", "bbox_AP", "dense"),
    "coco-dino-4scale": TaskInfo("COCO DINO detector, 4-scale head", "bbox_AP", "dense"),
    "ade20k-semfpn-40k": TaskInfo("ADE20K Semantic FPN, 40k iterations", "mIoU", "dense"),
    "ade20k-upernet-160k": TaskInfo("ADE20K UperNet, 160k iterations", "mIoU", "dense"),
    "davis2017-vos": TaskInfo("DAVIS-2017 video object segmentation (label propagation)", "JF_mean", "dense"),
    "bigearthnet-linear": TaskInfo("BigEarthNet-MM linear probe (multi-label)", "mAP", "transfer"),
    "voc-partial": TaskInfo("VOC2007 multi-label recognition with partial labels", "mAP", "transfer"),
    "coco-partial": TaskInfo("MS-COCO multi-label recognition with partial labels", "mAP", "transfer"),
    "nuswide-zsl": TaskInfo("NUS-WIDE zero-shot multi-label recognition", "mAP", "transfer"),
    "copydays-copy-detection": TaskInfo("Copydays copy detection", "mAP", "transfer"),
    "backdoor-htba": TaskInfo("Hidden-trigger backdoor attack on a frozen backbone + linear head", "asr", "robustness"),
    "coco-t2i-zeroshot": TaskInfo("MS-COCO text-to-image, zero-shot", "FID", "generation"),
    "coco-t2i-finetuned": TaskInfo("MS-COCO text-to-image, fine-tuned on COCO", "FID", "generation"),
    "imagenet-cond-gen-256": TaskInfo("ImageNet 256x256 class-conditional generation", "FID", "generation"),
}

METRICS: dict[str, MetricInfo] = {
    "top1": MetricInfo("top-1"),
    "top5": MetricInfo("top-5"),
    # COCO names as benchmarks/dense/coco.py writes them: <iou type>_<COCOeval stat>.
    "bbox_AP": MetricInfo("AP box"),
    "segm_AP": MetricInfo("AP mask"),
    "bbox_AP50": MetricInfo("AP50 box"),
    "bbox_AP75": MetricInfo("AP75 box"),
    "segm_AP50": MetricInfo("AP50 mask"),
    "segm_AP75": MetricInfo("AP75 mask"),
    "mIoU": MetricInfo("mIoU"),
    "mIoU_ms": MetricInfo("mIoU (multi-scale)"),
    "aAcc": MetricInfo("pixel acc."),
    "mAcc": MetricInfo("mean acc."),
    "mAP": MetricInfo("mAP"),
    "JF_mean": MetricInfo("J&F mean"),
    "J_mean": MetricInfo("J mean"),
    "F_mean": MetricInfo("F mean"),
    "asr": MetricInfo("attack success", higher_is_better=False),
    "asr_blocked": MetricInfo("attack success after blocking", higher_is_better=False),
    "clean_top1": MetricInfo("clean top-1"),
    "FID": MetricInfo("FID", higher_is_better=False, unit=""),
    "IS": MetricInfo("IS", unit=""),
}
_PATTERNS: list[tuple[re.Pattern[str], MetricInfo]] = [
    (re.compile(r"top1_b(\d+)"), MetricInfo("top-1 block {0}")),
    (re.compile(r"top1_k(\d+)"), MetricInfo("top-1 k={0}")),
]


def task_info(task: str) -> TaskInfo:
    """The catalog entry, or a plain one for a task this table does not know."""
    return TASKS.get(task) or TaskInfo(task, "", "other")


def metric_info(name: str) -> MetricInfo:
    """The catalog entry for ``name`` (regex families such as ``top1_b7`` included), or a neutral default."""
    if name in METRICS:
        return METRICS[name]
    for pattern, info in _PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            return MetricInfo(info.label.format(*m.groups()), info.higher_is_better, info.unit)
    return MetricInfo(name)


def task_order(tasks: list[str] | set[str]) -> list[str]:
    """Catalog order first, then the rest alphabetically."""
    known = [t for t in TASKS if t in tasks]
    return known + sorted(set(tasks) - set(TASKS))
