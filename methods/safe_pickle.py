"""A pickle module for ``torch.load`` that admits an explicit allow-list of globals and nothing else.

Why not ``torch.load(weights_only=True)`` with ``torch.serialization.safe_globals``? Official full checkpoints
pickle configuration objects next to the weights: an ``argparse.Namespace`` (DINO, SelfPatch, DINO-MM) or a yacs
``CfgNode`` (MFM). torch's weights-only unpickler refuses a pickled dict *subclass* with items ("Can only SETITEM
for dict"), even when the class is allow-listed, so MFM checkpoints cannot load that way, and yacs would have to
be installed. This module is passed to ``torch.load`` as ``pickle_module``: its ``Unpickler.find_class`` returns
objects from :data:`ALLOWED_GLOBALS` only, maps configuration classes to inert stand-ins (so yacs need not be
installed), and raises :class:`UnsafeCheckpointError` for anything else (``os.system``, ``builtins.eval``, ...).

Allocation bombs: an allow-listed constructor can still be told to allocate what the file does not hold (a 35-byte
pickle calling ``bytearray(20_000_000_000)``, ``torch.FloatStorage(5_000_000_000)``, a tensor view reaching past
its storage, a legacy storage header claiming 5e9 elements, a ``BYTEARRAY8`` or ``FRAME`` length of 2**40). The
unpickler is pickle's pure-Python one (a checkpoint's pickle is small: its tensors live outside it), so every
opcode that calls something (``REDUCE``, ``NEWOBJ``, ``NEWOBJ_EX``, ``INST``/``OBJ``, ``BUILD``) and every storage
reference (``persistent_load``) is checked *before* it runs: what it would allocate, summed over the whole load, may
not exceed what the file can hold (its size, :func:`file_budget`), and a view may not reach past its storage. Reads
are clamped to the bytes left in the stream, so no length field makes it allocate either.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import contextlib
import contextvars
import io
import math
import os
import pickle
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from methods.errors import UnsafeCheckpointError


class ConfigNode(dict):
    """Stand-in for yacs ``CfgNode`` and similar dict-based configs: a plain dict that also allows attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state: dict) -> None:  # CfgNode pickles its private flags as instance state
        self.__dict__.update(state)


def _torch_globals() -> dict[str, Any]:
    from torch import _utils

    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch.Tensor": torch.Tensor,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
        "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
    }
    for name in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
        "_rebuild_sparse_tensor",
        "_rebuild_device_tensor_from_numpy",
        "_rebuild_meta_tensor_no_storage",
        "_rebuild_wrapper_subclass",
    ):
        if hasattr(_utils, name):
            allowed[f"torch._utils.{name}"] = getattr(_utils, name)
    for name in dir(torch):  # dtypes (torch.float16, ...) and legacy typed storages (torch.FloatStorage, ...)
        obj = getattr(torch, name, None)
        if isinstance(obj, torch.dtype) or (name.endswith("Storage") and isinstance(obj, type)):
            allowed[f"torch.{name}"] = obj
    allowed["torch.storage.UntypedStorage"] = torch.UntypedStorage
    allowed["torch.storage.TypedStorage"] = torch.TypedStorage
    return allowed


def _numpy_globals() -> dict[str, Any]:
    import numpy as np

    allowed: dict[str, Any] = {"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray}
    import importlib

    try:  # numpy >= 2 pickles under numpy._core, older files name numpy.core: both map to the same objects
        multiarray: Any = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module("numpy.core.multiarray")
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{mod}.scalar"] = multiarray.scalar
        allowed[f"{mod}._reconstruct"] = multiarray._reconstruct
    for name in ("float64", "float32", "float16", "int64", "int32", "bool_"):  # dtype classes in numpy 2 pickles
        allowed[f"numpy.dtypes.{type(np.dtype(name)).__name__}"] = type(np.dtype(name))
    return allowed


def _build_allow_list() -> dict[str, Any]:
    import copyreg
    import pathlib

    allowed = {
        # Plain containers and values.
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.slice": slice,
        "builtins.complex": complex,
        "builtins.object": object,
        "builtins.bytearray": bytearray,
        # Protocol-2 pickles store bytes (numpy array data) as _codecs.encode(text, "latin1"); pure data.
        "_codecs.encode": codecs.encode,
        # Protocol 0/1 pickles of plain objects; it can only instantiate classes this list admits.
        "copyreg._reconstructor": copyreg._reconstructor,  # type: ignore[attr-defined]  # private, absent from stubs
        # Configuration objects that official training scripts save next to the weights.
        "argparse.Namespace": argparse.Namespace,  # DINO, SelfPatch, DINO-MM, iBOT `args`
        "pathlib.PosixPath": pathlib.PosixPath,
        "pathlib.WindowsPath": pathlib.PurePosixPath,  # never instantiate a WindowsPath on Linux
        "pathlib.PurePosixPath": pathlib.PurePosixPath,
        "yacs.config.CfgNode": ConfigNode,  # MFM `config`: loads without yacs installed
    }
    allowed.update(_torch_globals())
    allowed.update(_numpy_globals())
    return allowed


ALLOWED_GLOBALS: dict[str, Any] = _build_allow_list()
# The allow-listed callables whose arguments say how much they allocate (see _new_bytes / _check_view).
_RECONSTRUCT = ALLOWED_GLOBALS["numpy.core.multiarray._reconstruct"]
_SCALAR = ALLOWED_GLOBALS["numpy.core.multiarray.scalar"]
_REBUILD_FROM_TYPE = ALLOWED_GLOBALS["torch._tensor._rebuild_from_type_v2"]
_COPYREG_RECONSTRUCTOR = ALLOWED_GLOBALS["copyreg._reconstructor"]
_REBUILD_TENSOR_V3 = ALLOWED_GLOBALS.get("torch._utils._rebuild_tensor_v3")
_REBUILD_TENSOR = tuple(
    ALLOWED_GLOBALS[f"torch._utils.{n}"]
    for n in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3")
    if f"torch._utils.{n}" in ALLOWED_GLOBALS
)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class _Budget:
    """What one checkpoint file may make the loader allocate: at most ``limit`` bytes (the file's size) in all.

    ``storages``: whether storage references (``persistent_load`` claims) are bounded too. They are whenever the
    budget knows the whole file; a bare ``Unpickler`` over a zip's ``data.pkl`` sees only that record, and there
    torch itself checks each storage claim against its record's size."""

    def __init__(self, limit: int, storages: bool = True) -> None:
        self.limit, self.used, self.storages = limit, 0, storages
        self.keys: set[Any] = set()

    def claim(self, nbytes: int, what: str) -> None:
        if nbytes <= 0:
            return
        if self.used + nbytes > self.limit:
            before = f" on top of {_human(self.used)}" if self.used else ""
            raise UnsafeCheckpointError(
                f"refusing {what}: it would allocate {_human(nbytes)}{before}, more than the {_human(self.limit)} "
                "the file holds (an allocation bomb?)"
            )
        self.used += nbytes


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("vitbench_pickle_budget", default=None)


@contextlib.contextmanager
def file_budget(path: Path | str) -> Iterator[None]:
    """Bound every unpickler created inside the block by the size of ``path``, summed over all of them (torch's
    legacy format unpickles a file in several pieces, its zip format unpickles ``data.pkl`` apart from the
    storages)."""
    token = _BUDGET.set(_Budget(os.stat(path).st_size))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _stream_size(file: Any) -> tuple[int, bool]:
    """(bytes left in ``file``, whether it is a file on disk)."""
    try:
        pos = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(pos)
    except (AttributeError, OSError, ValueError):
        return 1 << 62, False  # not seekable: reads are not clamped, calls are still checked against the budget
    try:
        file.fileno()
        on_disk = True
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        on_disk = False
    return end - pos, on_disk


def _ints(value: Any) -> list[int] | None:
    """``value`` as a shape (an int or a sequence of ints), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, tuple | list | torch.Size) and all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    return None


def _shape_bytes(shape: Any, itemsize: int) -> int:
    dims = _ints(shape)
    if dims is None or any(d < 0 for d in dims):
        return 0  # not a shape: the constructor itself refuses it
    return math.prod(dims) * itemsize


def _storage_itemsize(storage_type: Any) -> int:
    """Bytes per element of a storage class (``torch.FloatStorage``, torch's ``StorageType``, ``UntypedStorage``)."""
    if storage_type is torch.UntypedStorage:
        return 1
    with warnings.catch_warnings():  # asking a legacy storage class for its dtype warns about TypedStorage
        warnings.simplefilter("ignore")
        dtype = getattr(storage_type, "dtype", None)
    return torch._utils._element_size(dtype) if isinstance(dtype, torch.dtype) else 16


def _view_bytes(storage: Any, offset: Any, size: Any, stride: Any, itemsize: int) -> tuple[int, int] | None:
    """(bytes a ``size``/``stride`` view at ``offset`` reaches, bytes ``storage`` holds), or None if unknowable."""
    dims, steps = _ints(size), _ints(stride)
    if dims is None or steps is None or not isinstance(offset, int) or not hasattr(storage, "nbytes"):
        return None
    if storage.device.type == "meta":
        return None
    need = 0 if 0 in dims else (offset + sum((d - 1) * s for d, s in zip(dims, steps)) + 1) * itemsize
    return need, int(storage.nbytes())


def _call_name(func: Any, args: tuple) -> str:
    """``bytearray(20000000000)``: the call as an error message names it (ints shown, other arguments by type;
    a storage's repr would print every element)."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__name__
    shown = [
        repr(a) if isinstance(a, int | float | str | bytes) and len(repr(a)) < 40 else type(a).__name__
        for a in args[:3]
    ]
    return f"{name}({', '.join(shown)}{', …' if len(args) > 3 else ''})"


def _new_bytes(func: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[int, str]:
    """What calling allow-listed ``func(*args, **kwargs)`` would allocate beyond its arguments, and how to name it.

    Only the constructors that take a size allocate from nothing: ``bytearray(n)``, storages, ``torch.Tensor(*sizes)``,
    ``numpy.ndarray(shape)``, numpy's ``_reconstruct`` and ``scalar``; wrappers that call one (``copyreg``'s
    reconstructor, torch's ``_rebuild_from_type_v2``) are looked through."""
    import numpy as np

    what = _call_name(func, args)
    first = args[0] if args else kwargs.get("size", kwargs.get("shape"))
    if isinstance(func, type):
        if issubclass(func, bytearray):
            return (first if isinstance(first, int) and not isinstance(first, bool) else 0), what
        if issubclass(func, torch.UntypedStorage | torch.storage.TypedStorage):
            if isinstance(first, int) and not isinstance(first, bool):
                dtype = kwargs.get("dtype")
                itemsize = torch._utils._element_size(dtype) if isinstance(dtype, torch.dtype) else 0
                return first * (itemsize or _storage_itemsize(func)), what
            return 0, what
        if issubclass(func, torch.Tensor):  # torch.Tensor(*sizes) / Tensor(torch.Size): uninitialised memory
            if len(args) == 1 and isinstance(args[0], torch.Size):
                return _shape_bytes(list(args[0]), torch.get_default_dtype().itemsize), what
            if args and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                return _shape_bytes(list(args), torch.get_default_dtype().itemsize), what
            return 0, what  # Tensor(data) / Parameter(tensor): the data is in the pickle already
        if issubclass(func, np.ndarray):
            buffer = args[2] if len(args) > 2 else kwargs.get("buffer")
            dtype = args[1] if len(args) > 1 else kwargs.get("dtype", float)
            if buffer is not None:
                return 0, what  # a view of data the pickle holds
            try:
                itemsize = np.dtype(dtype).itemsize
            except TypeError:
                return 0, what
            return _shape_bytes(first, itemsize), what
        return 0, what
    if func is _RECONSTRUCT and len(args) >= 3:
        try:
            return _shape_bytes(args[1], np.dtype(args[2]).itemsize), what
        except TypeError:
            return 0, what
    if func is _SCALAR and args and isinstance(args[0], np.dtype):
        return args[0].itemsize, what
    if func is _REBUILD_FROM_TYPE and len(args) >= 3 and isinstance(args[2], tuple):
        return _new_bytes(args[0], args[2], {})
    if func is _COPYREG_RECONSTRUCTOR and len(args) == 3 and args[2] is not None:
        return _new_bytes(args[1], (args[2],), {})
    return 0, what


def _check_view(func: Any, args: tuple) -> None:
    """Refuse a tensor rebuilt over a storage it reaches past: ``set_`` would grow the storage to fit (20 GB for a
    4-byte storage and a size of 5e9)."""
    if func in _REBUILD_TENSOR and len(args) >= 4:
        storage = args[0]
        if func is _REBUILD_TENSOR_V3 and len(args) >= 7 and isinstance(args[6], torch.dtype):
            itemsize = torch._utils._element_size(args[6])
        elif isinstance(storage, torch.storage.TypedStorage):  # its public methods warn that TypedStorage is going
            itemsize, storage = torch._utils._element_size(storage.dtype), storage._untyped_storage
        else:
            itemsize = 1
        sizes = _view_bytes(storage, args[1], args[2], args[3], itemsize)
        if sizes is not None and sizes[0] > sizes[1]:
            raise UnsafeCheckpointError(
                f"refusing a tensor of size {list(args[2])[:6]} at offset {args[1]}: it reaches {_human(sizes[0])} "
                f"into a storage of {_human(sizes[1])} (a crafted checkpoint?)"
            )
    elif func is _REBUILD_FROM_TYPE and len(args) >= 3 and isinstance(args[2], tuple):
        _check_view(args[0], args[2])


# pickle's pure-Python unpickler, on purpose: its opcodes can be checked one by one (typeshed calls it the C one).
_PyUnpickler: Any = pickle._Unpickler  # type: ignore[attr-defined]


class Unpickler(_PyUnpickler):
    """A pure-Python ``pickle.Unpickler``: ``find_class`` admits :data:`ALLOWED_GLOBALS` only, and what any call in
    the pickle would allocate is checked against the file's size before the call (see the module docstring)."""

    dispatch = dict(_PyUnpickler.dispatch)

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        left, whole_file = _stream_size(file)
        self._budget = _BUDGET.get() or _Budget(left, storages=whole_file)
        read, tell = file.read, getattr(file, "tell", None)
        end = None if tell is None or left >= 1 << 62 else tell() + left

        def bounded_read(n: int = -1) -> bytes:  # a length field of 2**40 must not become a 1 TiB read buffer
            if end is not None and tell is not None and n is not None and n > 1 << 16:
                n = min(n, max(0, end - tell()))
            return read(n)

        self._file_read = bounded_read
        self._persistent_load: Callable[[Any], Any] = super().persistent_load

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles (torch.save's default) name Python 2 modules (__builtin__.set, copy_reg): map them
        # as pickle's own fix_imports does. Those module names do not exist in Python 3, so nothing is shadowed.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = f"{module}.{name}"
        try:
            return ALLOWED_GLOBALS[key]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to unpickle global '{key}': not in vitbench's allow-list of checkpoint globals "
                "(the file may try to run code on load; convert it to .safetensors if you trust it)"
            ) from None

    # -- storage references: torch assigns its own persistent_load; every claim it reads is bounded first --------
    @property
    def persistent_load(self) -> Callable[[Any], Any]:
        return self._persistent_load

    @persistent_load.setter
    def persistent_load(self, fn: Callable[[Any], Any]) -> None:
        def bounded(pid: Any) -> Any:
            self._claim_storage(pid)
            return fn(pid)

        self._persistent_load = bounded

    def _claim_storage(self, pid: Any) -> None:
        """``('storage', storage_type, key, location, numel[, view])``: torch allocates ``numel`` elements before it
        reads any of them, so the claim is checked (once per storage key) against the budget first."""
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
            return
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise UnsafeCheckpointError(f"refusing a storage of {numel!r:.40} elements")
        if not self._budget.storages or key in self._budget.keys:
            return
        self._budget.keys.add(key)
        self._budget.claim(numel * _storage_itemsize(storage_type), f"storage {key!r:.20} of {numel} x {storage_type}")

    # -- every opcode that calls something is checked before the call ----------------------------------------------
    def _guard(self, func: Any, args: Any, kwargs: dict[str, Any] | None = None) -> None:
        if not isinstance(args, tuple):
            return  # pickle raises its own error for these
        nbytes, what = _new_bytes(func, args, kwargs or {})
        self._budget.claim(nbytes, what)
        _check_view(func, args)

    def _stack_top(self, n: int) -> list[Any]:
        """The top ``n`` stack items (bottom first), or Nones on a malformed stack (pickle then raises its own)."""
        return list(self.stack[-n:]) if len(self.stack) >= n else [None] * n

    def load_reduce(self) -> None:
        self._guard(*self._stack_top(2))
        super().load_reduce()

    def load_newobj(self) -> None:
        self._guard(*self._stack_top(2))
        super().load_newobj()

    def load_newobj_ex(self) -> None:
        cls, args, kwargs = self._stack_top(3)
        self._guard(cls, args, kwargs if isinstance(kwargs, dict) else {})
        super().load_newobj_ex()

    def _instantiate(self, klass: Any, args: Any) -> None:
        self._guard(klass, tuple(args))
        super()._instantiate(klass, args)

    def load_build(self) -> None:
        import numpy as np

        inst, state = self._stack_top(2)
        if isinstance(inst, np.ndarray) and isinstance(state, tuple) and len(state) == 5:
            _, shape, dtype, _, raw = state  # (version, shape, dtype, is_fortran, data): object arrays take a list
            if isinstance(dtype, np.dtype) and not isinstance(raw, bytes | bytearray):
                self._budget.claim(_shape_bytes(shape, dtype.itemsize), f"numpy array of shape {shape!r:.40}")
        super().load_build()

    def load_bytearray8(self) -> None:  # pickle's own allocates the stated length before reading a byte
        (length,) = struct.unpack("<Q", self.read(8))
        self._budget.claim(length, f"BYTEARRAY8 of {length} bytes")
        data = self.read(length)
        if len(data) < length:
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(bytearray(data))

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8


def load(file: io.IOBase, **kwargs: Any) -> Any:
    """``pickle.load`` through the restricted :class:`Unpickler` (torch uses it for legacy-format headers)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    return Unpickler(io.BytesIO(data), **kwargs).load()


def to_plain(obj: Any) -> Any:
    """Recursively turn config stand-ins and Namespaces into plain dicts (for JSON records)."""
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj
