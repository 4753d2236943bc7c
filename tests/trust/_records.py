"""Records for the trust tests, generated here (no fixtures): a paper-track ``knn`` record that the real catalogue
accepts (ImageNet-1k identity), and its smoke twin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.catalog import get_task
from benchmarks.records import record_relpath
from tests.leaderboard.factory import make_record

IMAGENET = {"train": 1_281_167, "val": 50_000}


def knn_record(track: str = "paper", seed: int = 0, method: str = "dino", **dataset: Any) -> dict[str, Any]:
    proto = get_task("knn").protocol_for(smoke=track == "smoke")
    rec = make_record(
        "knn", method, "vits16", seed, {"top1": 74.5, "top5": 91.0}, track=track, protocol=proto.info().model_dump()
    )
    rec["dataset"].update(splits=dict(IMAGENET), n_classes=1000)
    rec["dataset"].update(dataset)
    return rec


def write(results: Path, rec: dict[str, Any], raw: str | None = None) -> Path:
    path = results / record_relpath(rec["task"], rec["method"], rec["variant"], rec["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw if raw is not None else json.dumps(rec), encoding="utf-8")
    return path
