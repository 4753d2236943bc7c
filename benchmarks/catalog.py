"""The task catalogue: one declarative, torch-free :class:`TaskSpec` per task id.

Everything that *describes* a task lives here — title, group, protocol class, metrics with their direction and
range, headline, the synthetic data that smoke-tests it, and the identity of the data a paper-track run must use.
The leaderboard, ``vitbench tasks``, ``vitbench validate`` and the CLI read only this module; a harness module
(which imports torch) is imported only to run a task, through :func:`benchmarks.harness.load_harness`.

Tasks with reported numbers but no harness yet (``imagenet-finetune``, ``davis2017-vos``...) are catalogued too,
with ``harness=None``, so the site can title them and knows each metric's direction.

Adding a task is one harness module + one :func:`task` call below (+ a synthesizer in :mod:`benchmarks.synth`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.classification.protocols import KnnProtocol, LinearProtocol, PerLayerProtocol
from benchmarks.dense.protocols import CocoCascade3xProtocol, CocoDetProtocol, CocoMaskRcnn3xProtocol
from benchmarks.multilabel.protocols import (
    CocoPartialProtocol,
    CocoZslProtocol,
    NusWidePartialProtocol,
    NusWideZslProtocol,
    VocPartialProtocol,
)
from benchmarks.protocol import Protocol
from benchmarks.records import MetricMeta
from methods._names import Registry
from methods.errors import VitbenchError

GROUPS = ("classification", "dense", "transfer", "robustness", "generation", "other")


@dataclass(frozen=True)
class DataIdentity:
    """The data a paper-track result must be computed on (the trust checks compare a record's dataset to it).

    ``splits`` maps each split the task reads to its number of samples; ``n_classes`` is the label-space size;
    ``classes_sha256`` is the sha256 of the newline-joined class list in label order, and ``annotations`` the
    sha256 of each annotation file, where the data has such files (COCO json, ...). ``None`` = not pinned.
    """

    name: str
    splits: Mapping[str, int]
    n_classes: int | None = None
    classes_sha256: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # where the sizes come from


@dataclass(frozen=True)
class TaskSpec:
    """One task. ``metrics`` maps a metric name, or a regular expression starting with ``^`` (per-layer families
    such as ``^top1_b\\d+$``), to its :class:`MetricMeta`; ``headline`` is the metric leaderboards sort by."""

    id: str
    title: str
    group: str
    headline: str
    metrics: Mapping[str, MetricMeta]
    protocol: type[Protocol] | None = None  # None: reported-only, no harness yet
    harness: str | None = None  # "module:Class" of the harness; imported only to run
    synth_kind: str | None = None  # the `vitbench data synth KIND` that makes smoke data for this task
    dataset_kind: str | None = None  # the on-disk layout --data must have ("imagefolder", "coco", ...)
    data: DataIdentity | None = None  # the data a paper-track record must be computed on
    description: str = ""

    @property
    def runnable(self) -> bool:
        return self.harness is not None and self.protocol is not None

    def metric_meta(self, name: str) -> MetricMeta | None:
        if name in self.metrics:
            return self.metrics[name]
        for pattern, meta in self.metrics.items():
            if pattern.startswith("^") and re.fullmatch(pattern, name):
                return meta
        return None

    def protocol_for(self, smoke: bool, overrides: Mapping[str, Any] | None = None) -> Protocol:
        """The registered protocol (paper or smoke setting) with ``overrides`` checked against its field types."""
        if self.protocol is None:
            raise VitbenchError(f"task {self.id} has reported numbers only: no harness runs it yet")
        return self.protocol.build(smoke, overrides)

    def describe(self) -> dict[str, Any]:
        """The stable ``vitbench tasks --json`` entry."""
        p = self.protocol
        return {
            "name": self.id,
            "title": self.title,
            "group": self.group,
            "runnable": self.runnable,
            "protocol": p.NAME if p else None,
            "protocol_version": p.VERSION if p else None,
            "metrics": list(self.metrics),
            "headline": self.headline,
            "synth_kind": self.synth_kind,
            "dataset_kind": self.dataset_kind,
            "data": None
            if self.data is None
            else {"name": self.data.name, "splits": dict(self.data.splits), "n_classes": self.data.n_classes},
            "description": self.description,
        }


TASKS: Registry[TaskSpec] = Registry("task")


def task(spec: TaskSpec) -> TaskSpec:
    if spec.group not in GROUPS:
        raise ValueError(f"task {spec.id}: group {spec.group!r} is not one of {GROUPS}")
    if (spec.harness is None) != (spec.protocol is None):
        raise ValueError(f"task {spec.id}: a harness and a protocol go together")
    if spec.metric_meta(spec.headline) is None:
        raise ValueError(f"task {spec.id}: headline {spec.headline!r} is not one of its metrics")
    return TASKS.register(spec.id, spec)


def get_task(task_id: str) -> TaskSpec:
    """The catalogue entry (did-you-mean error for an unknown id)."""
    return TASKS.get(task_id)


def list_tasks(runnable_only: bool = False) -> list[str]:
    """Task ids in catalogue order (the order of the leaderboard's index)."""
    return [t for t, s in TASKS.items() if s.runnable or not runnable_only]


def task_order(tasks: list[str] | set[str]) -> list[str]:
    """Catalogue order first, then unknown ids alphabetically."""
    known = [t for t in TASKS if t in tasks]
    return known + sorted(set(tasks) - set(TASKS))


# ------------------------------------------------------------------------------------------------ metric order
# The order tables show metrics in (after the headline); unknown names follow alphabetically.
METRIC_ORDER: tuple[str, ...] = (
    "top1",
    "top5",
    "holdout_top1",
    # COCO names as the dense harness writes them: <iou type>_<COCOeval stat>.
    "bbox_AP",
    "segm_AP",
    "bbox_AP50",
    "bbox_AP75",
    "segm_AP50",
    "segm_AP75",
    "mIoU",
    "mIoU_ms",
    "aAcc",
    "mAcc",
    "mAP",
    "JF_mean",
    "J_mean",
    "F_mean",
    "asr",
    "asr_blocked",
    "clean_top1",
    "FID",
    "IS",
)


def metric_order(metrics: list[str] | set[str], head: str) -> list[str]:
    """Headline first, then :data:`METRIC_ORDER`, then the rest alphabetically."""
    known = list(METRIC_ORDER)
    return sorted(metrics, key=lambda m: (m != head, known.index(m) if m in known else len(known), m))


# ------------------------------------------------------------------------------------------------ the tasks
PCT = MetricMeta()  # higher is better, %, in [0, 100]
LOWER_PCT = MetricMeta(higher_is_better=False)
FID = MetricMeta(higher_is_better=False, unit="", lo=0.0, hi=None)
SCORE = MetricMeta(unit="", lo=0.0, hi=None)

IMAGENET_1K = DataIdentity(
    name="imagenet-1k",
    splits={"train": 1_281_167, "val": 50_000},
    n_classes=1000,
    source="ILSVRC-2012 CLS-LOC (train 1,281,167 images; val 50,000 images; 1,000 classes)",
)
COCO_2017 = DataIdentity(
    name="coco-2017",
    splits={"train2017": 118_287, "val2017": 5_000},
    n_classes=80,
    source="COCO 2017 instances (train 118,287 images; val 5,000 images; 80 categories)",
)

VOC_2007 = DataIdentity(
    name="voc-2007",
    splits={"trainval": 5_011, "test": 4_952},
    n_classes=20,
    source="PASCAL VOC 2007 classification (trainval 5,011 images; test 4,952 images; 20 classes)",
)
# Split sizes are not pinned for COCO 2014 and NUS-WIDE: images without a label are left out (as DualCoOp's loaders
# do), and how many remain was not confirmed in a primary source; NUS-WIDE's Flickr images also vary by download.
COCO_2014 = DataIdentity(
    name="coco-2014", splits={}, n_classes=80, source="MS-COCO 2014 instances (train2014 -> val2014; 80 categories)"
)
COCO_2014_ZSL = DataIdentity(
    name="coco-2014-zsl",
    splits={},
    n_classes=65,
    source="MS-COCO 2014, Bansal et al.'s 48 seen / 17 unseen split (DualCoOp's *_48_17.json files)",
)
NUS_WIDE = DataIdentity(name="nus-wide", splits={}, n_classes=81, source="NUS-WIDE, 81 human-annotated concepts")
NUS_WIDE_ZSL = DataIdentity(
    name="nus-wide-zsl", splits={}, n_classes=1006, source="NUS-WIDE, 925 seen Flickr tags / 81 unseen concepts"
)

_COCO_METRICS = {f"{t}_{s}": PCT for t in ("bbox", "segm") for s in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
_CLS = "classification"

task(
    TaskSpec(
        id="knn",
        title="ImageNet-1k k-NN on frozen features",
        group=_CLS,
        headline="top1",
        metrics={"top1": PCT, "top5": PCT, r"^top1_k\d+$": PCT, r"^top5_k\d+$": PCT},
        protocol=KnnProtocol,
        harness="benchmarks.classification.knn:KnnHarness",
        synth_kind="imagefolder",
        dataset_kind="imagefolder",
        data=IMAGENET_1K,
        description="Weighted k-NN (k=20, T=0.07) on L2-normalised global features; ImageFolder train -> val.",
    )
)
task(
    TaskSpec(
        id="linear",
        title="ImageNet-1k linear probe on frozen features",
        group=_CLS,
        headline="top1",
        metrics={"top1": PCT, "top5": PCT, "holdout_top1": PCT},
        protocol=LinearProtocol,
        harness="benchmarks.classification.linear:LinearHarness",
        synth_kind="imagefolder",
        dataset_kind="imagefolder",
        data=IMAGENET_1K,
        description="Grid of linear heads (lr x {CLS last 1/4} x {+avgpool}) on cached frozen features.",
    )
)
task(
    TaskSpec(
        id="linear-perlayer",
        title="ImageNet-1k linear probe per block",
        group=_CLS,
        headline="top1",
        metrics={"top1": PCT, r"^top1_b\d+$": PCT, r"^top1_avg_b\d+$": PCT},
        protocol=PerLayerProtocol,
        harness="benchmarks.classification.linear:PerLayerLinearHarness",
        synth_kind="imagefolder",
        dataset_kind="imagefolder",
        data=IMAGENET_1K,
        description="One linear head per block (token and avg-pooled), for per-layer analyses (SDSSL).",
    )
)
task(TaskSpec("imagenet-finetune", "ImageNet-1k end-to-end fine-tuning", _CLS, "top1", {"top1": PCT, "top5": PCT}))
task(
    TaskSpec(
        "imagenet-supervised",
        "ImageNet-1k top-1 of the released supervised classifier",
        _CLS,
        "top1",
        {"top1": PCT, "top5": PCT},
    )
)
task(
    TaskSpec(
        id="coco-maskrcnn-fpn-1x",
        title="COCO Mask R-CNN + FPN, 1x schedule",
        group="dense",
        headline="bbox_AP",
        metrics=_COCO_METRICS,
        protocol=CocoDetProtocol,
        harness="benchmarks.dense.coco:CocoDetHarness",
        synth_kind="coco",
        dataset_kind="coco",
        data=COCO_2017,
        description=(
            "Mask R-CNN + FPN 1x (SelfPatch protocol, mmdet 3.3): fine-tune on COCO train2017, box and mask AP "
            "on val2017."
        ),
    )
)
task(
    TaskSpec(
        id="coco-maskrcnn-3x",
        title="COCO Mask R-CNN, 3x schedule",
        group="dense",
        headline="bbox_AP",
        metrics=_COCO_METRICS,
        protocol=CocoMaskRcnn3xProtocol,
        harness="benchmarks.dense.coco:CocoDetHarness",
        synth_kind="coco",
        dataset_kind="coco",
        data=COCO_2017,
        description="Mask R-CNN + FPN 3x (GC ViT protocol, mmdet 3.3): box and mask AP on COCO val2017.",
    )
)
task(TaskSpec("coco-cascade-1x", "COCO Cascade Mask R-CNN, 1x schedule", "dense", "bbox_AP", _COCO_METRICS))
task(
    TaskSpec(
        id="coco-cascade-3x",
        title="COCO Cascade Mask R-CNN, 3x schedule",
        group="dense",
        headline="bbox_AP",
        metrics=_COCO_METRICS,
        protocol=CocoCascade3xProtocol,
        harness="benchmarks.dense.coco:CocoDetHarness",
        synth_kind="coco",
        dataset_kind="coco",
        data=COCO_2017,
        description="Cascade Mask R-CNN + FPN 3x (GC ViT protocol, mmdet 3.3): box and mask AP on COCO val2017.",
    )
)
task(TaskSpec("coco-dino-4scale", "COCO DINO detector, 4-scale head", "dense", "bbox_AP", {"bbox_AP": PCT}))
_SEG = {"mIoU": PCT, "mIoU_ms": PCT, "aAcc": PCT, "mAcc": PCT}
task(TaskSpec("ade20k-semfpn-40k", "ADE20K Semantic FPN, 40k iterations", "dense", "mIoU", _SEG))
task(TaskSpec("ade20k-upernet-160k", "ADE20K UperNet, 160k iterations", "dense", "mIoU", _SEG))
task(
    TaskSpec(
        "davis2017-vos",
        "DAVIS-2017 video object segmentation (label propagation)",
        "dense",
        "JF_mean",
        {"JF_mean": PCT, "J_mean": PCT, "F_mean": PCT},
    )
)
task(TaskSpec("bigearthnet-linear", "BigEarthNet-MM linear probe (multi-label)", "transfer", "mAP", {"mAP": PCT}))
# Mean over label proportions, and per proportion (Table 1's 10 % ... 90 % by name; others set with --set).
_PARTIAL = {"mAP": PCT, **{f"mAP_p{p}": PCT for p in range(10, 100, 10)}, r"^mAP_p\d+$": PCT}
_ZSL = {
    **{f"{s}_{m}_k{k}": PCT for s in ("zsl", "gzsl") for k in (3, 5) for m in ("F1", "P", "R")},
    "zsl_mAP": PCT,
    "gzsl_mAP": PCT,
    r"^g?zsl_(P|R|F1)_k\d+$": PCT,
}
_PARTIAL_DESC = (
    "Training labels kept with p = 10 %%-90 %% (seeded, nested masks); DualCoOp prompts for encoders with a text "
    "tower, linear heads (ASL) on frozen features otherwise; %s; mAP per proportion and averaged."
)
task(
    TaskSpec(
        id="voc-partial",
        title="VOC2007 multi-label recognition with partial labels",
        group="transfer",
        headline="mAP",
        metrics=_PARTIAL,
        protocol=VocPartialProtocol,
        harness="benchmarks.multilabel.partial:PartialLabelHarness",
        synth_kind="voc",
        dataset_kind="voc",
        data=VOC_2007,
        description=_PARTIAL_DESC % "VOC 2007 trainval -> test",
    )
)
task(
    TaskSpec(
        id="coco-partial",
        title="MS-COCO multi-label recognition with partial labels",
        group="transfer",
        headline="mAP",
        metrics=_PARTIAL,
        protocol=CocoPartialProtocol,
        harness="benchmarks.multilabel.partial:PartialLabelHarness",
        synth_kind="coco-multilabel",
        dataset_kind="coco-multilabel",
        data=COCO_2014,
        description=_PARTIAL_DESC % "COCO train2014 -> val2014",
    )
)
task(
    TaskSpec(
        id="nuswide-partial",
        title="NUS-WIDE multi-label recognition with partial labels",
        group="transfer",
        headline="mAP",
        metrics=_PARTIAL,
        protocol=NusWidePartialProtocol,
        harness="benchmarks.multilabel.partial:PartialLabelHarness",
        synth_kind="nuswide",
        dataset_kind="nuswide",
        data=NUS_WIDE,
        description=_PARTIAL_DESC % "NUS-WIDE Train -> Test, 81 concepts",
    )
)
task(
    TaskSpec(
        id="coco-zsl",
        title="MS-COCO zero-shot multi-label recognition (48 seen / 17 unseen)",
        group="transfer",
        headline="zsl_F1_k3",
        metrics=_ZSL,
        protocol=CocoZslProtocol,
        harness="benchmarks.multilabel.zsl:ZeroShotHarness",
        synth_kind="coco-multilabel",
        dataset_kind="coco-multilabel",
        data=COCO_2014_ZSL,
        description="DualCoOp prompts learned on the seen classes (encoders with a text tower); ZSL and GZSL "
        "precision / recall / F1 at top 3 and 5, and mAP.",
    )
)
task(
    TaskSpec(
        id="nuswide-zsl",
        title="NUS-WIDE zero-shot multi-label recognition (925 seen / 81 unseen)",
        group="transfer",
        headline="zsl_mAP",
        metrics=_ZSL,
        protocol=NusWideZslProtocol,
        harness="benchmarks.multilabel.zsl:ZeroShotHarness",
        synth_kind="nuswide",
        dataset_kind="nuswide",
        data=NUS_WIDE_ZSL,
        description="DualCoOp prompts learned on the 925 seen tags (encoders with a text tower); ZSL and GZSL "
        "precision / recall / F1 at top 3 and 5, and mAP.",
    )
)
task(TaskSpec("copydays-copy-detection", "Copydays copy detection", "transfer", "mAP", {"mAP": PCT}))
task(
    TaskSpec(
        "backdoor-htba",
        "Hidden-trigger backdoor attack on a frozen backbone + linear head",
        "robustness",
        "asr",
        {"asr": LOWER_PCT, "asr_blocked": LOWER_PCT, "clean_top1": PCT},
    )
)
task(TaskSpec("coco-t2i-zeroshot", "MS-COCO text-to-image, zero-shot", "generation", "FID", {"FID": FID}))
task(TaskSpec("coco-t2i-finetuned", "MS-COCO text-to-image, fine-tuned on COCO", "generation", "FID", {"FID": FID}))
task(
    TaskSpec(
        "imagenet-cond-gen-256",
        "ImageNet 256x256 class-conditional generation",
        "generation",
        "FID",
        {"FID": FID, "IS": SCORE},
    )
)
