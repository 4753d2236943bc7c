"""The task registry: a static task id -> "module:Class" map; a harness module is imported only when used."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from methods._names import did_you_mean
from methods.errors import UnknownNameError

if TYPE_CHECKING:
    from benchmarks.harness import Harness

TASKS: dict[str, str] = {
    "knn": "benchmarks.classification.knn:KnnHarness",
    "linear": "benchmarks.classification.linear:LinearHarness",
    "linear-perlayer": "benchmarks.classification.linear:PerLayerLinearHarness",
    "coco-maskrcnn-fpn-1x": "benchmarks.dense.coco:CocoDetHarness",
    "coco-maskrcnn-3x": "benchmarks.dense.coco:CocoMaskRcnn3xHarness",
    "coco-cascade-3x": "benchmarks.dense.coco:CocoCascade3xHarness",
}


def list_tasks() -> list[str]:
    return sorted(TASKS)


@cache
def get_harness(task: str) -> Harness:
    if task not in TASKS:
        raise UnknownNameError(f"unknown task '{task}'{did_you_mean(task, list(TASKS))}")
    module, _, attr = TASKS[task].partition(":")
    harness = getattr(importlib.import_module(module), attr)()
    if harness.task != task:
        raise ValueError(f"{TASKS[task]} declares task '{harness.task}' but is registered as '{task}'")
    return harness
