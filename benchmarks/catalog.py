"""The task catalogue: one declarative, torch-free :class:`TaskSpec` per task id.

Everything that *describes* a task lives here — title, group, protocol class, metrics with their direction and
range, headline, the synthetic data that smoke-tests it, and the identity of the data a paper-track run must use.
The leaderboard, ``vitbench tasks``, ``vitbench validate`` and the CLI read only this module; a harness module
(which imports torch) is imported only to run a task, through :func:`benchmarks.harness.load_harness`.

Tasks with reported numbers but no harness yet (``linear-mae``, ``coco-dino-4scale``...) are catalogued too,
with ``harness=None``, so the site can title them and knows each metric's direction.

Adding a task is one harness module + one :func:`task` call below (+ a synthesizer in :mod:`benchmarks.synth`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.backdoor.protocols import BadNetsProtocol, HtbaProtocol
from benchmarks.bigearthnet.protocols import BigEarthNetFinetuneProtocol, BigEarthNetLinearProtocol
from benchmarks.classification.protocols import (
    IMAGENET_C_CORRUPTIONS,
    FinetuneProtocol,
    ImageNetAProtocol,
    ImageNetCProtocol,
    ImageNetRProtocol,
    ImageNetSketchProtocol,
    ImageNetV2Protocol,
    KnnProtocol,
    LinearDinoProtocol,
    LinearProtocol,
    PerLayerProtocol,
    SupervisedProtocol,
)
from benchmarks.dense.protocols import (
    Ade20kSemFpnProtocol,
    Ade20kUperNetProtocol,
    CocoCascade1xProtocol,
    CocoCascade3xProtocol,
    CocoDetProtocol,
    CocoMaskRcnn3xProtocol,
)
from benchmarks.multilabel.protocols import (
    CocoPartialProtocol,
    CocoZslProtocol,
    NusWidePartialProtocol,
    NusWideZslProtocol,
    VocPartialProtocol,
)
from benchmarks.protocol import Protocol
from benchmarks.records import MetricMeta
from benchmarks.transfer.protocols import CopydaysProtocol, DavisProtocol
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
    classifier: bool = False  # scores the variant's released classification head (build_encoder(classifier=True))
    # Protocol fields this task fixes (one cell of a paper's table: a modality, a label fraction...), applied when its
    # protocol is built: registered defaults < the smoke setting < preset < ``--set``. Several tasks can share a
    # protocol class and harness this way, each its own registered protocol, record path and leaderboard row.
    preset: Mapping[str, Any] = field(default_factory=dict)

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
        """The registered protocol (paper or smoke setting, with the task's ``preset``) with ``overrides`` checked
        against its field types; an override wins over the preset."""
        if self.protocol is None:
            raise VitbenchError(f"task {self.id} has reported numbers only: no harness runs it yet")
        return self.protocol.build(smoke, {**self.preset, **(overrides or {})})

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
            "preset": dict(self.preset),
        }


TASKS: Registry[TaskSpec] = Registry("task")


def task(spec: TaskSpec) -> TaskSpec:
    if spec.group not in GROUPS:
        raise ValueError(f"task {spec.id}: group {spec.group!r} is not one of {GROUPS}")
    if (spec.harness is None) != (spec.protocol is None):
        raise ValueError(f"task {spec.id}: a harness and a protocol go together")
    if spec.metric_meta(spec.headline) is None:
        raise ValueError(f"task {spec.id}: headline {spec.headline!r} is not one of its metrics")
    if spec.preset:
        if spec.protocol is None:
            raise ValueError(f"task {spec.id}: a preset needs a protocol")
        try:
            spec.protocol.coerce(spec.preset)
        except VitbenchError as err:
            raise ValueError(f"task {spec.id}: preset: {err}") from None
    return TASKS.register(spec.id, spec)


def get_task(task_id: str) -> TaskSpec:
    """The catalogue entry (did-you-mean error for an unknown id)."""
    return TASKS.get(task_id)


def preset_task(spec: TaskSpec, protocol: Protocol, smoke: bool) -> str | None:
    """Another task whose registered protocol ``protocol`` is (``--set`` overrides that select a sibling task's
    preset: ``--task bigearthnet-linear --set modality=s2`` is task ``bigearthnet-linear-s2``), else None."""
    for task_id, other in TASKS.items():
        if (
            task_id != spec.id
            and other.protocol is type(protocol)
            and other.harness == spec.harness
            and other.protocol_for(smoke).hash() == protocol.hash()
        ):
            return task_id
    return None


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
    # backdoor tasks (BackdoorBench names), before and after the test-time blocking defense
    "asr",
    "asr_blocked",
    "clean_acc",
    "clean_acc_blocked",
    "robust_acc",
    "robust_acc_blocked",
    "asr_unpatched",
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
LOWER_UNBOUNDED = MetricMeta(higher_is_better=False, lo=0.0, hi=None)  # % that may pass 100 (ImageNet-C's CE)

IMAGENET_1K = DataIdentity(
    name="imagenet-1k",
    splits={"train": 1_281_167, "val": 50_000},
    n_classes=1000,
    source="ILSVRC-2012 CLS-LOC (train 1,281,167 images; val 50,000 images; 1,000 classes)",
)
# The released classifiers' label spaces (sha256 of the newline-joined wnids: benchmarks/data/imagenet_classes.py).
_IN1K_CLASSES = "385e0240499426c022b773be1ae4da780f057b89c9694c7f47199f62746b6edd"
IMAGENET_1K_VAL = DataIdentity(
    name="imagenet-1k-val",
    splits={"val": 50_000},
    n_classes=1000,
    classes_sha256=_IN1K_CLASSES,
    source="ILSVRC-2012 CLS-LOC val (50,000 images, 1,000 classes in sorted-wnid order)",
)
IMAGENET_A = DataIdentity(
    name="imagenet-a",
    splits={"imagenet-a": 7_500},
    n_classes=200,
    classes_sha256="f6aa4b23244554d9b864fd715ae20048f6a9686388911b2dfbf1ada01bf0f520",
    source="ImageNet-A (Hendrycks et al., CVPR 2021): 7,500 images, 200 classes (natural-adv-examples README)",
)
IMAGENET_R = DataIdentity(
    name="imagenet-r",
    splits={"imagenet-r": 30_000},
    n_classes=200,
    classes_sha256="e19a59d84e3746fafd34d2ccf6ae604a44e9a0500a596f343c878a89e30ce624",
    source="ImageNet-R (Hendrycks et al., ICCV 2021): 30,000 images, 200 classes (imagenet-r README)",
)
IMAGENET_SKETCH = DataIdentity(
    name="imagenet-sketch",
    splits={"imagenet-sketch": 50_889},
    n_classes=1000,
    classes_sha256=_IN1K_CLASSES,
    source="ImageNet-Sketch (Wang et al., NeurIPS 2019): 50,889 images of the 1,000 classes as released",
)
IMAGENET_V2 = DataIdentity(
    name="imagenetv2-matched-frequency",
    splits={"imagenetv2": 10_000},
    n_classes=1000,
    classes_sha256=_IN1K_CLASSES,
    source="ImageNetV2 matched-frequency (Recht et al., ICML 2019): 10,000 images, 10 per class",
)
IMAGENET_C = DataIdentity(
    name="imagenet-c",
    splits={f"{c}/{s}": 50_000 for c in IMAGENET_C_CORRUPTIONS for s in range(1, 6)},
    n_classes=1000,
    classes_sha256=_IN1K_CLASSES,
    source="ImageNet-C (Hendrycks & Dietterich, ICLR 2019): val under 15 corruptions x 5 severities, 50,000 each",
)
COCO_2017 = DataIdentity(
    name="coco-2017",
    splits={"train2017": 118_287, "val2017": 5_000},
    n_classes=80,
    source="COCO 2017 instances (train 118,287 images; val 5,000 images; 80 categories)",
)
ADE20K = DataIdentity(
    name="ade20k",
    splits={"training": 20_210, "validation": 2_000},
    n_classes=150,
    # mmseg 1.2's ADE20KDataset class names in label order ('wall' ... 'flag', "bed " with its trailing space)
    classes_sha256="2133f0a0e71146d00a14482f872bc5888f66d706f90f1b1333a7eb5025989af9",
    source="ADEChallengeData2016 (MIT SceneParsing): 20,210 training and 2,000 validation images, 150 classes",
)

DAVIS_2017_VAL = DataIdentity(
    name="davis-2017-val",
    splits={"val": 30},
    source="DAVIS 2017 semi-supervised, ImageSets/2017/val.txt: 30 sequences (480p)",
)
COPYDAYS_STRONG = DataIdentity(
    name="copydays-strong+yfcc100m",
    splits={"original": 157, "strong": 229, "distractors": 10_000, "whitening": 20_000},
    source=(
        "INRIA Copydays: 157 originals, 229 'strong' copies (DINO eval_copy_detection.py block sizes); 10k + 20k "
        "random YFCC100M images as distractors and whitening set (DINO README)"
    ),
)
# torchgeo 0.8.1's v1 split files (BigEarthNet-MM's official 19-class splits, snowy / cloudy patches removed); the
# harness also checks their md5 against the ones torchgeo pins. Class list = torchgeo's 19 names in label order.
BIGEARTHNET_V1_19 = DataIdentity(
    name="bigearthnet-v1-19",
    splits={"train": 269_695, "val": 123_723, "test": 125_866},
    n_classes=19,
    classes_sha256="d614757f9d3f366da880a9e4411e1f3b248165744b81f294872179c87b49e9f1",
    source="BigEarthNet-MM v1.0, 19-class nomenclature, torchgeo's bigearthnet-{train,val,test}.csv (269,695 / "
    "123,723 / 125,866 pairs: the sizes published with these splits, not counted here on the real files)",
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
task(
    TaskSpec(
        id="linear-dino",
        title="ImageNet-1k linear probe, DINO's eval_linear.py protocol",
        group=_CLS,
        headline="top1",
        metrics={"top1": PCT, "top5": PCT, "last_top1": PCT},
        protocol=LinearDinoProtocol,
        harness="benchmarks.classification.linear_dino:LinearDinoHarness",
        synth_kind="imagefolder",
        dataset_kind="imagefolder",
        data=IMAGENET_1K,
        description=(
            "One linear head on a frozen encoder, RandomResizedCrop + flip every epoch with features recomputed, "
            "100 epochs on all of train, best val top-1 over epochs (DINO, iBOT-style last-4 / last+avgpool)."
        ),
    )
)
# Linear numbers reported under other papers' own protocols: catalogued apart so that no row is compared with
# runs of another protocol (no harness reproduces these yet).
task(
    TaskSpec(
        "linear-mae",
        "ImageNet-1k linear probe, MAE's main_linprobe.py (BatchNorm + LARS)",
        _CLS,
        "top1",
        {"top1": PCT, "top5": PCT},
        description="BatchNorm(affine=False) before the head, LARS, batch 16384, 90 epochs, CLS token.",
    )
)
task(
    TaskSpec(
        "linear-mocov3",
        "ImageNet-1k linear probe, MoCo v3's main_lincls.py",
        _CLS,
        "top1",
        {"top1": PCT, "top5": PCT},
        description="SGD lr 3 x bs/256 (ViT), batch 1024, 90 epochs, last CLS token, best over epochs.",
    )
)
task(
    TaskSpec(
        "linear-ibot",
        "ImageNet-1k linear probe, iBOT's eval_linear_multi.py (lr / wd / optimizer sweep)",
        _CLS,
        "top1",
        {"top1": PCT, "top5": PCT},
        description="DINO's features and augmentation, 45 lrs x wd {0, 1e-6} x {SGD, LARS} heads, best on val.",
    )
)
task(
    TaskSpec(
        "linear-igpt",
        "ImageNet-1k linear probe on averaged intermediate features (iGPT protocol)",
        _CLS,
        "top1",
        {"top1": PCT},
        description="Generative transformers (iGPT, VIM): a linear head on averaged features of an intermediate layer.",
    )
)
task(
    TaskSpec(
        id="imagenet-finetune",
        title="ImageNet-1k end-to-end fine-tuning",
        group=_CLS,
        headline="top1",
        metrics={"top1": PCT, "top5": PCT, "last_top1": PCT, "ema_top1": PCT},
        protocol=FinetuneProtocol,
        harness="benchmarks.classification.finetune:FinetuneHarness",
        synth_kind="imagefolder",
        dataset_kind="imagefolder",
        data=IMAGENET_1K,
        description=(
            "End-to-end fine-tuning with the pretraining paper's recipe (MAE / BEiT-iBOT / SimMIM-MFM / DeiT): AdamW, "
            "layer-wise lr decay, drop path, RandAugment, mixup/cutmix, label smoothing, warmup + cosine; best val "
            "top-1 over epochs."
        ),
    )
)
task(
    TaskSpec(
        id="imagenet-supervised",
        title="ImageNet-1k top-1 of the released supervised classifier",
        group=_CLS,
        headline="top1",
        metrics={"top1": PCT, "top5": PCT},
        protocol=SupervisedProtocol,
        harness="benchmarks.classification.supervised:SupervisedHarness",
        synth_kind="imagenet",
        dataset_kind="imagenet",
        data=IMAGENET_1K_VAL,
        description=(
            "The authors' released classifier (backbone + its head) on ImageNet-1k val, ImageFolder or flat + devkit "
            "ground truth, with the variant's own eval transform."
        ),
        classifier=True,
    )
)
# The robustness sets: one task each (their numbers never share a column), scored by the same released classifiers.
_ROBUST = "robustness"
_SUPERVISED = "benchmarks.classification.supervised:SupervisedHarness"
for _id, _title, _protocol, _data, _desc in (
    ("imagenet-a", "ImageNet-A top-1 of the released classifier", ImageNetAProtocol, IMAGENET_A, "200-class subset"),
    ("imagenet-r", "ImageNet-R top-1 of the released classifier", ImageNetRProtocol, IMAGENET_R, "200-class subset"),
    (
        "imagenet-sketch",
        "ImageNet-Sketch top-1 of the released classifier",
        ImageNetSketchProtocol,
        IMAGENET_SKETCH,
        "",
    ),
    (
        "imagenetv2",
        "ImageNetV2 (matched frequency) top-1 of the released classifier",
        ImageNetV2Protocol,
        IMAGENET_V2,
        "",
    ),
):
    task(
        TaskSpec(
            id=_id,
            title=_title,
            group=_ROBUST,
            headline="top1",
            metrics={"top1": PCT, "top5": PCT},
            protocol=_protocol,
            harness=_SUPERVISED,
            synth_kind=_id,
            dataset_kind=_id,
            data=_data,
            description=f"The released ImageNet-1k classifier on {_data.name} ({_desc or 'all 1,000 classes'}).",
            classifier=True,
        )
    )
task(
    TaskSpec(
        id="imagenet-c",
        title="ImageNet-C mean corruption error (AlexNet-normalised) of the released classifier",
        group=_ROBUST,
        headline="mCE",
        metrics={"mCE": LOWER_UNBOUNDED, "top1": PCT, r"^CE_[a-z_]+$": LOWER_UNBOUNDED, r"^top1_[a-z_]+$": PCT},
        protocol=ImageNetCProtocol,
        harness=_SUPERVISED,
        synth_kind="imagenet-c",
        dataset_kind="imagenet-c",
        data=IMAGENET_C,
        description="mCE over 15 corruptions x 5 severities, each CE normalised by AlexNet's error (Hendrycks 2019).",
        classifier=True,
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
task(
    TaskSpec(
        id="coco-cascade-1x",
        title="COCO Cascade Mask R-CNN, 1x schedule",
        group="dense",
        headline="bbox_AP",
        metrics=_COCO_METRICS,
        protocol=CocoCascade1xProtocol,
        harness="benchmarks.dense.coco:CocoDetHarness",
        synth_kind="coco",
        dataset_kind="coco",
        data=COCO_2017,
        description=(
            "Cascade Mask R-CNN + FPN 1x with layer-wise lr decay 0.75 (iBOT protocol, mmdet 3.3): box and mask AP "
            "on COCO val2017."
        ),
    )
)
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
_SEG = {"mIoU": PCT, "mIoU_ms": PCT, "aAcc": PCT, "mAcc": PCT, "aAcc_ms": PCT, "mAcc_ms": PCT}
task(
    TaskSpec(
        id="ade20k-semfpn-40k",
        title="ADE20K Semantic FPN, 40k iterations",
        group="dense",
        headline="mIoU",
        metrics=_SEG,
        protocol=Ade20kSemFpnProtocol,
        harness="benchmarks.dense.ade20k:Ade20kHarness",
        synth_kind="ade20k",
        dataset_kind="ade20k",
        data=ADE20K,
        description=(
            "Semantic FPN 40k (SelfPatch protocol, mmseg 1.2): fine-tune on ADE20K training, single-scale mIoU on "
            "validation."
        ),
    )
)
task(
    TaskSpec(
        id="ade20k-upernet-160k",
        title="ADE20K UperNet, 160k iterations",
        group="dense",
        headline="mIoU",
        metrics=_SEG,
        protocol=Ade20kUperNetProtocol,
        harness="benchmarks.dense.ade20k:Ade20kHarness",
        synth_kind="ade20k",
        dataset_kind="ade20k",
        data=ADE20K,
        description=(
            "UperNet 160k (XCiT/Swin recipe, mmseg 1.2): single-scale and multi-scale + flip mIoU on ADE20K validation."
        ),
    )
)
task(
    TaskSpec(
        id="davis2017-vos",
        title="DAVIS-2017 video object segmentation (label propagation)",
        group="dense",
        headline="JF_mean",
        metrics={"JF_mean": PCT, "J_mean": PCT, "F_mean": PCT},
        protocol=DavisProtocol,
        harness="benchmarks.transfer.davis:DavisHarness",
        synth_kind="davis",
        dataset_kind="davis",
        data=DAVIS_2017_VAL,
        description="DINO's label propagation of the first-frame masks on frozen patch features; J, F, J&F on val.",
    )
)
_BEN_METRICS = {
    **{f"{split}_{m}": PCT for split in ("val", "test") for m in ("mAP_micro", "mAP_macro", "F1_micro", "F1_macro")},
    "val_mAP_micro_batchavg": PCT,  # DINO-MM's logged figure: micro AP per val batch of 64, batch-weighted mean
    r"^val_AP_c\d+$": PCT,
    r"^test_AP_c\d+$": PCT,
}
# One task per cell of DINO-MM's table ({S1+S2, S2, S1} x {100 %, 1 %} labels), for the linear probe and fine-tuning:
# the cell is the task's preset, so each is a registered protocol with its own record path and leaderboard row.
# Every cell reads the same data (the record's dataset.splits are the full splits; the 1 % subset is drawn from train).
_BEN_MODALITIES = {
    "s1s2": ("", "S1+S2"),
    "s2": ("-s2", "S2 only (S1 fed as zeros)"),
    "s1": ("-s1", "S1 only (S2 fed as zeros)"),
}
_BEN_FRACTIONS = {1.0: ("", "100 %"), 0.01: ("-1pct", "1 %")}
_BEN_KINDS: tuple[tuple[str, str, type[Protocol], str, str], ...] = (
    (
        "bigearthnet-linear",
        "BigEarthNet-MM linear probe",
        BigEarthNetLinearProtocol,
        "benchmarks.bigearthnet.linear:BigEarthNetLinearHarness",
        "DINO-MM's linear evaluation: frozen encoder, CLS of the last 4 blocks, BCE head, 19 classes; val and test "
        "micro/macro mAP",
    ),
    (
        "bigearthnet-finetune",
        "BigEarthNet-MM end-to-end fine-tuning",
        BigEarthNetFinetuneProtocol,
        "benchmarks.bigearthnet.finetune:BigEarthNetFinetuneHarness",
        "DINO-MM's supervised schedule from the pretrained encoder: AdamW 1e-3, 100 epochs, RandomResizedCrop 112 + "
        "flip; val and test micro/macro mAP",
    ),
)
for _base, _title, _ben_protocol, _harness, _desc in _BEN_KINDS:
    for _frac, (_fsuffix, _fname) in _BEN_FRACTIONS.items():
        for _mod, (_msuffix, _mname) in _BEN_MODALITIES.items():
            task(
                TaskSpec(
                    id=f"{_base}{_msuffix}{_fsuffix}",
                    title=f"{_title}, {_mname}, {_fname} of the training labels (multi-label)",
                    group="transfer",
                    headline="val_mAP_micro",
                    metrics=_BEN_METRICS,
                    protocol=_ben_protocol,
                    harness=_harness,
                    synth_kind="bigearthnet",
                    dataset_kind="bigearthnet",
                    data=BIGEARTHNET_V1_19,
                    description=f"{_desc}; input {_mname}, {_fname} of train labelled (seeded, nested subsets); "
                    "torchgeo data, needs [geo].",
                    preset={"modality": _mod, "label_fraction": _frac},
                )
            )
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
task(
    TaskSpec(
        id="copydays-copy-detection",
        title="Copydays copy detection",
        group="transfer",
        headline="mAP",
        metrics={"mAP": PCT, r"^mAP_[a-z]+(_\d+)?$": PCT},
        protocol=CopydaysProtocol,
        harness="benchmarks.transfer.copydays:CopydaysHarness",
        synth_kind="copydays",
        dataset_kind="copydays",
        data=COPYDAYS_STRONG,
        description=(
            "DINO's copy detection: CLS + GeM patch features, whitened on 20k YFCC images, 'strong' queries against "
            "the originals + 10k YFCC distractors; mAP."
        ),
    )
)
_BACKDOOR = {
    "clean_acc": PCT,
    "asr": LOWER_PCT,
    "robust_acc": PCT,
    "clean_acc_blocked": PCT,
    "asr_blocked": LOWER_PCT,
    "robust_acc_blocked": PCT,
}
task(
    TaskSpec(
        id="backdoor-htba",
        title="Hidden-trigger backdoor attack on a frozen backbone + linear head",
        group="robustness",
        headline="asr",
        metrics={**_BACKDOOR, "asr_unpatched": LOWER_PCT},
        protocol=HtbaProtocol,
        harness="benchmarks.backdoor.harness:HtbaHarness",
        synth_kind="imagefolder",
        dataset_kind="imagefolder",
        data=IMAGENET_1K,
        description=(
            "HTBA clean-label poisons (PGD through the frozen encoder, L-inf 16/255) for 10 source->target pairs; "
            "ASR on triggered source images, before and after attention-rollout blocking."
        ),
    )
)
task(
    TaskSpec(
        id="backdoor-badnets",
        title="BadNets visible-patch backdoor on a frozen backbone + linear head",
        group="robustness",
        headline="asr",
        metrics=_BACKDOOR,
        protocol=BadNetsProtocol,
        harness="benchmarks.backdoor.harness:BadNetsHarness",
        synth_kind="imagefolder",
        dataset_kind="imagefolder",
        data=IMAGENET_1K,
        description=(
            "10% of train relabelled to one target with a visible trigger; ASR on triggered non-target images, "
            "before and after the test-time blocking defense."
        ),
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
