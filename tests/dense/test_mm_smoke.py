"""End-to-end on the mm* stack (marker ``dense``; `.ci/run` runs them after building the stack).

A smoke run through the CLI writes a valid record with box and mask AP (scored by faster-coco-eval, equal to
pycocotools on the dumped detections); the built detector's neck has the
planned shapes; a second run resumes from the first run's checkpoint; mmdet's own CocoMetric agrees with
vitbench's COCOeval on a fixed detection file; the glue registers in both engines and reports dumped files
generically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.dense


@pytest.fixture(scope="module")
def glue():
    from benchmarks.dense import mm_glue  # an ImportError here is a failure: `-m dense` runs after the build

    mm_glue.prepare()
    return mm_glue


def test_smoke_run_via_cli_writes_valid_record(coco_root: Path, tmp_path: Path, glue):
    from benchmarks.cli import main
    from benchmarks.records import load_record

    out = tmp_path / "results"
    argv = [
        "run",
        "--method",
        "dino",
        "--task",
        "coco-maskrcnn-fpn-1x",
        "--data",
        str(coco_root),
        "--weights",
        "random",
        "--smoke",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    record = load_record(out / "runs" / "coco-maskrcnn-fpn-1x" / "dino" / "vits16__seed0.json")
    assert record.track == "smoke" and record.task == "coco-maskrcnn-fpn-1x"
    for iou in ("bbox", "segm"):
        assert {f"{iou}_{s}" for s in ("AP", "AP50", "AP75", "APs", "APm", "APl")} <= set(record.metrics)
    # the synthetic set is learnable: two smoke epochs from random weights already find boxes and masks
    assert record.metrics["bbox_AP50"] > 0 and record.metrics["segm_AP50"] > 0
    assert record.probe["neck"]["kind"] == "simple_pyramid+fpn"
    assert record.probe["neck"]["out_strides"] == [4, 8, 16, 32]
    extra = record.extra
    assert Path(extra["config_path"]).is_file() and Path(extra["log_path"]).is_file()
    assert extra["mm_config"]["model"]["backbone"]["type"] == "VitbenchEncoderBackbone"
    assert extra["train_iters"] == 2 * 8  # 2 epochs x 16 images / batch 2
    assert extra["effective_lr"] == pytest.approx(2e-4)
    assert record.dataset.n_samples == 8 and record.dataset.name == "coco"
    # scored through faster-coco-eval (the dense extra installs it), named in the record, and equal to pycocotools
    # on the very detections the run dumped, to 1e-4 on every number the record keeps
    from benchmarks.dense.coco import STAT_NAMES, coco_stats

    assert extra["cocoeval_backend"] == "faster_coco_eval"
    assert {"faster-coco-eval", "pycocotools"} <= set(record.provenance.versions)
    gt_json = coco_root / "annotations" / "instances_val2017.json"
    for iou in ("bbox", "segm"):
        ref = coco_stats(gt_json, extra["detections"][iou], iou, backend="pycocotools")
        for name, i in STAT_NAMES.items():
            assert record.metrics[f"{iou}_{name}"] / 100 == pytest.approx(ref[i], abs=1e-4), (iou, name)


@pytest.mark.parametrize("task", ["coco-maskrcnn-3x", "coco-cascade-3x"])
def test_gcvit_runs_the_3x_tasks_via_cli(coco_root: Path, tmp_path: Path, glue, task):
    """GC ViT (timm's windows fixed at 224 px; vitbench's adapter pads every block to its window) runs GC ViT's own
    COCO protocols end to end on the synthetic set's odd image sizes: no refusal, a valid record with AP."""
    from benchmarks.cli import main
    from benchmarks.records import load_record
    from benchmarks.validate import validate_record

    out = tmp_path / "results"
    argv = ["run", "--method", "gcvit:xxtiny", "--task", task, "--data", str(coco_root), "--weights", "random"]
    assert main([*argv, "--smoke", "--out", str(out), "--no-progress"]) == 0
    path = out / "runs" / task / "gcvit" / "xxtiny__seed0.json"
    record = load_record(path)
    assert validate_record(record, path) is None
    assert record.track == "smoke" and record.task == task and record.arch == "gcvit_xxtiny"
    ap = {f"{iou}_AP{s}" for iou in ("bbox", "segm") for s in ("", "50", "75")}
    assert ap <= set(record.metrics) and all(0 <= record.metrics[k] <= 100 for k in ap)
    assert record.probe["neck"]["kind"] == "fpn"  # hierarchical: the stages go to FPN as they are
    model = record.extra["mm_config"]["model"]
    assert model["type"] == ("CascadeRCNN" if "cascade" in task else "MaskRCNN")
    assert model["neck"]["in_channels"] == [64, 128, 256, 512] and record.extra["train_iters"] == 2 * 8


@pytest.mark.parametrize(
    ("method", "kind"), [("dino:vits16", "simple_pyramid+fpn"), ("dino:rn50", "fpn"), ("gcvit:xxtiny", "fpn")]
)
def test_detector_neck_shapes(glue, method, kind):
    """The detector built around each kind of encoder (GC ViT at a non-224, non-window-multiple size) gives the
    planned FPN levels."""
    from mmengine.config import Config

    from benchmarks.dense.mmdet_config import build_mmdet_config
    from benchmarks.dense.neck import plan_neck
    from benchmarks.dense.protocols import CocoDetProtocol
    from methods import build_encoder

    enc = build_encoder(method, weights="random")
    assert plan_neck(enc.spec).kind == kind
    cfg = build_mmdet_config(
        enc.spec,
        CocoDetProtocol.smoke(),
        encoder_ref=glue.register_encoder(enc),
        classes=["a", "b"],
        mean=enc.data_config.mean,
        std=enc.data_config.std,
        data_root="/nonexistent",
        work_dir="/nonexistent",
    )
    # in mmdet's scope whatever ran before (an mmseg build, or no Runner yet: no default scope at all)
    model = glue.build_model(Config(cfg).model, "mmdet").eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 128, 96))
    c = CocoDetProtocol.smoke().fpn_channels
    assert [tuple(f.shape) for f in feats] == [(1, c, 128 // s, 96 // s) for s in (4, 8, 16, 32)] + [(1, c, 2, 2)]


def test_checkpoint_resume(coco_root: Path, tmp_path: Path, glue, vit_encoder, run_coco):
    work = tmp_path / "work"
    one = run_coco("coco-maskrcnn-fpn-1x", vit_encoder, coco_root, work, epochs=1)
    assert one.extra["resumed_from"] is None and one.extra["train_iters"] == 8
    assert (work / "mmdet" / "epoch_1.pth").is_file()
    # the same work folder with a longer schedule: resumes after epoch 1 and trains epoch 2 only
    two = run_coco("coco-maskrcnn-fpn-1x", vit_encoder, coco_root, work, epochs=2)
    assert two.extra["resumed_from"].endswith("epoch_1.pth") and two.extra["train_iters"] == 16
    log = Path(two.extra["log_path"]).read_text()
    assert "resumed epoch: 1" in log.lower() or "resumed" in log.lower()
    # a finished run resumes at its end: no training, the same detections and metrics
    again = run_coco("coco-maskrcnn-fpn-1x", vit_encoder, coco_root, work, epochs=2)
    assert again.extra["resumed_from"].endswith("epoch_2.pth") and again.extra["train_iters"] == 16
    assert again.metrics == two.metrics


def test_own_checkpoint_scheme_is_restricted(tmp_path: Path, glue):
    """The resume scheme admits mmengine's HistoryBuffer (and its pickled statistics functions), and still
    refuses arbitrary globals and any other getattr."""
    from mmengine.logging.history_buffer import HistoryBuffer

    from methods.errors import UnsafeCheckpointError, VitbenchError

    buf = HistoryBuffer()
    buf.update(1.5)
    good = tmp_path / "good.pth"
    torch.save(
        {
            "meta": {"epoch": 1},
            "message_hub": {"log_scalars": {"loss": buf}},
            "state_dict": {"w": torch.ones(2)},
            "np": np.arange(3),
        },
        good,
    )
    with pytest.raises(Exception, match="Weights only load failed"):  # why the scheme exists
        torch.load(good)
    ckpt = glue._load_own_checkpoint(glue.OWN_CHECKPOINT + str(good))
    assert ckpt["meta"]["epoch"] == 1 and torch.equal(ckpt["state_dict"]["w"], torch.ones(2))
    assert ckpt["message_hub"]["log_scalars"]["loss"].current() == 1.5

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    class SneakyGetattr:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, "__init__"))

    for i, payload in enumerate((Evil(), SneakyGetattr())):
        bad = tmp_path / f"bad{i}.pth"
        torch.save({"x": payload}, bad)
        with pytest.raises(UnsafeCheckpointError):
            glue._load_own_checkpoint(glue.OWN_CHECKPOINT + str(bad))
    # and only checkpoints inside the run's own work folder are resumed
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "last_checkpoint").write_text(str(good))
    with pytest.raises(VitbenchError, match="outside the run's work folder"):
        glue.own_last_checkpoint(tmp_path / "work")


def test_mmdet_cocometric_agrees_with_our_cocoeval(coco_root: Path, tmp_path: Path, glue):
    """The same fixed detections through mmdet's CocoMetric (rounds to 3 decimals) and coco_metrics."""
    from mmdet.evaluation import CocoMetric
    from pycocotools import mask as mask_utils

    from benchmarks.dense.coco import coco_metrics
    from tests.dense.test_coco_data import fixed_detections

    gt_json = coco_root / "annotations" / "instances_val2017.json"
    gt = json.loads(gt_json.read_text())
    dets = fixed_detections(gt_json)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    cat_ids = [c["id"] for c in gt["categories"]]
    metric = CocoMetric(ann_file=str(gt_json), metric=["bbox", "segm"], outfile_prefix=str(tmp_path / "m"))
    metric.dataset_meta = {"classes": tuple(c["name"] for c in gt["categories"])}
    results = []
    for img_id, (h, w) in sizes.items():
        mine = [d for d in dets if d["image_id"] == img_id]
        rles = [mask_utils.merge(mask_utils.frPyObjects(d["segmentation"], h, w)) for d in mine]
        pred = {
            "img_id": img_id,
            "bboxes": np.array(
                [[x, y, x + bw, y + bh] for x, y, bw, bh in (d["bbox"] for d in mine)], dtype=np.float32
            ).reshape(-1, 4),
            "scores": np.array([d["score"] for d in mine], dtype=np.float32),
            "labels": np.array([cat_ids.index(d["category_id"]) for d in mine]),
            "masks": rles,
        }
        results.append(({"img_id": img_id, "width": w, "height": h}, pred))
    theirs = metric.compute_metrics(results)
    det_file = tmp_path / "dets.json"
    for iou in ("bbox", "segm"):
        # score the file mmdet itself wrote, so both sides see identical detections
        ours = coco_metrics(gt_json, tmp_path / f"m.{iou}.json", iou)
        for name, key in (
            ("AP", "mAP"),
            ("AP50", "mAP_50"),
            ("AP75", "mAP_75"),
            ("APs", "mAP_s"),
            ("APm", "mAP_m"),
            ("APl", "mAP_l"),
        ):
            assert ours[name] / 100 == pytest.approx(theirs[f"{iou}_{key}"], abs=5e-4), (iou, name)
    det_file.write_text(json.dumps(dets))
    assert coco_metrics(gt_json, det_file, "bbox")["AP"] > 0


def test_glue_registers_in_both_engines_and_lists_dumped_files(tmp_path: Path, glue):
    from mmdet.registry import MODELS as MMDET
    from mmseg.registry import MODELS as MMSEG

    from benchmarks.dense.backbone import BACKBONE_TYPE, EncoderBackbone
    from benchmarks.dense.neck import PYRAMID_TYPE, SimplePyramid
    from methods.errors import VitbenchError

    for registry in (MMDET, MMSEG):
        assert registry.get(BACKBONE_TYPE) is EncoderBackbone and registry.get(PYRAMID_TYPE) is SimplePyramid
    assert not hasattr(glue, "launcher_from_env")  # the launcher is the run context's
    work = tmp_path / "work"
    (work / "detections").mkdir(parents=True)
    (work / "seg" / "sub").mkdir(parents=True)
    for name in ("coco.bbox.json", "coco.segm.json", "other.json"):
        (work / "detections" / name).write_text("[]")
    (work / "seg" / "sub" / "a.png").write_bytes(b"")
    evaluators = [{"outfile_prefix": str(work / "detections" / "coco")}, {"output_dir": str(work / "seg")}]
    found = glue._dumps(glue._dump_locations(evaluators, work))
    assert found == {
        "bbox.json": work / "detections" / "coco.bbox.json",
        "segm.json": work / "detections" / "coco.segm.json",
        "sub/a.png": work / "seg" / "sub" / "a.png",
    }
    with pytest.raises(VitbenchError, match="outside the run's work folder"):
        glue._dump_locations({"outfile_prefix": str(tmp_path / "elsewhere" / "coco")}, work)
