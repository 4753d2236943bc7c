"""COCO-format data on disk: the strict split validator the dense harnesses run first, and ``vitbench data synth coco``.

Layout: ``ROOT/annotations/instances_<split>.json`` next to ``ROOT/<split>/<images>`` (``train2017``, ``val2017``).
:func:`validate_coco_split` reads an annotation file and fails with one line naming the file, image or category at
fault (missing json, image listed but absent, unknown category id, ...); what mmdet would silently drop
(degenerate boxes, malformed polygons, training images without usable annotations or under 32 px) is counted
instead, for the record's ``dataset.skipped``. :func:`synth_coco` writes a tiny, learnable set in the same layout.
Neither imports torch or the mm* stack.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from methods.errors import DataError

MIN_TRAIN_SIZE = 32  # the detector configs' filter_cfg min_size: smaller training images are dropped


def ann_file(split: str) -> str:
    """COCO's layout: ``annotations/instances_<split>.json`` next to the ``<split>/`` image folder."""
    return f"annotations/instances_{split}.json"


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
    ann_sha256: str = ""  # the full sha256 of the annotation file (the record's dataset identity)

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


def read_instances(root: Path, ann_name: str, img_dir: Path) -> dict[str, Any]:
    """The parsed COCO json ``root/<ann_name>`` (a dict with the three top-level lists), after checking that it and
    ``img_dir`` exist. Raises :class:`DataError` naming the file for a missing file or folder, invalid JSON or a
    missing top-level list."""
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    ann_path = root / ann_name
    layout = f"expected COCO's layout: {root}/{ann_name} and {img_dir}/<images>"
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
    return data


def read_categories(data: dict[str, Any], ann_path: Path) -> dict[int, str]:
    """``{category id: name}`` in the file's order; a malformed entry, a repeated id or name is a DataError."""
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
    return cats


def read_images(data: dict[str, Any], ann_path: Path, img_dir: Path, check_files: bool = True) -> dict[int, dict]:
    """``{image id: entry}``; a malformed entry, a repeated id or (``check_files``) an image listed but absent
    from ``img_dir`` is a DataError naming the file and the image."""
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
    return images


def validate_coco_split(root: Path | str, split: str, *, train: bool, check_files: bool = True) -> CocoSplit:
    """Read ``root/annotations/instances_<split>.json`` and check it against ``root/<split>/``.

    Raises :class:`DataError` naming the file and the image/annotation/category at fault for: a missing folder or
    json, invalid JSON or missing top-level lists, duplicate image/category ids or category names, an image
    listed but absent on disk, an annotation on an unknown image or with a ``category_id`` not in
    ``categories``, a malformed ``bbox``. Counts (not errors) what mmdet drops; see the module docstring.
    """
    root = Path(root)
    ann_path = root / ann_file(split)
    data = read_instances(root, ann_file(split), root / split)
    cats = read_categories(data, ann_path)
    images = read_images(data, ann_path, root / split, check_files)

    skipped: Counter[str] = Counter()
    usable: Counter[int] = Counter()  # image id -> annotations mmdet will train on
    for a in data["annotations"]:
        if not isinstance(a, dict) or "id" not in a:
            raise DataError(f"{ann_path}: annotation {str(a)[:80]} has no 'id'")
        aid = a["id"]
        im = images.get(cast(int, a.get("image_id")))  # any JSON value; a non-id finds nothing
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
        fingerprint=(sha := _sha256(ann_path))[:16],
        skipped={k: v for k, v in skipped.items() if v},
        ann_sha256=sha,
    )


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
    categories: list[dict[str, Any]] = [
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
            assert px is not None  # a new in-memory image always has pixel access
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
