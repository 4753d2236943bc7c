"""COCO bbox + segm evaluation: the harness's scoring through faster-coco-eval against pycocotools on the same
detection files (goal: >= 3x faster, every one of the 24 stats equal to 1e-4).

Run with ``pytest -m bench tests/benchmarks/bench_coco_eval.py --benchmark-only -s --benchmark-json OUT.json``.
Both sides are :func:`benchmarks.dense.coco.coco_stats`, the function the COCO harness scores with, called on the
files mmdet would dump (``coco.bbox.json``: boxes; ``coco.segm.json``: boxes and compressed-RLE masks), so each
timing covers what a run pays: reading both JSON files, COCO indexing, ``loadRes``, evaluate, accumulate and
summarize, for boxes then masks. The data is synthetic and COCO-shaped: 80 categories, COCO's image sizes, 1 to 8
instances per image (polygons, RLE, crowd regions; a tenth of the images without any), 100 detections per image as
mmdet's Mask R-CNN keeps. ``VITBENCH_BENCH_COCO`` = ``images,dets_per_image`` sets the size (default ``500,100``:
45,000 detections, pycocotools takes 7-9 s on a loaded 2-core VM). Rounds alternate: pycocotools right before each
timed faster round; the best of 5 rounds of each side is compared (a shared machine). Without faster-coco-eval (the
``dense`` extra; ``tox -e bench`` installs it) the test fails naming the package.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from benchmarks.dense.coco import IOU_TYPES, coco_stats
from tests.dense.cocoeval_data import synth_eval_set

pytestmark = pytest.mark.bench
COCO_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375))
GOAL_RATIO, TOL = 3.0, 1e-4


def _size() -> tuple[int, int]:
    raw = os.environ.get("VITBENCH_BENCH_COCO", "500,100")
    n, k = (int(v) for v in raw.split(","))
    return n, k


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    n, k = _size()
    root = tmp_path_factory.mktemp("coco_eval")
    gt_json, dets = synth_eval_set(root, n, k, n_categories=80, sizes=COCO_SIZES, polygon_fraction=0.0)
    files = {"bbox": root / "coco.bbox.json", "segm": root / "coco.segm.json"}
    files["bbox"].write_text(json.dumps([{k: v for k, v in d.items() if k != "segmentation"} for d in dets]))
    files["segm"].write_text(json.dumps(dets))
    return gt_json, files


def _evaluate(gt_json: Path, files: dict[str, Path], backend: str) -> list[float]:
    return [s for t in IOU_TYPES for s in coco_stats(gt_json, files[t], t, backend=backend)]


def test_faster_coco_eval_vs_pycocotools(benchmark, dumped) -> None:  # noqa: ANN001
    gt_json, files = dumped
    ref_times: list[float] = []
    results: dict[str, list[float]] = {}

    def pycocotools_round() -> None:  # pytest-benchmark's untimed setup: the baseline runs before each timed round
        t = time.perf_counter()
        results["pycocotools"] = _evaluate(gt_json, files, "pycocotools")
        ref_times.append(time.perf_counter() - t)

    def faster_round() -> None:
        results["faster_coco_eval"] = _evaluate(gt_json, files, "faster_coco_eval")

    benchmark.pedantic(faster_round, setup=pycocotools_round, rounds=5, iterations=1)
    ours_s, ref_s = benchmark.stats.stats.min, min(ref_times)
    ref, fast = results["pycocotools"], results["faster_coco_eval"]
    max_delta = max(abs(a - b) for a, b in zip(ref, fast))
    n, k = _size()
    dets = len(json.loads(files["segm"].read_text()))
    benchmark.extra_info.update(
        images=n,
        dets_per_image=k,
        detections=dets,
        categories=80,
        pycocotools_s=round(ref_s, 3),
        pycocotools_rounds_s=[round(t, 3) for t in ref_times],
        faster_coco_eval_s=round(ours_s, 3),
        ratio=round(ref_s / ours_s, 2),
        max_abs_delta_stat=max_delta,
        bbox_AP_pycocotools=ref[0],
        segm_AP_pycocotools=ref[12],
        goal_ratio=GOAL_RATIO,
        goal_met=ref_s / ours_s >= GOAL_RATIO and max_delta <= TOL,
        load_average=[round(v, 2) for v in os.getloadavg()],
    )
    print(
        f"\nCOCO bbox+segm evaluation, {n} images, {dets} detections, 80 categories: pycocotools {ref_s:.2f} s "
        f"(rounds {', '.join(f'{t:.2f}' for t in ref_times)}), faster-coco-eval {ours_s:.2f} s: "
        f"{ref_s / ours_s:.2f}x; max |delta| over the 24 stats {max_delta:.2e}; load {os.getloadavg()[0]:.1f}"
    )
    assert len(ref) == len(fast) == 24 and 0 < ref[0] < 1 and 0 < ref[12] < 1
    assert max_delta <= TOL
