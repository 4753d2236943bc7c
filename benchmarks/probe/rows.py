"""Feature recipes read a mini-batch at a time from the fp16 feature cache, so the grid's memory does not grow with N.

A probe's heads train on *recipes* (the CLS of the last 4 blocks concatenated, plus the avg-pooled patches, ...)
built from the cached per-block arrays. :class:`RecipeRows` builds them per batch: the batch's rows are gathered in
sorted order from the memory-mapped ``.npy`` files (one pass over the file's pages, forward), put back in the
batch's order, and handed to the recipe function as fp16 tensors — the values a recipe built once for all of train
would hold, so the heads train on the same numbers. Pages of the mapping read so far are dropped
(``madvise(MADV_DONTNEED)``) every :data:`RELEASE_BYTES`: they stay in the page cache, but not in this process's
resident set. :class:`TensorRows` is the same interface over tensors already in memory (tests, small tasks).

None of the recipes needs normalisation statistics (the features are normalised at extraction), so there is no
statistics pass.
"""

from __future__ import annotations

import mmap
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

RELEASE_BYTES = 32 << 20  # pages mapped from the cache are released after this many bytes are read
EVAL_ROWS = 4096  # rows per chunk when a head is scored over a whole split


class Rows(ABC):
    """``n`` rows of named feature recipes; :meth:`take` builds the recipes of some rows, :meth:`subset` renumbers."""

    def __init__(self, n: int, index: np.ndarray | None = None) -> None:
        self._n = n
        self._index = index  # positions in the underlying arrays of this view's rows (None: all, in order)

    def __len__(self) -> int:
        return self._n if self._index is None else len(self._index)

    @property
    @abstractmethod
    def recipes(self) -> tuple[str, ...]:
        """The recipe names, in the order the heads see them."""

    @property
    @abstractmethod
    def dims(self) -> dict[str, int]:
        """The width of each recipe."""

    def _positions(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        return idx if self._index is None else self._index[idx]

    @abstractmethod
    def _take(self, positions: np.ndarray) -> dict[str, torch.Tensor]:
        """The recipes of the rows at ``positions`` of the underlying arrays."""

    @abstractmethod
    def _with_index(self, index: np.ndarray) -> Rows:
        """The same source viewed through ``index``."""

    def take(self, idx: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """``{recipe: [len(idx), D]}`` of rows ``idx`` of this view, in that order."""
        if isinstance(idx, torch.Tensor):
            idx = idx.numpy()
        return self._take(self._positions(idx))

    def subset(self, idx: np.ndarray) -> Rows:
        """The rows ``idx`` of this view as a view of their own (nothing is copied)."""
        return self._with_index(self._positions(idx))

    def chunks(self, size: int = EVAL_ROWS):  # noqa: ANN201  # an iterator of (row slice, recipes)
        """``(start, {recipe: [b, D]})`` over all rows in order, ``size`` rows at a time."""
        for s in range(0, len(self), size):
            yield s, self.take(np.arange(s, min(s + size, len(self))))


class TensorRows(Rows):
    """Recipes already in memory: ``{recipe: [N, D]}``."""

    def __init__(self, feats: Mapping[str, torch.Tensor], index: np.ndarray | None = None) -> None:
        lengths = {len(x) for x in feats.values()}
        if len(lengths) != 1:
            raise ValueError(f"recipes of different lengths: { {r: len(x) for r, x in feats.items()} }")
        super().__init__(lengths.pop(), index)
        self.feats = dict(feats)

    @property
    def recipes(self) -> tuple[str, ...]:
        return tuple(self.feats)

    @property
    def dims(self) -> dict[str, int]:
        return {r: int(x.shape[1]) for r, x in self.feats.items()}

    def _take(self, positions: np.ndarray) -> dict[str, torch.Tensor]:
        t = torch.from_numpy(positions)
        return {r: x[t] for r, x in self.feats.items()}

    def _with_index(self, index: np.ndarray) -> Rows:
        return TensorRows(self.feats, index)


class _Mapped:
    """One cached ``.npy`` array read through a mapping this object owns (so its pages can be released)."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr, self._mm, self._read = arr, None, 0
        name = getattr(arr, "filename", None)  # np.load of a Path keeps the Path
        path = Path(os.fspath(name)) if isinstance(name, (str, os.PathLike)) else None
        offset = int(getattr(arr, "offset", 0))
        whole = (  # the array is the whole ``.npy`` file's data, not a view of part of it
            isinstance(arr, np.memmap)
            and path is not None
            and arr.flags.c_contiguous
            and offset + arr.nbytes == path.stat().st_size
        )
        if whole and path is not None:
            with path.open("rb") as fh:
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            self.arr = np.ndarray(arr.shape, arr.dtype, buffer=self._mm, offset=offset)

    def rows(self, sorted_positions: np.ndarray) -> np.ndarray:
        out = np.asarray(self.arr[sorted_positions])
        if self._mm is not None:
            self._read += out.nbytes
            if self._read >= RELEASE_BYTES:
                self.release()
        return out

    def release(self) -> None:
        """Drop this process's mapped pages (the file's pages stay in the page cache; a later read maps them back)."""
        if self._mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED)
        self._read = 0


class RecipeRows(Rows):
    """Recipes built per batch from cached arrays: ``build({key: [b, ...] fp16})`` -> ``{recipe: [b, D]}``.

    ``arrays`` are the cache's arrays (memory-mapped ``.npy`` files, or any arrays), of which ``keys`` are read."""

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        keys: list[str],
        build: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
        index: np.ndarray | None = None,
        *,
        _mapped: dict[str, _Mapped] | None = None,
    ) -> None:
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise KeyError(f"feature arrays {missing} are not in the cache entry (it has {sorted(arrays)})")
        lengths = {len(arrays[k]) for k in keys}
        if len(lengths) != 1:
            raise ValueError(f"cached arrays of different lengths: { {k: len(arrays[k]) for k in keys} }")
        super().__init__(lengths.pop(), index)
        self.arrays, self.keys, self.build = arrays, list(keys), build
        self._mapped = _mapped if _mapped is not None else {k: _Mapped(arrays[k]) for k in keys}
        self._dims: dict[str, int] | None = None

    @property
    def recipes(self) -> tuple[str, ...]:
        return tuple(self.dims)

    @property
    def dims(self) -> dict[str, int]:
        if self._dims is None:
            one = self.build({k: torch.from_numpy(np.array(self.arrays[k][:1])) for k in self.keys})
            self._dims = {r: int(x.shape[1]) for r, x in one.items()}
        return self._dims

    def _take(self, positions: np.ndarray) -> dict[str, torch.Tensor]:
        order = np.argsort(positions, kind="stable")
        back = torch.from_numpy(np.argsort(order, kind="stable"))  # sorted -> the batch's order
        srt = positions[order]
        raw = {k: torch.from_numpy(self._mapped[k].rows(srt))[back] for k in self.keys}
        return self.build(raw)

    def _with_index(self, index: np.ndarray) -> Rows:
        return RecipeRows(self.arrays, self.keys, self.build, index, _mapped=self._mapped)

    def release(self) -> None:
        for m in self._mapped.values():
            m.release()


def as_rows(feats: Rows | Mapping[str, torch.Tensor]) -> Rows:
    return feats if isinstance(feats, Rows) else TensorRows(feats)


@torch.no_grad()
def head_logits(head: torch.nn.Linear, rows: Rows, recipe: str, device: str | None = None) -> torch.Tensor:
    """``head``'s logits ``[N, C]`` (float32, CPU) over every row of ``rows``' ``recipe``, a chunk at a time."""
    device = device or str(head.weight.device)
    parts = [head(x[recipe].to(device, torch.float32)).cpu() for _, x in rows.chunks()]
    return torch.cat(parts) if parts else torch.zeros(0, head.out_features)
