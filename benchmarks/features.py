"""Frozen-feature extraction with an on-disk cache, so a grid of heads costs one forward pass.

Features are extracted once under ``torch.inference_mode()`` and stored as fp16 ``.npy`` arrays, keyed by the
weights (sha256, or arch + seed for random weights), the dataset split fingerprint, the transform and what is
extracted. Extraction writes into a ``.partial`` folder and records its progress, so an interrupted run resumes
where it stopped; the folder is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from benchmarks.progress import progress_bar
from benchmarks.records import atomic_write_text

ExtractFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def default_cache_dir() -> Path:
    return Path(os.environ.get("VITBENCH_CACHE", Path.home() / ".cache" / "vitbench")) / "features"


def default_workers() -> int:
    return int(os.environ.get("VITBENCH_WORKERS", min(8, os.cpu_count() or 1)))


@dataclass(frozen=True)
class FeatureKey:
    """Everything that determines the features; its hash names the cache folder."""

    weights_id: str
    dataset_fingerprint: str
    split: str
    transform: str
    what: str  # e.g. "global" or "probe:blocks=8,9,10,11"

    def digest(self) -> str:
        blob = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def extract(
    fn: ExtractFn,
    dataset: Dataset,
    key: FeatureKey,
    *,
    cache_dir: Path | None,
    device: str,
    batch_size: int = 64,
    num_workers: int | None = None,
    desc: str = "extract",
    progress: bool = True,
    flush_every: int = 20,
) -> dict[str, np.ndarray]:
    """Run ``fn`` (images ``[B, C, H, W]`` -> named feature tensors ``[B, ...]``) over ``dataset`` and return the
    features as fp16 arrays plus ``labels`` (int64). With ``cache_dir`` None nothing is written to disk."""
    n = len(dataset)  # type: ignore[arg-type]  # map-style datasets are Sized
    workers = default_workers() if num_workers is None else num_workers
    folder = None if cache_dir is None else Path(cache_dir) / key.digest()
    if folder is not None and (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}

    partial = None if folder is None else folder.with_name(folder.name + ".partial")
    start, arrays = 0, None  # type: tuple[int, dict[str, np.ndarray] | None]
    if partial is not None and (partial / "progress.json").exists():  # resume an interrupted extraction
        state = json.loads((partial / "progress.json").read_text())
        start = int(state["done"])
        arrays = {name: np.load(partial / f"{name}.npy", mmap_mode="r+") for name in state["arrays"]}

    loader = DataLoader(
        Subset(dataset, range(start, n)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        persistent_workers=False,
    )
    done = start
    use_amp = device.startswith("cuda")
    with torch.inference_mode(), progress_bar(total=n, desc=desc, enabled=progress, initial=start) as bar:
        for step, (images, labels) in enumerate(loader):
            images = images.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                feats = fn(images)
            batch = {name: t.float().cpu().numpy().astype(np.float16) for name, t in feats.items()}
            batch["labels"] = labels.numpy().astype(np.int64)
            if arrays is None:
                arrays = _allocate(partial, batch, n)
            b = len(labels)
            for name, value in batch.items():
                arrays[name][done : done + b] = value
            done += b
            bar.update(b)
            if partial is not None and (step + 1) % flush_every == 0:
                _checkpoint(partial, arrays, done)
    if arrays is None:  # empty dataset
        raise ValueError("cannot extract features of an empty dataset")
    if folder is None or partial is None:
        return arrays
    _checkpoint(partial, arrays, done)
    atomic_write_text(partial / "meta.json", json.dumps({"key": key.__dict__, "n": n, "arrays": list(arrays)}))
    (partial / "progress.json").unlink()
    if folder.exists():  # a concurrent run finished first: keep its copy
        shutil.rmtree(partial)
    else:
        os.replace(partial, folder)
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in arrays}


def _allocate(partial: Path | None, first: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    if partial is None:
        return {name: np.empty((n, *v.shape[1:]), dtype=v.dtype) for name, v in first.items()}
    partial.mkdir(parents=True, exist_ok=True)
    return {
        name: np.lib.format.open_memmap(partial / f"{name}.npy", mode="w+", dtype=v.dtype, shape=(n, *v.shape[1:]))
        for name, v in first.items()
    }


def _checkpoint(partial: Path, arrays: dict[str, np.ndarray], done: int) -> None:
    for arr in arrays.values():
        if isinstance(arr, np.memmap):
            arr.flush()
    atomic_write_text(partial / "progress.json", json.dumps({"done": done, "arrays": list(arrays)}))
