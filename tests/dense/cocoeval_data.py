"""Synthetic COCO ground truth and detections for comparing COCOeval backends (the tests and the benchmark).

The ground truth has several categories, instances given as polygons and as uncompressed RLE, crowd regions
(``iscrowd: 1``, RLE, as COCO stores them), images without any annotation and images without any detection. The
detections are noisy copies of ground-truth instances (some with the wrong category, some shifted far enough to
miss) plus random boxes, each with a box and a mask, the mask as compressed RLE (what mmdet dumps) or a polygon.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np


def _polygon(rng: random.Random, x: float, y: float, w: float, h: float) -> list[float]:
    """A convex-ish polygon inside the box: 4 to 8 points on an ellipse, jittered."""
    n = rng.randint(4, 8)
    pts: list[float] = []
    for k in range(n):
        a = 2 * np.pi * (k + rng.uniform(-0.3, 0.3)) / n
        r = rng.uniform(0.7, 1.0)
        pts += [x + w / 2 * (1 + r * np.cos(a)), y + h / 2 * (1 + r * np.sin(a))]
    return [round(float(v), 2) for v in pts]


def _blob(rng: random.Random, height: int, width: int, x: float, y: float, w: float, h: float) -> np.ndarray:
    """A binary mask (uint8, Fortran order for pycocotools) of an irregular blob inside the box."""
    m = np.zeros((height, width), dtype=np.uint8, order="F")
    x0, y0, x1, y1 = int(x), int(y), max(int(x + w), int(x) + 1), max(int(y + h), int(y) + 1)
    m[y0:y1, x0:x1] = 1
    for _ in range(3):  # bite out a few rectangles so it is not a box
        bx, by = rng.randint(x0, x1 - 1), rng.randint(y0, y1 - 1)
        m[by : by + max(1, (y1 - y0) // 3), bx : bx + max(1, (x1 - x0) // 3)] = 0
    return m


def _uncompressed_rle(m: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of ``m``: run lengths (column-major), starting with a run of zeros."""
    flat = m.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(m.shape), "counts": runs}


def synth_eval_set(
    out: Path,
    n_images: int = 40,
    dets_per_image: int = 20,
    n_categories: int = 5,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = ((320, 240), (256, 256), (400, 300), (240, 320)),
    polygon_fraction: float = 0.25,
) -> tuple[Path, list[dict[str, Any]]]:
    """Write ``out/gt.json`` and return (its path, the detection list); see the module docstring. ``sizes``: the
    (width, height) choices of the images; ``polygon_fraction``: the share of detection masks given as polygons
    (the rest compressed RLE)."""
    from pycocotools import mask as mask_utils

    rng = random.Random(seed)
    cats = [{"id": 3 * k + 1, "name": f"cat{k}"} for k in range(n_categories)]  # sparse ids, as COCO's
    images, anns, dets = [], [], []
    aid = 1
    for i in range(n_images):
        w, h = rng.choice(sizes)
        img_id = 100 + i
        images.append({"id": img_id, "file_name": f"{img_id:06d}.jpg", "width": w, "height": h})
        kind = i % 10
        n_gt = 0 if kind == 0 else rng.randint(1, 8)  # every tenth image has no ground truth
        gts = []
        for _ in range(n_gt):
            scale = rng.choice([0.06, 0.2, 0.5])  # small, medium and large areas
            bw, bh = max(3.0, rng.uniform(0.5, 1.0) * scale * w), max(3.0, rng.uniform(0.5, 1.0) * scale * h)
            x, y = rng.uniform(0, w - bw - 1), rng.uniform(0, h - bh - 1)
            crowd = rng.random() < 0.1
            cat = rng.choice(cats)["id"]
            seg: Any
            if crowd or rng.random() < 0.3:
                seg = _uncompressed_rle(_blob(rng, h, w, x, y, bw, bh))
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                seg = [_polygon(rng, x, y, bw, bh)]
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            area = float(mask_utils.area(rle))
            box = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
            ann = {"id": aid, "image_id": img_id, "category_id": cat, "segmentation": seg, "area": area}
            anns.append(ann | {"bbox": box, "iscrowd": int(crowd)})
            gts.append((cat, box))
            aid += 1
        if kind == 1:  # every tenth image has ground truth but no detection
            continue
        for _ in range(dets_per_image):
            if gts and rng.random() < 0.6:
                cat, (x, y, bw, bh) = rng.choice(gts)
                if rng.random() < 0.1:
                    cat = rng.choice(cats)["id"]
                j = rng.choice([0.03, 0.1, 0.3])
                x, y = x + rng.gauss(0, j) * bw, y + rng.gauss(0, j) * bh
                bw, bh = bw * (1 + rng.gauss(0, j)), bh * (1 + rng.gauss(0, j))
            else:
                cat = rng.choice(cats)["id"]
                bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
                x, y = rng.uniform(0, w - 5), rng.uniform(0, h - 5)
            x, y = min(max(x, 0.0), w - 3.0), min(max(y, 0.0), h - 3.0)
            bw, bh = max(2.0, min(bw, w - x - 1)), max(2.0, min(bh, h - y - 1))
            det: dict[str, Any] = {
                "image_id": img_id,
                "category_id": cat,
                "bbox": [round(v, 2) for v in (x, y, bw, bh)],
                "score": round(rng.random(), 5),
            }
            if rng.random() >= polygon_fraction:  # compressed RLE, as mmdet dumps it
                rle = mask_utils.encode(_blob(rng, h, w, x, y, bw, bh))
                det["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            else:
                det["segmentation"] = [_polygon(rng, x, y, bw, bh)]
            dets.append(det)
    out.mkdir(parents=True, exist_ok=True)
    gt_json = out / "gt.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return gt_json, dets
