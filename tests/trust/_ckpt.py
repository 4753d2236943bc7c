"""Hostile checkpoints for the trust tests, generated here (no binary fixtures): each adapter's own official layout
with one tensor spoilt, and raw pickles / archives that ask the loader to allocate what the file does not hold."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from methods import get_adapter
from methods.base import Encoder, MethodAdapter, Variant
from tests.methods._official import TINY, official_file, shrink

HUGE = 2**44  # 16 TiB: a loader that tries to allocate it fails at once (MemoryError), it never swaps the machine


# ------------------------------------------------------------------------------------------------ adapters
def smallest_variant(method: str) -> Variant:
    return min(get_adapter(method).variants, key=lambda v: v.params_m or 1e9)


# Tried in order: plain ViTs take TINY; SP-ViT needs its class-attention start inside the depth; the rest (GC ViT,
# ResNets) are built at their real size, under a second each.
_SHRINKS: tuple[dict[str, Any], ...] = (TINY, {"embed_dim": 64, "depth": 3, "num_heads": 4, "local_up_to_layer": 2})


def tiny_encoder(monkeypatch: pytest.MonkeyPatch, method: str) -> tuple[MethodAdapter, Variant, Encoder]:
    """``method``'s smallest variant, shrunk where its architecture takes the arguments (see :data:`_SHRINKS`)."""
    adapter = get_adapter(method)
    v = smallest_variant(method)
    for kwargs in _SHRINKS:
        shrink(monkeypatch, method, v.name, **kwargs)
        try:
            return adapter, adapter.variant(v.name), adapter.build(v.name, weights="random")
        except (TypeError, ValueError):
            monkeypatch.undo()
    return adapter, adapter.variant(v.name), adapter.build(v.name, weights="random")


_TINY: dict[str, tuple[MethodAdapter, Variant, Encoder, dict[str, torch.Tensor]]] = {}


def cached_tiny(method: str) -> tuple[MethodAdapter, Variant, Encoder, dict[str, torch.Tensor]]:
    """:func:`tiny_encoder` built once per test session (a refused load leaves the model untouched), with its
    weights in our names; the shrunk variant is returned, so loading needs no monkeypatch."""
    if method not in _TINY:
        with pytest.MonkeyPatch.context() as mp:
            adapter, v, enc = tiny_encoder(mp, method)
        _TINY[method] = (adapter, v, enc, our_state_dict(enc))
    return _TINY[method]


def our_state_dict(enc: Encoder) -> dict[str, torch.Tensor]:
    """The encoder's weights under the names ``load_weights`` consumes (the global head's under ``global_head.``)."""
    return {k.removeprefix("model."): t.clone() for k, t in enc.state_dict().items()}


def victim_key(sd: dict[str, torch.Tensor]) -> str:
    """A float tensor every conversion passes through unchanged: the first norm/bn weight, else the first float."""
    floats = sorted(k for k, t in sd.items() if t.is_floating_point() and "pos_embed" not in k)
    return next((k for k in floats if ("norm" in k or ".bn" in k) and k.endswith("weight")), floats[0])


def official(adapter: MethodAdapter, v: Variant, sd: dict[str, torch.Tensor]) -> Any:
    """``sd`` written in ``v``'s first declared official layout (what the authors' code saves)."""
    return official_file(adapter, v, v.official_layouts[0], sd)


def spoil(sd: dict[str, torch.Tensor], key: str, how: str) -> dict[str, torch.Tensor]:
    sd = dict(sd)
    t = sd[key]
    if how == "nan":
        sd[key] = torch.full_like(t, float("nan"))
    elif how == "inf":
        sd[key] = t.clone().view(-1).index_fill(0, torch.tensor([0]), float("inf")).view(t.shape)
    elif how == "int":
        sd[key] = torch.ones(t.shape, dtype=torch.int64)
    else:
        raise ValueError(how)
    return sd


# ------------------------------------------------------------------------------------------------ raw pickles
def proto0_call(module: str, name: str, *int_args: int) -> bytes:
    """A protocol-0 pickle of ``module.name(*int_args)``: ``bytearray(2**44)`` is 33 bytes."""
    args = "".join(f"L{a}L\n" for a in int_args)
    return f"c{module}\n{name}\n({args}tR.".encode()


def proto2_reduce(func: Callable[..., Any], args: tuple) -> bytes:
    """A protocol-2 pickle of ``func(*args)`` for an allow-listed ``func``, written by pickle itself."""

    class Call:
        def __reduce__(self) -> tuple:
            return func, args

    return pickle.dumps(Call(), protocol=2)


def bytearray8(length: int) -> bytes:
    """Protocol 5's ``BYTEARRAY8`` with a length field of ``length`` and no data after it."""
    return b"\x80\x05" + b"\x96" + struct.pack("<Q", length) + b"."


def frame(length: int) -> bytes:
    """Protocol 4's ``FRAME`` opcode announcing a frame of ``length`` bytes."""
    return b"\x80\x04" + b"\x95" + struct.pack("<Q", length) + b"N."


class _StoragePickler(pickle.Pickler):
    """Writes ``_Ref`` objects as torch's persistent storage ids, with whatever element count we claim."""

    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, _Ref) else None


class _Ref:
    def __init__(self, pid: tuple) -> None:
        self.pid = pid


def legacy_storage_claim(numel: int) -> bytes:
    """torch's legacy (non-zip) format whose one storage claims ``numel`` float elements: torch allocates them all
    (``UntypedStorage(nbytes)``) before it reads a byte of data."""
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, out, protocol=2)
    _StoragePickler(out, protocol=2).dump({"w": _Ref(("storage", torch.FloatStorage, "0", "cpu", numel, None))})
    pickle.dump(["0"], out, protocol=2)
    return out.getvalue()


def zip_with_data_pkl(path: Path, data_pkl: bytes, records: dict[str, bytes]) -> Path:
    """A torch zip checkpoint: a real ``torch.save`` file's records with ``data.pkl`` and data records replaced."""
    torch.save({"w": torch.zeros(1)}, path)
    with zipfile.ZipFile(path) as zin:
        entries = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    top = next(n.split("/", 1)[0] for n in entries if n.endswith("/data.pkl"))
    entries = {n: b for n, b in entries.items() if "/data/" not in n}
    entries[f"{top}/data.pkl"] = data_pkl
    entries.update({f"{top}/data/{k}": b for k, b in records.items()})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zout:
        for name, blob in entries.items():
            zout.writestr(name, blob)
    return path


def view_past_storage(path: Path, numel: int) -> Path:
    """A zip checkpoint whose tensor of ``numel`` floats sits on a 4-byte storage: ``set_`` would grow the storage."""
    out = io.BytesIO()
    storage = _Ref(("storage", torch.FloatStorage, "0", "cpu", 1))

    class Rebuild:
        def __reduce__(self) -> tuple:
            return torch._utils._rebuild_tensor_v2, (storage, 0, (numel,), (1,), False, OrderedDict())

    _StoragePickler(out, protocol=2).dump({"w": Rebuild()})
    return zip_with_data_pkl(path, out.getvalue(), {"0": b"\0\0\0\0"})


def zip_bomb(path: Path, nbytes: int) -> Path:
    """A checkpoint whose one storage is a deflated record of ``nbytes`` zeros (a few KiB on disk)."""
    torch.save({"w": torch.zeros(nbytes // 4)}, path)
    with zipfile.ZipFile(path) as zin:
        entries = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for name, blob in entries:
            zout.writestr(name, blob)
    return path


def tar_checkpoint(path: Path) -> Path:
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name in ("storages", "tensors", "pickle", "sys_info"):
            info = tarfile.TarInfo(name)
            blob = pickle.dumps(0, protocol=2)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path
