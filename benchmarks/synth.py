"""``vitbench data synth KIND``: tiny datasets in the real on-disk format, for smoke runs and tests."""

from __future__ import annotations

import importlib
from pathlib import Path

from methods._names import did_you_mean
from methods.errors import UnknownNameError

# kind -> "module:function(out: Path, seed: int) -> Path"
SYNTH: dict[str, str] = {
    "imagefolder": "benchmarks.data.imagefolder:synth_imagefolder",
    "coco": "benchmarks.dense.coco:synth_coco",
}


def synth(kind: str, out: Path | str, seed: int = 0) -> Path:
    """Write a synthetic dataset of ``kind`` under ``out`` and return its root."""
    if kind not in SYNTH:
        raise UnknownNameError(f"unknown synthetic dataset kind '{kind}'{did_you_mean(kind, list(SYNTH))}")
    module, _, attr = SYNTH[kind].partition(":")
    return getattr(importlib.import_module(module), attr)(Path(out), seed)
