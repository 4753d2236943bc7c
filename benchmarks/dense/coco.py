"""The COCO detection + instance segmentation harness (Mask R-CNN / Cascade Mask R-CNN + FPN on mmdet 3.3).

One :class:`CocoDetHarness` serves the three catalogue entries; what differs between them is all in their protocols:

- ``coco-maskrcnn-fpn-1x``: SelfPatch's protocol (:class:`~benchmarks.dense.protocols.CocoDetProtocol`);
- ``coco-maskrcnn-3x`` / ``coco-cascade-3x``: GC ViT's protocols;
- ``coco-cascade-1x``: iBOT's protocol (Cascade Mask R-CNN 1x with layer-wise lr decay).

Data is COCO's layout, checked by :func:`benchmarks.data.coco.validate_coco_split` before anything reaches mmdet;
what mmdet silently drops is counted and written to the record's ``dataset.skipped``.

Metrics are COCOeval's 12-number summary, of which the record keeps AP, AP50, AP75, APs, APm, APl for ``bbox``
and ``segm`` (in %), computed here by :func:`coco_metrics` from the detections mmdet dumps (mmdet's CocoMetric runs
with ``format_only``), through faster-coco-eval when it is installed, else pycocotools (same numbers).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from benchmarks.data.coco import CocoSplit, validate_coco_split
from benchmarks.dense.backbone import check_dense_input, layer_decay_groups
from benchmarks.dense.engine import load_mm_glue
from benchmarks.dense.mmdet_config import DetProtocol, build_mmdet_config
from benchmarks.dense.neck import pad_divisor, plan_neck, to_jsonable
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.records import DatasetInfo
from methods import Encoder
from methods.errors import DataError, VitbenchError

IOU_TYPES = ("bbox", "segm")
# COCOeval.stats indices of the numbers the record keeps.
STAT_NAMES = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5}


# ------------------------------------------------------------------------------------------------ metrics
def _cocoeval_backend(backend: str) -> tuple[Any, Any, str]:
    """(COCO class, COCOeval class, name) for "pycocotools", "faster_coco_eval" or "auto": faster-coco-eval (the
    ``dense`` extra installs it) when it imports, else pycocotools. The harness scores with "auto" and writes the
    name to the record's ``extra.cocoeval_backend``; both packages' versions are in ``provenance.versions``."""
    if backend in ("auto", "faster_coco_eval"):
        try:
            from faster_coco_eval import COCO as FCOCO
            from faster_coco_eval import COCOeval_faster

            return FCOCO, COCOeval_faster, "faster_coco_eval"
        except ImportError:
            if backend == "faster_coco_eval":
                raise VitbenchError("faster_coco_eval is not installed (pip install faster-coco-eval)") from None
    if backend not in ("auto", "pycocotools", "faster_coco_eval"):
        raise VitbenchError(f"unknown COCOeval backend {backend!r}")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval, "pycocotools"


def _rle(det: dict[str, Any], sizes: dict[Any, tuple[int, int]]) -> dict[str, Any]:
    """A mask detection's segmentation as compressed RLE: polygons are rasterised at their image's size."""
    from pycocotools import mask as mask_utils

    seg = det.get("segmentation")
    if not isinstance(seg, list):
        return seg  # type: ignore[return-value]
    if det.get("image_id") not in sizes:
        raise DataError(f"mask detection on image_id {det.get('image_id')!r}, which is not in the ground truth")
    rle = mask_utils.merge(mask_utils.frPyObjects(seg, *sizes[det["image_id"]]))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _sizes(images: list[dict[str, Any]]) -> dict[Any, tuple[int, int]]:
    return {im["id"]: (im["height"], im["width"]) for im in images}


def _masks_without_boxes(dets: list[dict[str, Any]], images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mask detections as COCOeval should see them: RLE masks and no box.

    pycocotools takes a detection's area from its box when one is present, which would sort masks into
    small/medium/large by box size; mmdet and detectron2 drop the box for mask AP, and so do we. Without a box,
    pycocotools needs RLE, so polygon masks are rasterised at their image's size.
    """
    sizes = _sizes(images)
    return [{k: v for k, v in d.items() if k != "bbox"} | {"segmentation": _rle(d, sizes)} for d in dets]


def _faster_mask_results(coco_cls: Any, gt: Any, dets: list[dict[str, Any]]) -> Any:
    """faster-coco-eval's results object for mask detections, as its ``loadRes`` builds it from the masks of
    :func:`_masks_without_boxes` (area from the mask, ids from 1, not crowd), built directly: the areas come from
    one call for all masks instead of one per detection, and a dumped box is kept instead of being recomputed from
    the mask (faster-coco-eval's mask IoU is computed from the RLE; the box plays no part in mask AP). Same stats
    as pycocotools to 1e-4 (tests/dense/test_cocoeval_backends.py)."""
    from faster_coco_eval.core import mask as fast_mask

    sizes = _sizes(gt.dataset["images"])
    anns = [d | {"segmentation": _rle(d, sizes), "id": i + 1, "iscrowd": 0} for i, d in enumerate(dets)]
    for ann, area in zip(anns, fast_mask.area([a["segmentation"] for a in anns]).tolist()):
        ann["area"] = float(area)
    boxless = [a for a in anns if "bbox" not in a]
    if boxless:
        for ann, box in zip(boxless, fast_mask.toBbox([a["segmentation"] for a in boxless]).tolist()):
            ann["bbox"] = box
    res = coco_cls()
    res.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"])}
    res.dataset["annotations"] = anns
    res.createIndex()
    return res


def coco_stats(
    gt_json: Path | str, detections: Path | str | list[dict[str, Any]], iou_type: str, backend: str = "auto"
) -> list[float]:
    """COCOeval's 12-number summary (fractions: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl;
    -1 where an area range has no ground truth) of ``detections`` (a COCO results file or list) against
    ``gt_json``, through ``backend`` (see :func:`_cocoeval_backend`). faster-coco-eval gives pycocotools' numbers
    (equal to 1e-4 on every stat: tests/dense/test_cocoeval_backends.py) several times faster (README § Scale).

    No detections at all gives 0 everywhere (pycocotools cannot load an empty result list).
    """
    if iou_type not in IOU_TYPES:
        raise VitbenchError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    dets = detections if isinstance(detections, list) else json.loads(Path(detections).read_text())
    coco_cls, eval_cls, name = _cocoeval_backend(backend)
    with contextlib.redirect_stdout(io.StringIO()):  # both print progress; the record holds the numbers
        gt = coco_cls(str(gt_json))
        if not dets:
            return [0.0] * 12
        unknown = {d.get("image_id") for d in dets} - {im["id"] for im in gt.dataset["images"]}
        if unknown:
            raise DataError(f"detections on image ids not in {gt_json}: {sorted(map(repr, unknown))[:5]}")
        if iou_type == "segm" and name == "faster_coco_eval":
            res = _faster_mask_results(coco_cls, gt, dets)
        elif iou_type == "segm":
            res = gt.loadRes(_masks_without_boxes(dets, gt.dataset["images"]))
        else:
            res = gt.loadRes(dets)
        ev = eval_cls(gt, res, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats[:12]]  # faster-coco-eval appends AR50 and AR75


def coco_metrics(
    gt_json: Path | str, detections: Path | str | list[dict[str, Any]], iou_type: str, backend: str = "auto"
) -> dict[str, float]:
    """The record's COCOeval numbers (%): ``AP, AP50, AP75, APs, APm, APl`` of :func:`coco_stats`; an area range
    without ground truth (COCOeval's -1) is left out."""
    stats = coco_stats(gt_json, detections, iou_type, backend)
    return {k: 100.0 * stats[i] for k, i in STAT_NAMES.items() if stats[i] >= 0}


# ------------------------------------------------------------------------------------------------ harnesses
def check_variable_input(encoder: Encoder, protocol: DetProtocol, device: str) -> None:
    """Fail early, with the encoder's name, if ``forward_dense`` cannot take the padded variable-size images
    detection feeds (e.g. ``[B, 3, 800, 1216]``); see :func:`benchmarks.dense.backbone.check_dense_input`."""
    plan = plan_neck(encoder.spec, protocol.pyramid_strides, protocol.fpn_channels, protocol.fpn_num_outs)
    check_dense_input(encoder, pad_divisor(encoder.spec, plan), device, "the COCO tasks feed variable-size images")


class CocoDetHarness(Harness):
    """Fine-tune a detector with the encoder as backbone on COCO train, report COCOeval on val."""

    def run(self, ctx: RunContext, protocol: DetProtocol) -> RunOutput:
        """Validate the data, generate the config, train + test through mmdet, score with COCOeval.

        ``ctx.work_dir`` holds the mmengine work folder (``work_dir/mmdet``): checkpoints, logs, the dumped config
        and the detections. Running again with the same work folder resumes from the last checkpoint.
        """
        self.check_protocol(protocol)
        encoder, device = ctx.encoder, ctx.device
        data_root = Path(ctx.data_root)
        train = validate_coco_split(data_root, protocol.train_split, train=True)
        val = validate_coco_split(data_root, protocol.val_split, train=False)
        if train.categories != val.categories:
            raise DataError(f"{train.ann_path} and {val.ann_path}: the 'categories' lists differ")
        check_variable_input(encoder, protocol, device)
        mm_glue = load_mm_glue(self.task, ctx.launcher, device)

        work = Path(ctx.work_dir) / "mmdet"
        mm_glue.prepare()
        key_ref = mm_glue.register_encoder(encoder)
        cfg = build_mmdet_config(
            encoder.spec,
            protocol,
            encoder_ref=key_ref,
            classes=train.classes,
            mean=encoder.data_config.mean,
            std=encoder.data_config.std,
            data_root=data_root,
            work_dir=work,
            seed=ctx.seed,
            launcher=ctx.launcher,
            device=device,
            resume_from=mm_glue.own_last_checkpoint(work),
            layer_ids=encoder.layer_ids(),
        )
        result = mm_glue.train_and_test(cfg, task=self.task)
        detections = _detection_files(result.outputs, cfg["test_evaluator"]["outfile_prefix"], result.is_main_process)

        metrics: dict[str, float] = {}
        undefined: list[str] = []
        _, _, backend = _cocoeval_backend("auto")
        if result.is_main_process:
            for t in IOU_TYPES:
                values = coco_metrics(val.ann_path, detections[t], t, backend=backend)
                for s in STAT_NAMES:
                    if s in values:
                        metrics[f"{t}_{s}"] = values[s]
                    else:
                        undefined.append(f"{t}_{s}")
        metrics = mm_glue.broadcast(metrics)

        plan = plan_neck(encoder.spec, protocol.pyramid_strides, protocol.fpn_channels, protocol.fpn_num_outs)
        skipped = {f"train_{k}": v for k, v in train.skipped.items()}
        skipped.update({f"val_{k}": v for k, v in val.skipped.items() if k != "degenerate_boxes"})
        probe = {
            "neck": plan.to_dict(),
            "detector": protocol.detector,
            "blocks": list(encoder.spec.indices),
            "backbone_num_heads": protocol.backbone_num_heads,
            "layer_decay": getattr(protocol, "layer_decay", 1.0) if encoder.spec.family == "vit" else 1.0,
            "drop_path_blocks": result.drop_path_blocks,
            "train_scales": list(protocol.train_scales),
            "test_scale": list(protocol.test_scale),
            "normalisation": {"mean": list(encoder.data_config.mean), "std": list(encoder.data_config.std)},
            "finetune": "full",
        }
        extra = {
            "mm_config": to_jsonable(cfg),
            "layer_decay_groups": {str(k): len(v) for k, v in layer_decay_groups(cfg).items()},
            "config_path": str(result.config_path),
            "log_path": str(result.log_path) if result.log_path else None,
            "work_dir": str(work),
            "detections": {t: str(p) for t, p in detections.items()},
            "resumed_from": result.resumed_from,
            "world_size": result.world_size,
            "total_batch": result.world_size * protocol.batch_per_gpu,
            "effective_lr": result.effective_lr,
            "train_iters": result.train_iters,
            "amp": cfg["optim_wrapper"]["type"] == "AmpOptimWrapper",
            "cocoeval_backend": backend,
            "undefined_metrics": undefined,
            "train_set": {
                "split": train.split,
                "fingerprint": train.fingerprint,
                "n_images": train.n_images,
                "n_annotations": train.n_annotations,
            },
        }
        dataset = coco_dataset_info(data_root, train, val, skipped)
        return RunOutput(metrics=metrics, dataset=dataset, probe=probe, extra=extra)


def coco_dataset_info(data_root: Path, train: CocoSplit, val: CocoSplit, skipped: dict[str, int]) -> DatasetInfo:
    """The record's ``dataset``, with the identity a paper-track record is checked against (catalog ``COCO_2017``):
    images per split as the annotation files list them, the category count and list, each annotation file's sha256."""
    return DatasetInfo(
        name="coco",
        split=val.split,
        fingerprint=hashlib.sha256(f"{train.fingerprint}:{val.fingerprint}".encode()).hexdigest()[:16],
        n_samples=val.n_images,
        root=str(data_root),
        skipped=skipped,
        splits={train.split: train.n_images, val.split: val.n_images},
        n_classes=len(train.categories),
        classes_sha256=hashlib.sha256("\n".join(train.classes).encode("utf-8")).hexdigest(),
        annotations={s.ann_path.name: s.ann_sha256 for s in (train, val)},
    )


def _detection_files(outputs: dict[str, Path], outfile_prefix: str, main: bool) -> dict[str, Path]:
    """The COCO results file of each IoU type among the run's dumped files (mmdet's ``<prefix>.<type>.json``).

    mmdet writes no segm file when there is nothing to write: the main process then writes an empty result list
    in its place, so the record points at a file for each type and COCOeval scores it as 0.
    """
    files = {}
    for t in IOU_TYPES:
        path = outputs.get(f"{t}.json", Path(f"{outfile_prefix}.{t}.json"))
        if main and not path.exists():
            path.write_text("[]")
        files[t] = path
    return files
