"""COCO detection + instance segmentation harnesses (Mask R-CNN / Cascade Mask R-CNN + FPN on mmdet 3.3).

Tasks:

- ``coco-maskrcnn-fpn-1x``: SelfPatch's protocol (:class:`~benchmarks.dense.configs.CocoDetProtocol`);
- ``coco-maskrcnn-3x`` / ``coco-cascade-3x``: GC ViT's protocols.

Data is COCO's layout: ``ROOT/annotations/instances_{train2017,val2017}.json`` and ``ROOT/{train2017,val2017}/``.
Before anything reaches mmdet, :func:`validate_coco_split` reads each annotation file and fails with one line
naming the file, image or category at fault (missing json, image listed but absent, unknown category id, ...).
What mmdet silently drops is counted instead and written to the record's ``dataset.skipped``: degenerate boxes,
malformed polygons, training images without usable annotations or under 32 px.

Metrics are COCOeval's 12-number summary, of which the record keeps AP, AP50, AP75, APs, APm, APl for ``bbox``
and ``segm`` (in %), computed here by :func:`coco_metrics` from the detections mmdet dumps.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.dense.configs import (
    CocoCascade3xProtocol,
    CocoDetProtocol,
    CocoMaskRcnn3xProtocol,
    ann_file,
    build_mmdet_config,
    pad_divisor,
    plan_neck,
    to_jsonable,
)
from benchmarks.harness import Harness, RunOutput
from benchmarks.records import DatasetInfo, MetricMeta
from methods import Encoder
from methods.errors import DataError, VitbenchError

IOU_TYPES = ("bbox", "segm")
# COCOeval.stats indices of the numbers the record keeps.
STAT_NAMES = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5}
MIN_TRAIN_SIZE = 32  # mmdet's filter_cfg min_size in the generated config


# ------------------------------------------------------------------------------------------------ validation
@dataclass(frozen=True)
class CocoSplit:
    """A validated split: what the harness and the record need to know about it."""

    root: Path
    split: str
    ann_path: Path
    categories: tuple[tuple[int, str], ...]  # (id, name) in the file's order (mmdet's label order)
    n_images: int
    n_annotations: int
    fingerprint: str  # sha256 of the annotation file (first 16 hex digits)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.categories)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _valid_polygons(seg: Any) -> bool:
    """mmdet keeps a polygon with an even number (>= 6) of coordinates; RLE dicts are passed through."""
    if isinstance(seg, dict):
        return "counts" in seg and "size" in seg
    if not isinstance(seg, list) or not seg:
        return False
    return any(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg)


def validate_coco_split(root: Path | str, split: str, *, train: bool, check_files: bool = True) -> CocoSplit:
    """Read ``root/annotations/instances_<split>.json`` and check it against ``root/<split>/``.

    Raises :class:`DataError` naming the file and the image/annotation/category at fault for: a missing folder or
    json, invalid JSON or missing top-level lists, duplicate image/category ids or category names, an image
    listed but absent on disk, an annotation on an unknown image or with a ``category_id`` not in
    ``categories``, a malformed ``bbox``. Counts (not errors) what mmdet drops; see the module docstring.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    ann_path = root / ann_file(split)
    img_dir = root / split
    layout = f"expected COCO's layout: {root}/{ann_file(split)} and {root}/{split}/<images>"
    if not ann_path.is_file():
        raise DataError(f"{ann_path}: annotation file not found ({layout})")
    if not img_dir.is_dir():
        raise DataError(f"{img_dir}: image folder not found ({layout})")
    try:
        data = json.loads(ann_path.read_bytes())
    except json.JSONDecodeError as err:
        raise DataError(f"{ann_path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise DataError(f"{ann_path}: not UTF-8 text") from None
    if not isinstance(data, dict):
        raise DataError(f"{ann_path}: expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_path}: missing the '{key}' list")
    if not data["categories"]:
        raise DataError(f"{ann_path}: the 'categories' list is empty")

    cats: dict[int, str] = {}
    names: set[str] = set()
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise DataError(f"{ann_path}: category {c!r} needs an integer 'id' and a string 'name'")
        if c["id"] in cats:
            raise DataError(f"{ann_path}: category id {c['id']} appears twice")
        if c["name"] in names:  # mmdet maps class names back to ids: a repeated name would merge two classes
            raise DataError(f"{ann_path}: category name '{c['name']}' appears twice")
        cats[c["id"]] = c["name"]
        names.add(c["name"])

    images: dict[int, dict[str, Any]] = {}
    missing: list[str] = []
    for im in data["images"]:
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise DataError(f"{ann_path}: image entry {str(im)[:80]} needs an integer 'id' and a 'file_name'")
        if not all(isinstance(im.get(k), int) and im[k] > 0 for k in ("width", "height")):
            raise DataError(
                f"{ann_path}: image id {im['id']} ('{im['file_name']}') needs positive integer 'width' and 'height'"
            )
        if im["id"] in images:
            raise DataError(f"{ann_path}: image id {im['id']} appears twice")
        images[im["id"]] = im
        if check_files and not (img_dir / im["file_name"]).is_file():
            missing.append(f"id {im['id']} -> {img_dir / im['file_name']}")
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{ann_path}: image listed but absent: {missing[0]}{more}")

    skipped: Counter[str] = Counter()
    usable: Counter[int] = Counter()  # image id -> annotations mmdet will train on
    for a in data["annotations"]:
        if not isinstance(a, dict) or "id" not in a:
            raise DataError(f"{ann_path}: annotation {str(a)[:80]} has no 'id'")
        aid = a["id"]
        im = images.get(a.get("image_id"))
        if im is None:
            raise DataError(
                f"{ann_path}: annotation id {aid} refers to image_id {a.get('image_id')!r}, which is "
                "not in the 'images' list"
            )
        if a.get("category_id") not in cats:
            raise DataError(
                f"{ann_path}: annotation id {aid} (image id {im['id']}) has category_id "
                f"{a.get('category_id')!r}, which is not in the 'categories' list (ids {sorted(cats)})"
            )
        box = a.get("bbox")
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) for v in box)
            and all(math.isfinite(v) for v in box)
        ):
            raise DataError(
                f"{ann_path}: annotation id {aid} (image id {im['id']}) has bbox {box!r}; expected "
                "[x, y, width, height]"
            )
        x, y, w, h = box
        inter_w = max(0.0, min(x + w, im["width"]) - max(x, 0.0))
        inter_h = max(0.0, min(y + h, im["height"]) - max(y, 0.0))
        # The same rule as mmdet's CocoDataset.parse_data_info, which drops such boxes without a word.
        if inter_w * inter_h == 0 or float(a.get("area", 0) or 0) <= 0 or w < 1 or h < 1:
            skipped["degenerate_boxes"] += 1
            continue
        if "segmentation" in a and not _valid_polygons(a["segmentation"]):
            skipped["invalid_masks"] += 1  # mmdet keeps the box but marks the instance ignored
        if not a.get("iscrowd", 0):
            usable[im["id"]] += 1
    if train:
        skipped["images_without_annotations"] = sum(1 for i in images if usable[i] == 0)
        skipped["images_under_32px"] = sum(
            1 for i, im in images.items() if usable[i] and min(im["width"], im["height"]) < MIN_TRAIN_SIZE
        )
        if len(images) - skipped["images_without_annotations"] - skipped["images_under_32px"] <= 0:
            raise DataError(f"{ann_path}: no training image has a usable annotation")
    return CocoSplit(
        root=root,
        split=split,
        ann_path=ann_path,
        categories=tuple(cats.items()),
        n_images=len(images),
        n_annotations=len(data["annotations"]),
        fingerprint=_sha256(ann_path)[:16],
        skipped={k: v for k, v in skipped.items() if v},
    )


# ------------------------------------------------------------------------------------------------ metrics
def _cocoeval_backend(backend: str) -> tuple[Any, Any, str]:
    """(COCO class, COCOeval class, name) for "pycocotools", "faster_coco_eval" or "auto" (faster if installed)."""
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


def _masks_without_boxes(dets: list[dict[str, Any]], images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mask detections as COCOeval should see them: RLE masks and no box.

    pycocotools takes a detection's area from its box when one is present, which would sort masks into
    small/medium/large by box size; mmdet and detectron2 drop the box for mask AP, and so do we. Without a box,
    pycocotools needs RLE, so polygon masks are rasterised at their image's size.
    """
    from pycocotools import mask as mask_utils

    sizes = {im["id"]: (im["height"], im["width"]) for im in images}
    out = []
    for d in dets:
        d = {k: v for k, v in d.items() if k != "bbox"}
        seg = d.get("segmentation")
        if isinstance(seg, list):
            if d.get("image_id") not in sizes:
                raise DataError(f"mask detection on image_id {d.get('image_id')!r}, which is not in the ground truth")
            h, w = sizes[d["image_id"]]
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            d["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        out.append(d)
    return out


def coco_metrics(
    gt_json: Path | str, detections: Path | str | list[dict[str, Any]], iou_type: str, backend: str = "auto"
) -> dict[str, float]:
    """COCOeval of ``detections`` (a COCO results file or list) against ``gt_json``; values in %.

    Returns ``AP, AP50, AP75, APs, APm, APl``. An area range without ground truth (COCOeval's -1) is left out;
    no detections at all gives 0 everywhere (pycocotools cannot load an empty result list).
    """
    if iou_type not in IOU_TYPES:
        raise VitbenchError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    dets = detections if isinstance(detections, list) else json.loads(Path(detections).read_text())
    coco_cls, eval_cls, _ = _cocoeval_backend(backend)
    with contextlib.redirect_stdout(io.StringIO()):  # both print progress; the record holds the numbers
        gt = coco_cls(str(gt_json))
        if not dets:
            return dict.fromkeys(STAT_NAMES, 0.0)
        if iou_type == "segm":
            dets = _masks_without_boxes(dets, gt.dataset["images"])
        ev = eval_cls(gt, gt.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    return {k: 100.0 * stats[i] for k, i in STAT_NAMES.items() if stats[i] >= 0}


# ------------------------------------------------------------------------------------------------ synthetic data
def _shape_polygon(kind: str, cx: float, cy: float, rx: float, ry: float) -> list[float]:
    if kind == "square":
        pts = [(cx - rx, cy - ry), (cx + rx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)]
    else:  # an ellipse as a 24-gon
        pts = [(cx + rx * math.cos(2 * math.pi * k / 24), cy + ry * math.sin(2 * math.pi * k / 24)) for k in range(24)]
    return [round(v, 2) for p in pts for v in p]


def _polygon_area(poly: list[float]) -> float:
    xs, ys = poly[0::2], poly[1::2]
    return 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))


def synth_coco(out: Path | str, seed: int = 0, n_train: int = 16, n_val: int = 8) -> Path:
    """Write a tiny COCO-format set under ``out``: ``train2017/``, ``val2017/`` (JPEG) and
    ``annotations/instances_{train2017,val2017}.json`` with polygon masks. Returns ``out``.

    Two categories, "square" (red) and "disc" (blue), 1-2 non-overlapping objects per image on a dark, lightly
    noisy background; sizes span COCO's small/medium/large ranges (sides ~20-110 px on 128 x 128 and 128 x 96
    images), so every COCOeval number is defined. Large, high-contrast, colour-coded objects make the task
    learnable in a few iterations: even a smoke run scores non-zero AP.
    """
    from PIL import Image, ImageDraw

    out = Path(out)
    rng = random.Random(seed)
    categories = [
        {"id": 1, "name": "square", "supercategory": "shape"},
        {"id": 2, "name": "disc", "supercategory": "shape"},
    ]
    colours = {"square": (230, 40, 40), "disc": (40, 90, 235)}
    ann_id = 1
    for split, n, first_id in (("train2017", n_train, 1), ("val2017", n_val, 100001)):
        (out / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for k in range(n):
            img_id = first_id + k
            w, h = (128, 128) if k % 2 == 0 else (128, 96)
            base = rng.randint(10, 40)
            img = Image.new("RGB", (w, h), (base, base, base))
            px = img.load()
            for _ in range(w * h // 8):  # sparse noise: images are not trivially flat
                px[rng.randrange(w), rng.randrange(h)] = tuple(base + rng.randint(0, 25) for _ in range(3))
            draw = ImageDraw.Draw(img)
            placed: list[tuple[float, float, float, float]] = []
            n_obj = 1 + (k % 3 == 0)
            sizes = [rng.choice([(10, 15), (20, 42), (45, 56)]) for _ in range(n_obj)]
            for lo, hi in sizes:
                for _attempt in range(50):
                    rx, ry = rng.uniform(lo, hi), rng.uniform(lo, hi)
                    rx, ry = min(rx, w / 2 - 2), min(ry, h / 2 - 2)
                    cx, cy = rng.uniform(rx + 1, w - rx - 1), rng.uniform(ry + 1, h - ry - 1)
                    box = (cx - rx, cy - ry, cx + rx, cy + ry)
                    if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed):
                        break
                else:
                    continue
                placed.append(box)
                cat = categories[rng.randrange(2)]
                poly = _shape_polygon(cat["name"], cx, cy, rx, ry)
                draw.polygon(list(zip(poly[0::2], poly[1::2])), fill=colours[cat["name"]])
                xs, ys = poly[0::2], poly[1::2]
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": img_id,
                        "category_id": cat["id"],
                        "segmentation": [poly],
                        "area": round(_polygon_area(poly), 2),
                        "iscrowd": 0,
                        "bbox": [
                            round(min(xs), 2),
                            round(min(ys), 2),
                            round(max(xs) - min(xs), 2),
                            round(max(ys) - min(ys), 2),
                        ],
                    }
                )
                ann_id += 1
            name = f"{img_id:012d}.jpg"
            img.save(out / split / name, quality=95)
            images.append({"id": img_id, "file_name": name, "width": w, "height": h})
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        doc = {
            "info": {"description": f"vitbench synthetic COCO (seed {seed})"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (out / ann_file(split)).write_text(json.dumps(doc))
    return out


# ------------------------------------------------------------------------------------------------ harnesses
def check_variable_input(encoder: Encoder, protocol: CocoDetProtocol, device: str) -> None:
    """Fail early, with the encoder's name, if ``forward_dense`` cannot take a non-native input size.

    Detection feeds every image at its own (padded) size, e.g. ``[B, 3, 800, 1216]``. An encoder whose attention
    windows or position tables are fixed at construction (timm's GC ViT is built for one ``img_size``) would
    otherwise crash deep inside the first training step.
    """
    import torch

    plan = plan_neck(encoder.spec, protocol.pyramid_strides, protocol.fpn_channels, protocol.fpn_num_outs)
    d = pad_divisor(encoder.spec, plan)
    h, w = 2 * d, 3 * d
    try:
        with torch.inference_mode():
            feats = encoder.forward_dense(torch.zeros(1, encoder.spec.in_chans, h, w, device=device))
    except Exception as err:  # any failure here means the same failure later, inside mmdet
        i = encoder.identity
        raise VitbenchError(
            f"{i.method}:{i.variant} ({i.arch}): forward_dense fails on a {h}x{w} input ({type(err).__name__}: "
            f"{str(err)[:120]}); the COCO tasks feed variable-size images padded to multiples of {d}, so this "
            "encoder's adapter must accept them (e.g. pad to its windows instead of fixing img_size)"
        ) from None
    got = [tuple(f.shape[1:]) for f in feats]
    want = [(c, h // r, w // r) for c, r in zip(encoder.spec.channels, encoder.spec.reductions)]
    if got != want:
        raise VitbenchError(
            f"{encoder.identity.arch}: forward_dense gave maps {got} for a {h}x{w} input; its spec "
            f"(channels, reductions) promises {want}"
        )


_AP = MetricMeta(higher_is_better=True, unit="%", lo=0.0, hi=100.0)


class CocoDetHarness(Harness):
    """Fine-tune a detector with the encoder as backbone on COCO train, report COCOeval on val."""

    task: ClassVar[str] = "coco-maskrcnn-fpn-1x"
    protocol_cls: ClassVar[type[CocoDetProtocol]] = CocoDetProtocol
    headline: ClassVar[str] = "bbox_AP"
    synth_kind: ClassVar[str] = "coco"
    description: ClassVar[str] = (
        "Mask R-CNN + FPN 1x (SelfPatch protocol, mmdet 3.3): fine-tune on COCO train2017, box and mask AP on val2017."
    )
    metrics: ClassVar[dict[str, MetricMeta]] = {f"{t}_{s}": _AP for t in IOU_TYPES for s in STAT_NAMES}

    def run(
        self,
        encoder: Encoder,
        data_root: Path,
        out_dir: Path,
        seed: int,
        device: str,
        protocol: CocoDetProtocol,
        *,
        cache_dir: Path | None = None,
        progress: bool = True,
    ) -> RunOutput:
        """Validate the data, generate the config, train + test through mmdet, score with COCOeval.

        ``out_dir`` holds the mmengine work folder (``out_dir/mmdet``): checkpoints, logs, the dumped config and
        the detections. Running again with the same ``out_dir`` resumes from the last checkpoint.
        """
        data_root = Path(data_root)
        train = validate_coco_split(data_root, protocol.train_split, train=True)
        val = validate_coco_split(data_root, protocol.val_split, train=False)
        if train.categories != val.categories:
            raise DataError(f"{train.ann_path} and {val.ann_path}: the 'categories' lists differ")
        check_variable_input(encoder, protocol, device)
        try:
            from benchmarks.dense import mm_glue
        except ImportError as err:
            raise VitbenchError(
                f"task {self.task} needs the mm* stack ({err}); install it with: python -m benchmarks.dense.build_mmcv"
            ) from None

        work = Path(out_dir) / "mmdet"
        mm_glue.prepare()
        key_ref = mm_glue.register_encoder(encoder)
        launcher = mm_glue.launcher_from_env()
        if launcher != "none" and not device.startswith("cuda"):
            raise VitbenchError(
                f"launcher '{launcher}' needs --device cuda: mmengine's launchers bind one GPU per "
                "process (CPU runs are single-process)"
            )
        cfg = build_mmdet_config(
            encoder.spec,
            protocol,
            encoder_ref=key_ref,
            classes=train.classes,
            mean=encoder.data_config.mean,
            std=encoder.data_config.std,
            data_root=data_root,
            work_dir=work,
            seed=seed,
            launcher=launcher,
            device=device,
            resume_from=mm_glue.own_last_checkpoint(work),
        )
        result = mm_glue.train_and_test(cfg, task=self.task)

        metrics: dict[str, float] = {}
        undefined: list[str] = []
        _, _, backend = _cocoeval_backend("auto")
        if result.is_main_process:
            for t in IOU_TYPES:
                values = coco_metrics(val.ann_path, result.detections[t], t)
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
            "drop_path_blocks": result.drop_path_blocks,
            "train_scales": list(protocol.train_scales),
            "test_scale": list(protocol.test_scale),
            "normalisation": {"mean": list(encoder.data_config.mean), "std": list(encoder.data_config.std)},
            "finetune": "full",
        }
        extra = {
            "mm_config": to_jsonable(cfg),
            "config_path": str(result.config_path),
            "log_path": str(result.log_path) if result.log_path else None,
            "work_dir": str(work),
            "detections": {t: str(p) for t, p in result.detections.items()},
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
        dataset = DatasetInfo(
            name="coco",
            split=val.split,
            fingerprint=hashlib.sha256(f"{train.fingerprint}:{val.fingerprint}".encode()).hexdigest()[:16],
            n_samples=val.n_images,
            root=str(data_root),
            skipped=skipped,
        )
        return RunOutput(metrics=metrics, dataset=dataset, probe=probe, extra=extra)


class CocoMaskRcnn3xHarness(CocoDetHarness):
    task: ClassVar[str] = "coco-maskrcnn-3x"
    protocol_cls: ClassVar[type[CocoDetProtocol]] = CocoMaskRcnn3xProtocol
    description: ClassVar[str] = "Mask R-CNN + FPN 3x (GC ViT protocol, mmdet 3.3): box and mask AP on COCO val2017."


class CocoCascade3xHarness(CocoDetHarness):
    task: ClassVar[str] = "coco-cascade-3x"
    protocol_cls: ClassVar[type[CocoDetProtocol]] = CocoCascade3xProtocol
    description: ClassVar[str] = (
        "Cascade Mask R-CNN + FPN 3x (GC ViT protocol, mmdet 3.3): box and mask AP on COCO val2017."
    )
