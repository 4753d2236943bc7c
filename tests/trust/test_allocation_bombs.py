"""9: an allow-listed constructor may not allocate more than the file holds. Each crafted file is refused before the
allocation, in one line naming the file; the sizes asked for (16 TiB) would fail at once on a loader without the
bound (MemoryError / a torch allocator error), so these tests never swap the machine even against old code."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from methods import CheckpointError, UnsafeCheckpointError, safe_pickle
from methods.weights import read_checkpoint
from tests.trust import _ckpt as c

HUGE = c.HUGE
_NP = safe_pickle.ALLOWED_GLOBALS["numpy.core.multiarray._reconstruct"]
_REBUILD = safe_pickle.ALLOWED_GLOBALS["torch._tensor._rebuild_from_type_v2"]
_COPYREG = safe_pickle.ALLOWED_GLOBALS["copyreg._reconstructor"]

PICKLES: dict[str, Callable[[], bytes]] = {
    "bytearray(2**44), 35 bytes": lambda: c.proto0_call("builtins", "bytearray", HUGE),
    "FloatStorage(2**42)": lambda: c.proto0_call("torch", "FloatStorage", HUGE // 4),
    "UntypedStorage(2**44)": lambda: c.proto0_call("torch.storage", "UntypedStorage", HUGE),
    "torch.Tensor(2**20, 2**22)": lambda: c.proto0_call("torch", "Tensor", 2**20, 2**22),
    "numpy.ndarray((2**41,))": lambda: c.proto2_reduce(np.ndarray, ((HUGE // 8,),)),
    "numpy _reconstruct 2**41 x f8": lambda: c.proto2_reduce(_NP, (np.ndarray, (HUGE // 8,), np.dtype("f8"))),
    "BYTEARRAY8 of 2**44": lambda: c.bytearray8(HUGE),
    "_rebuild_from_type_v2(bytearray, 2**44)": lambda: c.proto2_reduce(
        _REBUILD, (bytearray, torch.Tensor, (HUGE,), {})
    ),
    "copyreg reconstructor over bytearray": lambda: c.proto2_reduce(_COPYREG, (bytearray, bytearray, HUGE)),
}


@pytest.mark.parametrize("case", list(PICKLES))
def test_constructor_bombs_are_refused_naming_the_file(case: str, tmp_path: Path) -> None:
    path = tmp_path / "bomb.pth"
    path.write_bytes(PICKLES[case]())
    t0 = time.perf_counter()
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: refusing ") and "allocation bomb" in msg and "\n" not in msg, msg
    assert f"the {path.stat().st_size} B the file holds" in msg
    assert time.perf_counter() - t0 < 5


def test_a_35_byte_pickle_is_bounded_by_its_own_size_without_a_file() -> None:
    payload = c.proto0_call("builtins", "bytearray", 2 * 10**10)
    with pytest.raises(UnsafeCheckpointError, match=rf"more than the {len(payload)} B the file holds"):
        safe_pickle.loads(payload)
    assert safe_pickle.loads(c.proto0_call("builtins", "bytearray", 4)) == bytearray(4)  # small is fine


def test_legacy_storage_claim_is_bounded(tmp_path: Path) -> None:
    """torch's legacy format allocates a storage's claimed size before reading its bytes."""
    path = tmp_path / "legacy.pth"
    path.write_bytes(c.legacy_storage_claim(HUGE // 4))
    with pytest.raises(UnsafeCheckpointError, match=r"legacy\.pth: refusing storage .*allocation bomb"):
        read_checkpoint(path)


def test_a_view_past_its_storage_is_refused(tmp_path: Path) -> None:
    """``set_`` grows a storage to fit the view: a 4-byte storage and a size of 2**40 would allocate 4 TiB."""
    path = c.view_past_storage(tmp_path / "view.pth", 2**40)
    with pytest.raises(UnsafeCheckpointError, match=r"view\.pth: refusing a tensor of size \[1099511627776\]"):
        read_checkpoint(path)
    ok = c.view_past_storage(tmp_path / "ok.pth", 1)  # the same file with a size that fits loads
    assert read_checkpoint(ok)["w"].shape == (1,)


def test_a_zip_bomb_is_refused_before_torch_inflates_it(tmp_path: Path) -> None:
    path = c.zip_bomb(tmp_path / "bomb.pth", 8 << 20)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UnsafeCheckpointError, match=r"zip records expand to \d+ bytes, more than the file's"):
        read_checkpoint(path)


def test_a_frame_length_of_2_44_reads_no_more_than_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "frame.pth"
    path.write_bytes(c.frame(HUGE))
    with pytest.raises(CheckpointError, match=r"frame\.pth: not a readable checkpoint"):
        read_checkpoint(path)


def test_legacy_tar_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"a tar checkpoint \(torch < 0\.4's format\) is not supported"):
        read_checkpoint(c.tar_checkpoint(tmp_path / "old.tar"))


def test_real_checkpoints_stay_within_their_budget(tmp_path: Path) -> None:
    """Shared storages count once; zip and legacy formats, numpy arrays and views all load."""
    base = torch.arange(12, dtype=torch.float32)
    obj = {"a": base, "view": base[2:8].view(2, 3), "arr": np.arange(5), "half": torch.ones(3).half()}
    for zipped in (True, False):
        path = tmp_path / f"ok{zipped}.pth"
        torch.save(obj, path, _use_new_zipfile_serialization=zipped)
        got = read_checkpoint(path)
        assert torch.equal(got["view"], base[2:8].view(2, 3)) and list(got["arr"]) == [0, 1, 2, 3, 4]
