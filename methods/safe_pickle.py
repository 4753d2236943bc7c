"""A pickle module for ``torch.load`` that admits an explicit allow-list of globals and nothing else.

Why not ``torch.load(weights_only=True)`` with ``torch.serialization.safe_globals``? Official full checkpoints
pickle configuration objects next to the weights: an ``argparse.Namespace`` (DINO, SelfPatch, DINO-MM) or a yacs
``CfgNode`` (MFM). torch's weights-only unpickler refuses a pickled dict *subclass* with items ("Can only SETITEM
for dict"), even when the class is allow-listed, so MFM checkpoints cannot load that way, and yacs would have to
be installed. This module is passed to ``torch.load`` as ``pickle_module``: its ``Unpickler.find_class`` returns
objects from :data:`ALLOWED_GLOBALS` only, maps configuration classes to inert stand-ins (so yacs need not be
installed), and raises :class:`UnsafeCheckpointError` for anything else (``os.system``, ``builtins.eval``, ...).
"""

from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import io
import pickle
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
    try:  # numpy >= 2 pickles under numpy._core, older files name numpy.core: both map to the same objects
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
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
        "copyreg._reconstructor": copyreg._reconstructor,
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


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits :data:`ALLOWED_GLOBALS` only."""

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
