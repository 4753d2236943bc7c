"""ADE20K end to end on the mm* stack (marker ``dense``; `.ci/run` runs them after building the stack).

Smoke runs through the CLI write valid records with mIoU (SelfPatch's Semantic FPN; UperNet with a hierarchical GC
ViT and with SP-ViT, single- and multi-scale); mmseg's IoUMetric, as the harness uses it, equals a hand-computed
confusion-matrix mIoU on fixed predictions with ``reduce_zero_label`` and 255 handled; a run resumes from its last
checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.dense


@pytest.fixture(scope="module")
def glue():
    from benchmarks.dense import mm_glue  # an ImportError here is a failure: `-m dense` runs after the build

    mm_glue.prepare()
    return mm_glue


@pytest.mark.parametrize(
    ("method", "task", "neck"),
    [
        ("selfpatch", "ade20k-semfpn-40k", "fpn"),  # SelfPatch's setting: stride-16 maps straight into FPN
        ("gcvit:xxtiny", "ade20k-upernet-160k", "identity"),  # hierarchical: stages into UperHead
        ("spvit:s", "ade20k-upernet-160k", "simple_pyramid"),
    ],
)
def test_smoke_run_via_cli_writes_valid_record(ade20k_root: Path, tmp_path: Path, glue, method, task, neck):
    from benchmarks.cli import main
    from benchmarks.records import load_record
    from benchmarks.validate import validate_record

    out = tmp_path / "results"
    argv = ["run", "--method", method, "--task", task, "--data", str(ade20k_root.parent), "--weights", "random"]
    assert main([*argv, "--smoke", "--out", str(out), "--no-progress"]) == 0
    name, _, variant = method.partition(":")
    path = out / "runs" / task / name / f"{variant or 'vits16'}__seed0.json"
    record = load_record(path)
    assert validate_record(record, path) is None
    assert record.track == "smoke" and record.task == task
    # a few iterations on the learnable synthetic scenes already find some pixels of a class
    assert record.metrics["mIoU"] > 0 and 0 < record.metrics["aAcc"] <= 100
    assert {"mIoU", "mAcc", "aAcc"} <= set(record.metrics)
    if task == "ade20k-upernet-160k":
        assert record.metrics["mIoU_ms"] > 0 and {"mAcc_ms", "aAcc_ms"} <= set(record.metrics)
        assert len(record.extra["per_class_iou_ms"]) == 150
    iou = record.extra["per_class_iou"]
    assert len(iou) == 150 and iou["sky"] is not None and iou["bed "] is None  # absent classes are undefined
    defined = [v for v in iou.values() if v is not None]
    assert record.metrics["mIoU"] == pytest.approx(sum(defined) / len(defined), abs=0.006)
    assert record.probe["neck"]["kind"] == neck
    ds = record.dataset
    assert (ds.name, ds.split, ds.n_samples, ds.n_classes) == ("ade20k", "validation", 4, 150)
    assert ds.splits == {"training": 8, "validation": 4}
    # mmseg's class list is the one the catalogue pins for paper-track records
    from benchmarks.catalog import get_task

    identity = get_task(task).data
    assert identity is not None and ds.classes_sha256 == identity.classes_sha256
    assert record.extra["train_iters"] == 6 and Path(record.extra["config_path"]).is_file()


def _fixed_case(tmp_path: Path) -> tuple[list[Path], list[np.ndarray]]:
    """Two raw ADE label maps (0 = other, 255 = ignore, classes 1..150) and fixed predictions (0-based labels)."""
    rng = np.random.default_rng(0)
    paths, preds = [], []
    for k, (h, w) in enumerate(((13, 17), (11, 9))):
        raw = rng.choice([0, 1, 2, 3, 7, 150, 255], size=(h, w), p=[0.15, 0.25, 0.2, 0.15, 0.1, 0.1, 0.05])
        path = tmp_path / f"ADE_val_{k:08d}.png"
        Image.fromarray(raw.astype(np.uint8), "L").save(path)
        paths.append(path)
        # predictions: mostly right, some confusions, some classes predicted that are nowhere in the ground truth
        pred = np.where(raw > 0, raw.astype(np.int64) - 1, 0)
        flip = rng.random((h, w)) < 0.3
        pred[flip] = rng.choice([0, 1, 2, 5, 6, 149], size=int(flip.sum()))
        preds.append(pred)
    return paths, preds


def _hand_miou(paths: list[Path], preds: list[np.ndarray], n: int = 150) -> dict[str, float]:
    """mIoU / mAcc / aAcc from a confusion matrix over the valid pixels: raw 0 ("other") and 255 ignored, class k
    scored as k - 1 (reduce_zero_label); classes that are neither in the ground truth nor predicted are left out."""
    cm = np.zeros((n, n), dtype=np.int64)
    for path, pred in zip(paths, preds):
        raw = np.asarray(Image.open(path)).astype(np.int64)
        valid = (raw != 0) & (raw != 255)
        np.add.at(cm, (raw[valid] - 1, pred[valid]), 1)
    tp, gt, pr = np.diag(cm), cm.sum(1), cm.sum(0)
    union = gt + pr - tp
    iou = tp[union > 0] / union[union > 0]
    acc = tp[gt > 0] / gt[gt > 0]
    return {"mIoU": 100 * iou.mean(), "mAcc": 100 * acc.mean(), "aAcc": 100 * tp.sum() / gt.sum()}


def test_iou_metric_equals_hand_computed_confusion_matrix(tmp_path: Path, glue):
    from mmseg.datasets.transforms import LoadAnnotations

    paths, preds = _fixed_case(tmp_path)
    metric = glue.PerClassIoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": glue.ade20k_classes()}
    load = LoadAnnotations(reduce_zero_label=True)  # the harness's pipeline step: 0 -> 255, k -> k - 1
    for path, pred in zip(paths, preds):
        gt = load({"seg_map_path": str(path), "reduce_zero_label": True, "seg_fields": []})["gt_seg_map"]
        sample = {
            "pred_sem_seg": {"data": torch.from_numpy(pred)[None]},
            "gt_sem_seg": {"data": torch.from_numpy(gt)[None]},
        }
        metric.process({}, [sample])
    got = metric.compute_metrics(metric.results)
    want = _hand_miou(paths, preds)
    for name in ("mIoU", "mAcc", "aAcc"):  # mmseg reports 2 decimals
        assert float(got[name]) == pytest.approx(want[name], abs=0.0051), name
    # per class: wall (raw 1 -> 0) is in both; class 5 is only predicted (IoU 0); class 10 is nowhere (NaN)
    assert got["IoU_c5"] == 0.0 and np.isnan(got["IoU_c10"]) and 0 < got["IoU_c0"] <= 100
    per_class = [v for k, v in got.items() if k.startswith("IoU_c") and not np.isnan(v)]
    assert np.mean(per_class) == pytest.approx(want["mIoU"], abs=1e-4)  # unrounded, float32 areas


def test_resume_after_interruption(ade20k_root: Path, tmp_path: Path, glue, run_task):
    from methods import build_encoder

    enc = build_encoder("selfpatch", "vits16", weights="random", seed=0)
    work = tmp_path / "work"
    one = run_task("ade20k-semfpn-40k", enc, ade20k_root, work, iters=3)  # "interrupted" after 3 of 6 iterations
    assert one.extra["resumed_from"] is None and one.extra["train_iters"] == 3
    assert (work / "mmseg" / "iter_3.pth").is_file()
    two = run_task("ade20k-semfpn-40k", enc, ade20k_root, work, iters=6)
    assert two.extra["resumed_from"].endswith("iter_3.pth") and two.extra["train_iters"] == 6
    assert "resumed" in Path(two.extra["log_path"]).read_text().lower()
    # a finished run resumes at its end: no training, the same scores
    again = run_task("ade20k-semfpn-40k", enc, ade20k_root, work, iters=6)
    assert again.extra["resumed_from"].endswith("iter_6.pth") and again.metrics == two.metrics
    assert again.extra["per_class_iou"] == two.extra["per_class_iou"]
