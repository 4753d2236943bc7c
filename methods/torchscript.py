"""Read the tensors of a TorchScript archive without running it.

Some official weights ship only as TorchScript (OpenAI CLIP's ``RN50.pt``, ``RN101.pt``, ``ViT-B-16.pt``).
``torch.load`` hands such a file to ``torch.jit.load``, which compiles and runs the TorchScript code inside it, so
:func:`methods.weights.read_checkpoint` routes them here instead. A TorchScript archive is a zip with
``<top>/data.pkl`` (the module tree as pickled objects: each module is a ``__torch__.<Class>`` object whose state
is a dict of attributes), ``<top>/data/<key>`` (raw tensor storages) and ``<top>/code/`` (the TorchScript code).
We unpickle ``data.pkl`` with :class:`methods.safe_pickle.Unpickler`'s allow-list, map every ``__torch__.*`` class
to an inert attribute holder, read storages as bytes, and never open ``code/``. The result is a flat
``{dotted.name: tensor}`` of every tensor attribute in the tree: parameters, buffers, and plain tensor attributes
(e.g. CLIP's text ``attn_mask``), which adapters drop like any other non-encoder key.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import torch

from methods import safe_pickle
from methods.errors import CheckpointError


def is_torchscript_archive(path: Path | str) -> bool:
    """True for a zip whose top folder holds ``constants.pkl`` (torch's own test, ``_is_torchscript_zip``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.count("/") == 1 and n.endswith("/constants.pkl") for n in zf.namelist())


class ScriptObject:
    """Inert stand-in for one pickled TorchScript object; ``state`` is its attribute dict."""

    qualname = "?"

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


# TorchScript pickles typed lists through these helpers; inert versions (no torch.jit import, nothing executed).
def _as_list(data: Any) -> list:
    return list(data)


def _restore_type_tag(value: Any, _type_str: str) -> Any:
    return value


_JIT_HELPERS = {
    "torch.jit._pickle.build_intlist": _as_list,
    "torch.jit._pickle.build_tensorlist": _as_list,
    "torch.jit._pickle.build_doublelist": _as_list,
    "torch.jit._pickle.build_boollist": _as_list,
    "torch.jit._pickle.restore_type_tag": _restore_type_tag,
}


# Legacy typed-storage classes name the dtype (asking the class itself triggers TypedStorage deprecation warnings).
_STORAGE_DTYPES = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _Unpickler(safe_pickle.Unpickler):
    def __init__(self, file: io.BytesIO, zf: zipfile.ZipFile, top: str) -> None:
        super().__init__(file)
        self._zf, self._top = zf, top
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            key = f"{module}.{name}"
            if key not in self._classes:  # one inert subclass per TorchScript class, named for error messages
                self._classes[key] = type(name, (ScriptObject,), {"qualname": key})
            return self._classes[key]
        if f"{module}.{name}" in _JIT_HELPERS:
            return _JIT_HELPERS[f"{module}.{name}"]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id in TorchScript data.pkl: {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        dtype = storage_type if isinstance(storage_type, torch.dtype) else _STORAGE_DTYPES.get(storage_type.__name__)
        if dtype is None:
            raise CheckpointError(f"unsupported storage type in TorchScript data.pkl: {storage_type!r:.80}")
        raw = bytearray(self._zf.read(f"{self._top}/data/{key}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if flat.numel() != numel:
            raise CheckpointError(f"TorchScript storage {key}: {flat.numel()} elements, header says {numel}")
        return torch.storage.TypedStorage(wrap_storage=flat.untyped_storage(), dtype=dtype, _internal=True)


def _flatten(obj: ScriptObject, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if not isinstance(obj.state, dict):
        raise CheckpointError(
            f"TorchScript object {obj.qualname} ({prefix or '<root>'}) has a custom state; "
            "cannot read its tensors without running its code"
        )
    for name, value in obj.state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, ScriptObject):
            _flatten(value, f"{prefix}{name}.", out)


def read_torchscript_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """``{dotted.name: tensor}`` of every tensor attribute in the archive's module tree, read without running it."""
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        tops = sorted({n.split("/", 1)[0] for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")})
        if len(tops) != 1:
            raise CheckpointError(f"{path}: expected one <folder>/data.pkl in the TorchScript archive, found {tops}")
        top = tops[0]
        names = set(zf.namelist())
        if f"{top}/byteorder" in names and zf.read(f"{top}/byteorder").strip() not in (b"little", b""):
            raise CheckpointError(f"{path}: big-endian TorchScript archive is not supported")
        try:
            root = _Unpickler(io.BytesIO(zf.read(f"{top}/data.pkl")), zf, top).load()
        except CheckpointError as err:
            raise type(err)(f"{path}: {err}") from None
    if not isinstance(root, ScriptObject):
        raise CheckpointError(f"{path}: TorchScript data.pkl holds {type(root).__name__}, expected a module object")
    out: dict[str, torch.Tensor] = {}
    _flatten(root, "", out)
    if not out:
        raise CheckpointError(f"{path}: no tensors found in the TorchScript archive")
    return out
