"""Checkpoints are untrusted: only allow-listed globals unpickle; code-executing pickles are refused."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from methods import CheckpointError, UnsafeCheckpointError, safe_pickle
from methods.safe_pickle import ConfigNode, to_plain
from methods.weights import read_checkpoint, sha256_file


class _Exploit:
    """Unpickling this runs ``os.system`` — the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_code_executing_pickle_is_refused(tmp_path: Path, zipfile: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(
        {"state_dict": {"w": torch.zeros(1)}, "x": _Exploit(marker)}, path, _use_new_zipfile_serialization=zipfile
    )
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth: refusing to unpickle global '(posix|os)\.system'"):
        read_checkpoint(path)
    assert not marker.exists()


def test_refusal_reaches_the_cli_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks.cli import main

    torch.save({"x": _Exploit(tmp_path / "m")}, tmp_path / "evil.pth")
    assert main(["inspect-weights", "--method", "dino", "--weights", str(tmp_path / "evil.pth")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refusing to unpickle" in err and "evil.pth" in err


def test_builtins_eval_is_refused(tmp_path: Path) -> None:
    payload = b"cbuiltins\neval\n(S'1+1'\ntR."  # protocol-0 pickle calling eval("1+1")
    with pytest.raises(UnsafeCheckpointError, match="builtins.eval"):
        safe_pickle.loads(payload)


def test_allowed_objects_round_trip(tmp_path: Path) -> None:
    ckpt = {
        "model": {
            "w": torch.randn(2, 3),
            "h": torch.randn(4).half(),
            "b": torch.randn(2).bfloat16(),
            "i": torch.arange(3),
            "p": torch.nn.Parameter(torch.ones(2)),
        },
        "args": argparse.Namespace(lr=0.1, path=Path("/x"), sizes=(224, 96), flags={"a"}),
        "epoch": 3,
        "acc": np.float64(81.5),
        "arr": np.arange(4),
        "dtype": torch.float16,
    }
    torch.save(ckpt, tmp_path / "ok.pth")
    got = read_checkpoint(tmp_path / "ok.pth")
    assert torch.equal(got["model"]["w"], ckpt["model"]["w"]) and got["model"]["h"].dtype == torch.float16
    assert got["args"].lr == 0.1 and got["args"].path == Path("/x") and got["epoch"] == 3
    assert float(got["acc"]) == 81.5 and list(got["arr"]) == [0, 1, 2, 3] and got["dtype"] == torch.float16


class CfgNode(dict):
    """Pickles as ``yacs.config.CfgNode`` (as MFM's checkpoints do) without yacs being installed."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.__dict__["__immutable__"] = False
        self.__dict__["__deprecated_keys__"] = set()


CfgNode.__module__ = "yacs.config"


def test_yacs_config_loads_without_yacs(tmp_path: Path) -> None:
    import importlib.util

    assert importlib.util.find_spec("yacs") is None, "this test proves loading works without yacs"
    cfg = CfgNode(MODEL=CfgNode(TYPE="vit", VIT=CfgNode(EMBED_DIM=768)), TRAIN=CfgNode(EPOCHS=300))
    import sys
    import types

    fake = types.ModuleType("yacs.config")  # only so torch.save can find the class by its pickled name
    fake.CfgNode = CfgNode
    sys.modules.setdefault("yacs", types.ModuleType("yacs"))
    sys.modules["yacs.config"] = fake
    try:
        torch.save({"model": {"w": torch.zeros(1)}, "config": cfg, "max_accuracy": 0.0}, tmp_path / "mfm.pth")
    finally:
        del sys.modules["yacs.config"], sys.modules["yacs"]
    got = read_checkpoint(tmp_path / "mfm.pth")
    assert isinstance(got["config"], ConfigNode)
    assert got["config"].MODEL.VIT.EMBED_DIM == 768
    assert to_plain(got["config"]) == {"MODEL": {"TYPE": "vit", "VIT": {"EMBED_DIM": 768}}, "TRAIN": {"EPOCHS": 300}}


def test_safetensors_and_sha256(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = {"a": torch.randn(3, 3), "b": torch.zeros(2)}
    save_file(sd, tmp_path / "w.safetensors")
    got = read_checkpoint(tmp_path / "w.safetensors")
    assert torch.equal(got["a"], sd["a"])
    import hashlib

    expected = hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()
    assert sha256_file(tmp_path / "w.safetensors") == expected


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth: not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: not a readable safetensors"):
        read_checkpoint(tmp_path / "junk.safetensors")
    from methods import build_encoder

    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        build_encoder("dino", weights=tmp_path / "absent.pth")
