"""Frozen-feature extraction with an on-disk cache, so a grid of heads costs one forward pass.

Features are extracted once under ``torch.inference_mode()`` and stored as fp16 ``.npy`` arrays, keyed by the
weights (sha256, or arch + seed for random weights), the dataset split fingerprint, the transform and what is
extracted. Extraction writes into a ``.partial`` folder and records its progress, so an interrupted run resumes
where it stopped; the folder is renamed into place only when complete.

Integrity: the folder name keys on the split fingerprint (paths, sizes, labels), and ``meta.json`` also stores a
fast hash of the file contents (:func:`content_digest`): taken during extraction by the workers from the bytes they
read (no extra pass), re-checked on every reuse by reading the files again, and on resume for the files already
done. A split whose images were replaced by others of the same size re-extracts, with a one-line note. A batch of
non-finite features is refused naming its images, and nothing is cached for it (:func:`require_finite` does the same
for what harnesses compute outside this cache). Cache space is reserved up front
(``posix_fallocate``), so a full disk is one line naming the folder and the space needed, never a SIGBUS from a
sparse memory map.

Under torchrun (``dist`` of several ranks) each rank extracts every ``world``-th image (rank ``r``: images ``r, r +
world, ...``; no padding, so no image is counted twice) into a shard folder of its own, resumable like a whole
extraction; rank 0 then interleaves the shards into the ordinary cache folder (in chunks of rows, so memory stays
flat) and every rank reads that. The cache must be on a file system every rank sees (one node always is; on
several nodes point ``VITBENCH_CACHE`` at shared storage).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from benchmarks.distributed import DistInfo, barrier
from benchmarks.precision import extraction_precision
from benchmarks.progress import progress_bar
from benchmarks.records import atomic_write_text
from methods.errors import DataError, VitbenchError

ExtractFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def default_cache_dir() -> Path:
    return Path(os.environ.get("VITBENCH_CACHE", Path.home() / ".cache" / "vitbench")) / "features"


def _file_digest(path: Path) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb", buffering=0) as fh:
        h.update(b"%d\0" % os.fstat(fh.fileno()).st_size)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.digest()


Sample = Path | tuple[Path, ...]  # the file an item is read from, or the files (a multi-file sample: BigEarthNet)


def _sample_digest(sample: Sample | str) -> bytes:
    """:func:`_file_digest` of a sample's file; of a multi-file sample, the blake2b of its files' digests in order."""
    if not isinstance(sample, tuple):
        return _file_digest(Path(sample))
    h = hashlib.blake2b(digest_size=16)
    for f in sample:
        h.update(_file_digest(Path(f)))
    return h.digest()


def content_digest(paths: Sequence[Sample], threads: int | None = None) -> str:
    """A fast hash of the bytes of ``paths`` in order: blake2b of each file (its length, then its bytes; a tuple of
    files: of their digests), hashed together. Files are hashed on ``threads`` threads (default: the DataLoader
    worker count; hashlib releases the GIL), so the check scales with the cores that decode the images during
    extraction."""
    return _combine(_sample_digests(paths, threads))


def _sample_digests(paths: Sequence[Sample], threads: int | None = None) -> list[bytes]:
    from concurrent.futures import ThreadPoolExecutor

    n = max(1, default_workers() if threads is None else threads)
    if n == 1 or len(paths) < 64:
        return [_sample_digest(p) for p in paths]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(_sample_digest, paths, chunksize=64))


def _combine(digests: Sequence[bytes]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for d in digests:
        h.update(d)
    return h.hexdigest()


def dataset_content(dataset: Dataset) -> str | None:
    """The content hash of a dataset that exposes one (``content_digest()``), else None (not verifiable)."""
    fn = getattr(dataset, "content_digest", None)
    return fn() if callable(fn) else None


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
    precision: str = "fp32"  # the autocast dtype of the forward pass (see amp_dtype); extract() fills it in

    def digest(self) -> str:
        fields = dict(self.__dict__)
        if fields["precision"] == "fp32":  # fp32 keys hash as they did before precision was part of the key
            del fields["precision"]
        blob = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


_AMP = {"fp16": torch.float16, "bf16": torch.bfloat16}


def amp_dtype(device: str) -> torch.dtype | None:
    """The autocast dtype of extraction on ``device`` (None: fp32, no autocast); see :mod:`benchmarks.precision`."""
    return _AMP.get(extraction_precision(device))


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
    dist: DistInfo | None = None,
) -> dict[str, np.ndarray]:
    """Run ``fn`` (images ``[B, C, H, W]`` -> named feature tensors ``[B, ...]``) over ``dataset`` and return the
    features as fp16 arrays plus ``labels`` (int64). With ``cache_dir`` None nothing is written to disk.

    ``dist`` of several ranks: this rank extracts its shard, rank 0 assembles the whole (module docstring); every
    rank returns all ``N`` rows."""
    dtype = amp_dtype(device)
    key = dataclasses.replace(key, precision=extraction_precision(device))
    if dist is not None and dist.world > 1:
        if cache_dir is None:
            raise ValueError("extraction over several processes needs a feature cache folder (the shards meet there)")
        kw = {"batch_size": batch_size, "num_workers": num_workers, "flush_every": flush_every}
        return _extract_sharded(fn, dataset, key, Path(cache_dir), device, dist, desc, progress, kw)
    n = len(dataset)  # type: ignore[arg-type]  # map-style datasets are Sized
    workers = default_workers() if num_workers is None else num_workers
    folder = None if cache_dir is None else Path(cache_dir) / key.digest()
    paths = None if folder is None else _hashable_paths(dataset)
    if folder is not None and (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("content") == (None if paths is None else content_digest(paths)):  # reuse: verified
            return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
        print(f"note: {folder}: cached features are of other image contents; extracting again", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)

    partial = None if folder is None else folder.with_name(folder.name + ".partial")
    start, arrays = 0, None  # type: tuple[int, dict[str, np.ndarray] | None]
    if partial is not None and (partial / "progress.json").exists():  # resume an interrupted extraction
        state = json.loads((partial / "progress.json").read_text())
        arrays = {name: np.load(partial / f"{name}.npy", mmap_mode="r+") for name in state["arrays"]}
        start = int(state["done"])
        if not _same_files(arrays.get(_DIGEST), paths, start):  # the images read so far changed: start over
            arrays, start = None, 0
            shutil.rmtree(partial, ignore_errors=True)

    source: Dataset = dataset if paths is None else _Digesting(dataset, paths)
    loader = DataLoader(
        Subset(source, range(start, n)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        persistent_workers=False,
    )
    done = start
    with torch.inference_mode(), progress_bar(total=n, desc=desc, enabled=progress, initial=start) as bar:
        for step, (images, labels, *digests) in enumerate(loader):
            images = images.to(device, non_blocking=True)
            with torch.autocast(device.partition(":")[0], dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                feats = fn(images)
            batch = {name: t.float().cpu().numpy().astype(np.float16) for name, t in feats.items()}
            b = len(labels)
            _check_finite(batch, dataset, done, b, partial)
            batch["labels"] = labels.numpy().astype(np.int64)
            if digests and partial is not None:  # the files' hashes, taken by the workers from the bytes they read
                batch[_DIGEST] = digests[0].numpy()
            if arrays is None:
                arrays = _allocate(partial, batch, n)
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
    content = None
    if _DIGEST in arrays:  # the same value content_digest(paths) gives on reuse, without reading the files again
        h = hashlib.blake2b(digest_size=16)
        h.update(np.ascontiguousarray(arrays[_DIGEST]).tobytes())
        content = h.hexdigest()
    names = [name for name in arrays if name != _DIGEST]
    meta = {"key": key.__dict__, "n": n, "arrays": names, "content": content}
    atomic_write_text(partial / "meta.json", json.dumps(meta))
    (partial / "progress.json").unlink()
    arrays.clear()  # close the memory maps before the rename
    (partial / f"{_DIGEST}.npy").unlink(missing_ok=True)
    if folder.exists():  # a concurrent run finished first: keep its copy
        shutil.rmtree(partial)
    else:
        os.replace(partial, folder)
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in names}


_DIGEST = "_content_digest"  # per-file blake2b rows kept beside the features while they are extracted


def _hashable_paths(dataset: Dataset) -> Sequence[Sample] | None:
    """The files behind ``dataset``'s items, in item order, if it declares itself verifiable (``content_digest()``):
    its ``split.paths``, or each sample's files where the split reads samples of several files (``split.source``),
    taken at the dataset's ``indices`` where it covers part of its split. None for a dataset that declares nothing."""
    split = getattr(dataset, "split", None)
    paths = getattr(split, "paths", None)
    if not callable(getattr(dataset, "content_digest", None)) or paths is None:
        return None
    source = getattr(split, "source", None)
    items: list[Sample] = list(paths) if source is None else [tuple(source.files(i)) for i in range(len(paths))]
    indices = getattr(dataset, "indices", None)
    if indices is not None:
        items = [items[int(i)] for i in indices]
    if len(items) != len(dataset):  # type: ignore[arg-type]  # map-style datasets are Sized
        raise ValueError(
            f"{type(dataset).__name__}: {len(items)} files for {len(dataset)} items: the feature cache cannot "  # type: ignore[arg-type]
            "verify which file each item was read from"
        )
    return items


class _Digesting(Dataset):
    """``dataset[i]`` plus the 16-byte blake2b of its file, hashed in the DataLoader worker that reads it: the check
    costs no extra pass over the data (the file was just read, so it comes from the page cache)."""

    def __init__(self, dataset: Dataset, paths: Sequence[Sample]) -> None:
        self.dataset, self.paths = dataset, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple:
        x, y = self.dataset[i]
        return x, y, torch.frombuffer(bytearray(_sample_digest(self.paths[i])), dtype=torch.uint8)


def _same_files(rows: np.ndarray | None, paths: Sequence[Sample] | None, done: int) -> bool:
    """Whether the first ``done`` files still hash to the ``rows`` a partial extraction recorded for them."""
    if paths is None:
        return rows is None
    if rows is None or done > len(paths):
        return False
    again = [_sample_digest(p) for p in paths[:done]]
    return b"".join(again) == np.ascontiguousarray(rows[:done]).tobytes()


class _Shard(Dataset):
    """Every ``world``-th item of ``parent`` from ``rank`` on; its content digest is the parent's.

    ``split`` (where the parent has one) is the split of the shard's own items, in shard order, so a non-finite batch
    names its files and the content check hashes exactly the files this rank reads. The parent positions are kept
    private (``_positions``): an ``indices`` attribute would tell :func:`_hashable_paths` to index that split again."""

    def __init__(self, parent: Dataset, rank: int, world: int) -> None:
        n = len(parent)  # type: ignore[arg-type]
        self.parent, self._positions = parent, range(rank, n, world)
        split = getattr(parent, "split", None)
        if split is not None and hasattr(split, "subset"):
            self.split = split.subset(list(self._positions))

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, i: int):  # noqa: ANN204  # the parent's item
        return self.parent[self._positions[i]]

    def content_digest(self) -> str | None:
        return dataset_content(self.parent)


def _cached(folder: Path, content: str | None) -> dict[str, np.ndarray] | None:
    if not (folder / "meta.json").exists():
        return None
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("content") != content:
        return None
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}


def _extract_sharded(
    fn: ExtractFn,
    dataset: Dataset,
    key: FeatureKey,
    cache_dir: Path,
    device: str,
    dist: DistInfo,
    desc: str,
    progress: bool,
    kw: dict,
) -> dict[str, np.ndarray]:
    from dataclasses import replace

    folder = cache_dir / key.digest()
    # The same content keys extract() writes and checks: the whole set's over all its files in order, each shard's
    # over its own files (items r, r + world, ...); every file is read once for both.
    paths = _hashable_paths(dataset)
    digests = None if paths is None else _sample_digests(paths)
    content = None if digests is None else _combine(digests)
    shard_content = [None if digests is None else _combine(digests[r :: dist.world]) for r in range(dist.world)]
    if (whole := _cached(folder, content)) is not None:
        return whole
    barrier(dist)  # every rank has looked before rank 0 may replace a stale folder
    n = len(dataset)  # type: ignore[arg-type]
    shard_keys = [replace(key, what=f"{key.what}|shard={r}/{dist.world}") for r in range(dist.world)]
    extract(
        fn,
        _Shard(dataset, dist.rank, dist.world),
        shard_keys[dist.rank],
        cache_dir=cache_dir,
        device=device,
        desc=f"{desc} (rank {dist.rank}/{dist.world})",
        progress=progress and dist.main,
        **kw,
    )
    barrier(dist)
    if dist.main:
        shards = []
        for r, k in enumerate(shard_keys):
            got = _cached(cache_dir / k.digest(), shard_content[r])
            if got is None:
                raise VitbenchError(_unshared(cache_dir / k.digest(), r))
            shards.append(got)
        _merge_shards(folder, shards, n, dist.world, key, content)
        for k in shard_keys:
            shutil.rmtree(cache_dir / k.digest(), ignore_errors=True)
    barrier(dist)
    whole = _cached(folder, content)
    if whole is None:
        raise VitbenchError(_unshared(folder, 0))
    return whole


def _unshared(folder: Path, rank: int) -> str:
    return (
        f"{folder}: the features rank {rank} wrote are not visible here; under torchrun/srun on several nodes the "
        "feature cache must be on a file system every rank sees (set VITBENCH_CACHE or --cache to shared storage)"
    )


def _merge_shards(
    folder: Path,
    shards: list[dict[str, np.ndarray]],
    n: int,
    world: int,
    key: FeatureKey,
    content: str | None,
    rows: int = 1 << 14,
) -> None:
    """Interleave ``shards`` (rank ``r`` holds images ``r, r + world, ...``) into ``folder``, ``rows`` at a time."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    arrays = _allocate(partial, {name: v[:1] for name, v in shards[0].items()}, n)
    for r, shard in enumerate(shards):
        for name, src in shard.items():
            for s in range(0, len(src), rows):
                block = np.asarray(src[s : s + rows])
                arrays[name][r + s * world : r + (s + len(block)) * world : world] = block
    for arr in arrays.values():
        if isinstance(arr, np.memmap):
            arr.flush()
    meta = {"key": key.__dict__, "n": n, "arrays": list(arrays), "content": content, "shards": world}
    atomic_write_text(partial / "meta.json", json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)  # stale (other contents): every rank saw it before this barrier
    os.replace(partial, folder)


def _first_file(dataset: Dataset, i: int) -> Path | None:
    paths = getattr(getattr(dataset, "split", None), "paths", None)
    return Path(paths[i]) if paths is not None and 0 <= i < len(paths) else None


def _check_finite(batch: dict[str, np.ndarray], dataset: Dataset, done: int, b: int, partial: Path | None) -> None:
    """Refuse a batch holding NaN/inf (or values beyond fp16), naming its images; nothing of it is cached."""
    bad = [name for name, v in batch.items() if not np.isfinite(v).all()]
    if not bad:
        return
    if partial is not None and not (partial / "progress.json").exists():  # nothing resumable was kept
        shutil.rmtree(partial, ignore_errors=True)
    first = _first_file(dataset, done)
    where = f" (first file {first})" if first is not None else ""
    raise DataError(
        f"non-finite features ({', '.join(bad)}: NaN/inf, or beyond the fp16 range) for images {done}-{done + b - 1}"
        f"{where}; check the weights and these images; nothing was cached for them"
    )


def require_finite(values: torch.Tensor, what: str) -> torch.Tensor:
    """``values`` if every one is finite, else a :class:`DataError` naming ``what`` (the batch, the step): for
    features, logits and losses computed outside :func:`extract` (which checks its own batches), where a NaN would
    otherwise become a chance-level number."""
    if not bool(torch.isfinite(values.detach()).all()):
        bad = int((~torch.isfinite(values.detach())).sum())
        raise DataError(
            f"non-finite values ({bad} NaN/inf of {values.numel()}) in {what}; check the weights, these images and "
            "the learning rate; no record was written"
        )
    return values


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _no_space(folder: Path, needed: int) -> VitbenchError:
    try:
        free = f"; {_human(shutil.disk_usage(folder if folder.exists() else folder.parent).free)} free"
    except OSError:
        free = ""
    return VitbenchError(
        f"{folder}: no space left on device for the feature cache (needs {_human(needed)}{free}); free space or "
        "point VITBENCH_CACHE elsewhere"
    )


def _reserve(path: Path) -> None:
    """Back every byte of ``path`` with disk blocks, so writes through a memory map cannot SIGBUS."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            os.lseek(fd, 0, os.SEEK_SET)  # no fallocate on this file system: write the zeros
            block = bytes(1 << 20)
            left = size
            while left > 0:
                left -= os.write(fd, block[: min(left, len(block))])
    finally:
        os.close(fd)


def _allocate(partial: Path | None, first: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    if partial is None:
        return {name: np.empty((n, *v.shape[1:]), dtype=v.dtype) for name, v in first.items()}
    needed = sum(n * v[:1].nbytes + 128 for v in first.values())
    try:
        partial.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for name, v in first.items():
            path = partial / f"{name}.npy"
            arr = np.lib.format.open_memmap(path, mode="w+", dtype=v.dtype, shape=(n, *v.shape[1:]))
            _reserve(path)
            arrays[name] = arr
        return arrays
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        shutil.rmtree(partial, ignore_errors=True)
        raise _no_space(partial.parent, needed) from None


def _checkpoint(partial: Path, arrays: dict[str, np.ndarray], done: int) -> None:
    for name, arr in arrays.items():
        if isinstance(arr, np.memmap):
            arr.flush()
            # Mapped again, so the pages written so far leave this process's resident set (they are on disk, and in
            # the page cache): extraction's memory does not grow with the number of images.
            arrays[name] = np.load(partial / f"{name}.npy", mmap_mode="r+")
    atomic_write_text(partial / "progress.json", json.dumps({"done": done, "arrays": list(arrays)}))
