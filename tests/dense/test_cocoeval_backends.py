"""faster-coco-eval against pycocotools on the same detections (marker ``dense``: faster-coco-eval comes with the
``dense`` extra). Every one of COCOeval's 12 stats must agree to 1e-4, for boxes and masks, on synthetic ground
truth with several categories, polygon and RLE instances, crowd regions and images without annotations, and
detections with RLE and polygon masks on images with and without ground truth."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks.dense.coco import STAT_NAMES, _cocoeval_backend, coco_metrics, coco_stats
from tests.dense.cocoeval_data import synth_eval_set

pytestmark = pytest.mark.dense
TOL = 1e-4


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    gt_json, dets = synth_eval_set(tmp_path_factory.mktemp("cocoeval"), n_images=60, dets_per_image=25)
    det_file = gt_json.parent / "dets.json"
    det_file.write_text(json.dumps(dets))
    return gt_json, det_file


def test_the_synthetic_set_has_what_the_comparison_needs(eval_set):
    gt_json, det_file = eval_set
    gt, dets = json.loads(gt_json.read_text()), json.loads(det_file.read_text())
    anns = gt["annotations"]
    assert len(gt["categories"]) == 5
    assert any(a["iscrowd"] for a in anns) and all(isinstance(a["segmentation"], dict) for a in anns if a["iscrowd"])
    assert any(isinstance(a["segmentation"], list) for a in anns)
    assert any(isinstance(a["segmentation"], dict) and not a["iscrowd"] for a in anns)
    with_gt, with_dets = {a["image_id"] for a in anns}, {d["image_id"] for d in dets}
    image_ids = {im["id"] for im in gt["images"]}
    assert image_ids - with_gt and with_dets - with_gt  # images without ground truth, some with detections
    assert with_gt - with_dets  # images with ground truth and no detection
    assert {type(d["segmentation"]) for d in dets} == {dict, list}  # RLE and polygon masks


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_equals_pycocotools_on_all_12_stats(eval_set, iou_type):
    gt_json, det_file = eval_set
    ref = coco_stats(gt_json, det_file, iou_type, backend="pycocotools")
    fast = coco_stats(gt_json, det_file, iou_type, backend="faster_coco_eval")
    assert len(ref) == len(fast) == 12
    assert max(abs(a - b) for a, b in zip(ref, fast)) <= TOL, (ref, fast)
    assert all(0 < s < 1 for s in ref), ref  # every stat is defined and neither trivial 0 nor perfect
    assert ref[7] > ref[6]  # AR@10 > AR@1: the stats differ from each other, so a shuffled order would fail
    # the record's six numbers (%) follow, through either backend
    ours = coco_metrics(gt_json, det_file, iou_type)
    assert {k: pytest.approx(100 * ref[i], abs=100 * TOL) for k, i in STAT_NAMES.items()} == ours


def test_crowd_regions_and_empty_images_change_the_numbers_alike(eval_set, tmp_path: Path):
    """Dropping the crowd flags (crowd regions become ordinary instances to find) moves AP, the same way for both
    backends: they treat crowd regions alike rather than both ignoring them."""
    gt_json, det_file = eval_set
    gt = json.loads(gt_json.read_text())
    for a in gt["annotations"]:
        a["iscrowd"] = 0
    flat = tmp_path / "no_crowd.json"
    flat.write_text(json.dumps(gt))
    for iou_type in ("bbox", "segm"):
        ref = coco_stats(flat, det_file, iou_type, backend="pycocotools")
        fast = coco_stats(flat, det_file, iou_type, backend="faster_coco_eval")
        assert max(abs(a - b) for a, b in zip(ref, fast)) <= TOL
        assert ref != coco_stats(gt_json, det_file, iou_type, backend="pycocotools")


def test_auto_picks_faster_coco_eval_and_falls_back_to_pycocotools(monkeypatch: pytest.MonkeyPatch):
    from methods.errors import VitbenchError

    assert _cocoeval_backend("auto")[2] == "faster_coco_eval"
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # as if not installed
    assert _cocoeval_backend("auto")[2] == "pycocotools"
    with pytest.raises(VitbenchError, match="faster_coco_eval is not installed"):
        _cocoeval_backend("faster_coco_eval")
    with pytest.raises(VitbenchError, match="unknown COCOeval backend 'detectron2'"):
        _cocoeval_backend("detectron2")


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_detections_on_images_outside_the_ground_truth_are_a_data_error(eval_set, backend):
    from methods.errors import DataError

    gt_json, det_file = eval_set
    dets = json.loads(det_file.read_text())[:3]
    dets[1] = dets[1] | {"image_id": 987654}
    for iou_type in ("bbox", "segm"):
        with pytest.raises(DataError, match=r"detections on image ids not in .*gt.json: \['987654'\]"):
            coco_stats(gt_json, dets, iou_type, backend=backend)
