"""COCO data (benchmarks.data.coco): the synthetic writer, bad-input errors; the harness's COCOeval metric
extraction and its checks before mmdet (no mm* needed)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from benchmarks.data.coco import synth_coco, validate_coco_split
from benchmarks.dense.coco import STAT_NAMES, coco_metrics
from methods.errors import DataError


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "coco"
    shutil.copytree(root, dst)
    return dst


def _edit(root: Path, split: str, fn) -> Path:
    path = root / "annotations" / f"instances_{split}.json"
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))
    return path


def test_synth_writes_valid_coco(coco_root: Path):
    from pycocotools.coco import COCO

    train = validate_coco_split(coco_root, "train2017", train=True)
    val = validate_coco_split(coco_root, "val2017", train=False)
    assert train.n_images == 16 and val.n_images == 8
    assert train.classes == val.classes == ("square", "disc")
    assert train.skipped == {} and val.skipped == {}
    gt = COCO(str(val.ann_path))
    areas = [a["area"] for a in gt.dataset["annotations"]]
    # every COCO area range has ground truth, so every COCOeval number is defined
    assert min(areas) < 32**2 and max(areas) > 96**2 and any(32**2 <= a <= 96**2 for a in areas)
    for a in gt.dataset["annotations"]:
        x, y, w, h = a["bbox"]
        xs, ys = a["segmentation"][0][0::2], a["segmentation"][0][1::2]
        assert (x, y) == pytest.approx((min(xs), min(ys)), abs=0.01)
        assert (w, h) == pytest.approx((max(xs) - min(xs), max(ys) - min(ys)), abs=0.02)
        assert 0 < a["area"] <= w * h + 0.1
        assert gt.annToMask(a).sum() > 0


def test_synth_is_deterministic(tmp_path: Path):
    a, b = synth_coco(tmp_path / "a", seed=3), synth_coco(tmp_path / "b", seed=3)
    for split in ("train2017", "val2017"):
        assert (a / f"annotations/instances_{split}.json").read_bytes() == (
            b / f"annotations/instances_{split}.json"
        ).read_bytes()


def test_missing_annotation_json(coco_root: Path, tmp_path: Path):
    root = _copy(coco_root, tmp_path)
    (root / "annotations" / "instances_val2017.json").unlink()
    with pytest.raises(DataError, match=r"instances_val2017\.json: annotation file not found"):
        validate_coco_split(root, "val2017", train=False)


def test_image_listed_but_absent(coco_root: Path, tmp_path: Path):
    root = _copy(coco_root, tmp_path)
    (root / "train2017" / "000000000003.jpg").unlink()
    with pytest.raises(DataError, match=r"image listed but absent: id 3 -> .*000000000003\.jpg"):
        validate_coco_split(root, "train2017", train=True)


def test_unknown_category_id(coco_root: Path, tmp_path: Path):
    root = _copy(coco_root, tmp_path)
    _edit(root, "train2017", lambda d: d["annotations"][0].update(category_id=7))
    with pytest.raises(
        DataError,
        match=r"annotation id 1 \(image id 1\) has category_id 7, which is not in the "
        r"'categories' list \(ids \[1, 2\]\)",
    ):
        validate_coco_split(root, "train2017", train=True)


def test_degenerate_boxes_and_bad_polygons_are_counted(coco_root: Path, tmp_path: Path):
    root = _copy(coco_root, tmp_path)

    def spoil(doc):
        doc["annotations"][0]["bbox"][2] = 0.0  # zero width
        doc["annotations"][1]["bbox"] = [500.0, 500.0, 10.0, 10.0]  # outside the image
        doc["annotations"][2]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]  # a 2-point "polygon"

    _edit(root, "train2017", spoil)
    split = validate_coco_split(root, "train2017", train=True)
    assert split.skipped["degenerate_boxes"] == 2
    assert split.skipped["invalid_masks"] == 1
    assert split.skipped["images_without_annotations"] >= 1


@pytest.mark.parametrize(
    ("spoil", "match"),
    [
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotation id 1 .* has bbox \[1, 2, 3\]"),
        (lambda d: d["categories"].append({"id": 9, "name": "disc"}), "category name 'disc' appears twice"),
        (lambda d: d["annotations"][0].update(image_id=999), "refers to image_id 999"),
        (lambda d: d.pop("categories"), "missing the 'categories' list"),
        (lambda d: d["images"].append(dict(d["images"][0])), "image id 1 appears twice"),
    ],
)
def test_bad_annotations_fail_clearly(coco_root: Path, tmp_path: Path, spoil, match):
    root = _copy(coco_root, tmp_path)
    _edit(root, "train2017", spoil)
    with pytest.raises(DataError, match=match):
        validate_coco_split(root, "train2017", train=True)


def test_invalid_json(coco_root: Path, tmp_path: Path):
    root = _copy(coco_root, tmp_path)
    (root / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        validate_coco_split(root, "val2017", train=False)


def test_harness_rejects_bad_data_before_touching_mmdet(coco_root: Path, tmp_path: Path, vit_encoder, run_coco):
    root = _copy(coco_root, tmp_path)
    (root / "val2017" / "000000100002.jpg").unlink()
    with pytest.raises(DataError, match="000000100002.jpg"):
        run_coco("coco-maskrcnn-fpn-1x", vit_encoder, root, tmp_path / "out")


# ------------------------------------------------------------------------------------------------ metrics
def fixed_detections(gt_json: Path, seed: int = 0) -> list[dict]:
    """A deterministic detection file: every GT box jittered (some badly), a wrong-class copy and a few false
    positives, with polygon masks and random scores."""
    rng = random.Random(seed)
    gt = json.loads(gt_json.read_text())
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    dets = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        for jitter, cat in ((0.05, a["category_id"]), (0.3, a["category_id"]), (0.1, 3 - a["category_id"])):
            dx, dy = rng.uniform(-jitter, jitter) * w, rng.uniform(-jitter, jitter) * h
            poly = [v + (dx if i % 2 == 0 else dy) for i, v in enumerate(a["segmentation"][0])]
            dets.append(
                {
                    "image_id": a["image_id"],
                    "category_id": cat,
                    "bbox": [x + dx, y + dy, w, h],
                    "segmentation": [poly],
                    "score": round(rng.random(), 4),
                }
            )
    for im_id, (w, h) in size.items():
        x, y = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
        dets.append(
            {
                "image_id": im_id,
                "category_id": 1,
                "bbox": [x, y, 20.0, 20.0],
                "segmentation": [[x, y, x + 20, y, x + 20, y + 20, x, y + 20]],
                "score": 0.5,
            }
        )
    return dets


def _pycocotools_stats(gt_json: Path, dets: list[dict], iou_type: str) -> list[float]:
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_doc = json.loads(gt_json.read_text())
    if iou_type == "segm":  # RLE and no box: the mask's own area sorts it into small/medium/large (as mmdet)
        sizes = {im["id"]: (im["height"], im["width"]) for im in gt_doc["images"]}
        dets = [
            {
                "image_id": d["image_id"],
                "category_id": d["category_id"],
                "score": d["score"],
                "segmentation": mask_utils.merge(mask_utils.frPyObjects(d["segmentation"], *sizes[d["image_id"]])),
            }
            for d in dets
        ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [100.0 * s for s in ev.stats]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("backend", ["auto", "pycocotools"])
def test_coco_metrics_equal_pycocotools_on_fixed_detections(coco_root: Path, tmp_path: Path, iou_type, backend):
    gt_json = coco_root / "annotations" / "instances_val2017.json"
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(fixed_detections(gt_json)))
    ours = coco_metrics(gt_json, det_file, iou_type, backend=backend)
    ref = _pycocotools_stats(gt_json, json.loads(det_file.read_text()), iou_type)
    assert set(ours) == set(STAT_NAMES)
    for name, i in STAT_NAMES.items():
        assert ours[name] == pytest.approx(ref[i], abs=1e-9), name
    assert 0 < ours["AP"] < 100


def test_coco_metrics_edge_cases(coco_root: Path):
    gt_json = coco_root / "annotations" / "instances_val2017.json"
    gt = json.loads(gt_json.read_text())
    perfect = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "segmentation": a["segmentation"],
            "score": 1.0,
        }
        for a in gt["annotations"]
    ]
    assert coco_metrics(gt_json, perfect, "bbox") == {k: 100.0 for k in STAT_NAMES}
    assert coco_metrics(gt_json, perfect, "segm") == {k: 100.0 for k in STAT_NAMES}
    assert coco_metrics(gt_json, [], "bbox") == {k: 0.0 for k in STAT_NAMES}


def test_fixed_size_encoder_is_refused_before_mmdet(
    coco_root: Path, tmp_path: Path, run_coco, monkeypatch: pytest.MonkeyPatch
):
    """An encoder built for one input size (timm's own GC ViT, windows fixed at 224 px) is refused with its name
    instead of crashing inside training; vitbench's GC ViT adapter pads to its windows and passes the same check."""
    import timm

    from benchmarks.dense.coco import check_variable_input
    from benchmarks.dense.protocols import CocoMaskRcnn3xProtocol
    from methods import build_encoder, get_adapter
    from methods.errors import VitbenchError

    check_variable_input(build_encoder("gcvit", "xxtiny", weights="random"), CocoMaskRcnn3xProtocol(), "cpu")
    adapter = type(get_adapter("gcvit"))
    monkeypatch.setattr(adapter, "create_model", lambda self, v: timm.create_model(v.arch, num_classes=0))
    enc = build_encoder("gcvit", "xxtiny", weights="random")
    with pytest.raises(VitbenchError, match=r"gcvit:xxtiny \(gcvit_xxtiny\): forward_dense fails on a 64x96 input"):
        run_coco("coco-maskrcnn-3x", enc, coco_root, tmp_path / "out")


# ------------------------------------------------------------------------------------------------ the harness
def test_launcher_comes_from_the_run_context(coco_root: Path, tmp_path: Path, vit_encoder, run_coco, monkeypatch):
    """A multi-process launcher is the context's (the runner detects torchrun/srun or takes --launcher); the
    harness reads no environment variable for it."""
    from methods.errors import VitbenchError

    monkeypatch.setenv("VITBENCH_LAUNCHER", "none")  # no longer consulted
    with pytest.raises(VitbenchError, match="launcher 'pytorch' needs --device cuda"):
        run_coco("coco-maskrcnn-fpn-1x", vit_encoder, coco_root, tmp_path / "out", launcher="pytorch")


def test_missing_mm_stack_names_the_command_that_builds_it(monkeypatch: pytest.MonkeyPatch):
    """Both dense harnesses load mm_glue through benchmarks.dense.engine: without the mm* stack, one line naming
    the task and the build command (the import fails as it would without mmcv)."""
    import sys

    import benchmarks.dense
    from benchmarks.dense.engine import load_mm_glue
    from methods.errors import VitbenchError

    monkeypatch.delattr(benchmarks.dense, "mm_glue", raising=False)
    monkeypatch.setitem(sys.modules, "benchmarks.dense.mm_glue", None)
    with pytest.raises(VitbenchError, match=r"task ade20k-semfpn-40k needs the mm\* stack .*build_mmcv"):
        load_mm_glue("ade20k-semfpn-40k", "none", "cpu")
    with pytest.raises(VitbenchError, match="launcher 'slurm' needs --device cuda"):
        load_mm_glue("ade20k-semfpn-40k", "slurm", "cpu")


@pytest.mark.parametrize(
    ("task", "other"),
    [("coco-maskrcnn-3x", "coco-cascade-3x"), ("coco-cascade-3x", "coco-maskrcnn-3x"), ("coco-maskrcnn-fpn-1x", "knn")],
)
def test_one_harness_serves_the_coco_entries_with_their_own_protocol(coco_root, tmp_path, vit_encoder, task, other):
    from benchmarks.catalog import get_task
    from benchmarks.dense.coco import CocoDetHarness
    from benchmarks.harness import RunContext, load_harness

    harness = load_harness(task)
    assert type(harness) is CocoDetHarness and harness.task == task
    ctx = RunContext(task=get_task(task), encoder=vit_encoder, data_root=coco_root, work_dir=tmp_path, progress=False)
    with pytest.raises(TypeError, match=f"task {task} runs"):
        harness.run(ctx, get_task(other).protocol_for(smoke=True))


def test_detection_files_are_picked_from_the_dumped_outputs(tmp_path: Path):
    from benchmarks.dense.coco import _detection_files

    bbox = tmp_path / "coco.bbox.json"
    bbox.write_text("[1]")
    outputs = {"bbox.json": bbox, "proposal.json": tmp_path / "coco.proposal.json"}
    files = _detection_files(outputs, str(tmp_path / "coco"), main=True)
    assert files == {"bbox": bbox, "segm": tmp_path / "coco.segm.json"}
    assert bbox.read_text() == "[1]"
    assert json.loads(files["segm"].read_text()) == []  # mmdet wrote no segm file: an empty result list instead
    assert not _detection_files({}, str(tmp_path / "other"), main=False)["bbox"].exists()  # only rank 0 writes


def test_data_module_and_protocols_import_without_torch_or_mm():
    """benchmarks.data.coco and the dense protocols are read by the catalogue, `data synth` and `validate`."""
    import subprocess
    import sys

    code = (
        "import sys, benchmarks.data.coco, benchmarks.dense.protocols; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'timm', 'mmcv', 'mmdet', 'mmseg', 'mmengine')))"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo).stdout
    assert out.strip() == "[]"
