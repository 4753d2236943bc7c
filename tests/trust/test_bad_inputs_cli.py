"""Issue 10's "Done when": every bad input the trust checks handle — crafted checkpoints, submitted records, broken
datasets, all generated here — fed through ``vitbench run`` / ``validate`` / ``inspect-weights``: exit 1, exactly one
line on stderr naming the problem, no traceback, no record (nothing at all) written.

The cases run in-process through :func:`benchmarks.cli.main` (fast: a shrunk DINO ViT-S/16 is built per case); a few
go through a real ``python -m benchmarks.cli`` process to prove the stderr shape end to end (warnings included)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cli import main
from benchmarks.data.coco import synth_coco
from benchmarks.data.imagefolder import synth_imagefolder
from methods import safe_pickle
from tests.methods._official import shrink
from tests.trust import _ckpt as c
from tests.trust._records import knn_record, write

ROOT = Path(__file__).resolve().parents[2]
TINY_DINO = {"embed_dim": 64, "depth": 2, "num_heads": 4, "img_size": 32}


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def _one_line_exit_1(argv: list[str], capsys: pytest.CaptureFixture[str], fragment: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == 1, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith(("vitbench: error: ", "invalid: "))
    assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------------ records (validate)
def _set(rec: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    rec = copy.deepcopy(rec)
    *head, last = dotted.split(".")
    node = rec
    for k in head:
        node = node[k]
    node[last] = value
    return rec


def _dup_key(rec: dict[str, Any]) -> str:
    return json.dumps(rec)[:-1] + ', "metrics": {"top1": 99.9, "top5": 99.9}}'


def _deep(rec: dict[str, Any]) -> str:
    return json.dumps(rec)[:-1] + ', "extra2": ' + "[" * 10_000 + "]" * 10_000 + "}"


def _deep_inside(rec: dict[str, Any]) -> str:  # deep, but shallow enough for json.loads: walked by nobody
    return json.dumps({**rec, "extra": {}}).replace('"extra": {}', '"extra": ' + '{"a": ' * 900 + "1" + "}" * 900)


def _with_report(**fields: Any) -> dict[str, Any]:
    rec = knn_record()
    rec["weights"]["load_report"] = {"matched": 150, **fields}
    return rec


# name -> (record, raw text or None, a fragment the one line must hold)
RECORDS: dict[str, Callable[[], tuple[dict[str, Any], str | bytes | None, str]]] = {
    # 7. JSON edge cases
    "duplicate key": lambda: (knn_record(), _dup_key(knn_record()), "duplicate key 'metrics'"),
    "nesting depth 10000": lambda: (knn_record(), _deep(knn_record()), "nested deeper than 32 levels"),
    "nesting depth 900": lambda: (knn_record(), _deep_inside(knn_record()), "nested deeper than 32 levels"),
    "seed 10**30": lambda: (
        knn_record(),
        json.dumps(knn_record()).replace('"seed": 0', '"seed": ' + "1" + "0" * 30),
        "seed: Input should be less than or equal to 4294967295",
    ),
    "git_sha not hex": lambda: (_set(knn_record(), "provenance.git_sha", "not-a-sha; rm -rf /"), None, "git commit id"),
    "git_sha uppercase": lambda: (_set(knn_record(), "provenance.git_sha", "A" * 40), None, "git commit id"),
    "not JSON": lambda: (knn_record(), "{'single': 'quotes'}", "not valid JSON"),
    "not UTF-8": lambda: (knn_record(), b'{"a": "\xff\xfe"}', "not UTF-8 text"),
    "a JSON array": lambda: (knn_record(), "[1, 2, 3]", "expected a JSON object, got list"),
    "NaN literal metric": lambda: (knn_record(), json.dumps(knn_record()).replace("74.5", "NaN"), "is not finite"),
    # 5. what the leaderboard used to ingest
    "forged protocol hash": lambda: (_set(knn_record(), "protocol.hash", "0" * 16), None, "protocol.hash"),
    "paper without git_sha": lambda: (_set(knn_record(), "provenance.git_sha", None), None, "git_sha: required"),
    "metric 1e308": lambda: (_set(knn_record(), "metrics.top1", 1e308), None, "outside [0.0, 100.0]"),
    "control characters": lambda: (
        _set(knn_record(), "provenance.host", "evil\x1b[2J"),
        None,
        "provenance.host: contains control characters",
    ),
    # 3. paper track on other data
    "paper on 48-image set": lambda: (
        knn_record(splits={"train": 48, "val": 24}, n_classes=4),
        None,
        "dataset.splits.train: 48",
    ),
    "paper, other class count": lambda: (knn_record(n_classes=10), None, "dataset.n_classes: 10"),
    "paper, no dataset identity": lambda: (knn_record(splits=None, n_classes=None), None, "splits.train: missing"),
    # 1 + 8. what the load report must say
    "load report with non-finite tensors": lambda: (_with_report(non_finite=3), None, "refused at load"),
    "integrity with control characters": lambda: (_with_report(integrity="ok\x07"), None, "control characters"),
}


@pytest.mark.parametrize("case", list(RECORDS))
def test_bad_record(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec, raw, fragment = RECORDS[case]()
    path = write(tmp_path / "results", rec, raw if isinstance(raw, str | None) else None)
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    before = _files(tmp_path)
    line = _one_line_exit_1(["validate", str(path)], capsys, fragment)
    assert str(path) in line
    assert _files(tmp_path) == before


def test_the_good_twin_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "results", knn_record())
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    path = write(tmp_path / "results2", _with_report(integrity="unpinned", resample_pos_embed=True))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    """DINO ViT-S/16's weights at :data:`TINY_DINO` size, in DINO's backbone-file layout."""
    from methods import build_encoder

    with pytest.MonkeyPatch.context() as mp:
        shrink(mp, "dino", "vits16", **TINY_DINO)
        enc = build_encoder("dino:vits16", weights="random")
    return {k.removeprefix("model."): t.clone() for k, t in enc.state_dict().items()}


@pytest.fixture(autouse=True)
def _tiny_dino(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "dino", "vits16", **TINY_DINO)
    monkeypatch.setenv("VITBENCH_WORKERS", "0")


class _Exploit:
    def __reduce__(self) -> tuple:
        return (os.system, ("true",))


def _save(obj: Any, name: str) -> Callable[[Path], str]:
    def make(d: Path) -> str:
        torch.save(obj, d / name)
        return str(d / name)

    return make


def _raw(data: Callable[[], bytes], name: str = "bomb.pth") -> Callable[[Path], str]:
    def make(d: Path) -> str:
        (d / name).write_bytes(data())
        return str(d / name)

    return make


def _sd_case(change: Callable[[dict[str, torch.Tensor]], None], name: str = "w.pth", st: bool = False) -> Any:
    def make(d: Path, sd: dict[str, torch.Tensor]) -> str:
        sd = {k: v.clone() for k, v in sd.items()}
        change(sd)
        if st:
            from safetensors.torch import save_file

            save_file(sd, str(d / name))
        else:
            torch.save(sd, d / name)
        return str(d / name)

    return make


def _nan_all(sd: dict[str, torch.Tensor]) -> None:
    for t in sd.values():
        if t.is_floating_point():
            t.fill_(float("nan"))


def _one_inf(sd: dict[str, torch.Tensor]) -> None:
    sd["blocks.1.mlp.fc2.bias"][3] = float("inf")


def _int_cast(sd: dict[str, torch.Tensor]) -> None:
    sd["norm.weight"] = torch.ones(64, dtype=torch.int32)


def _foreign_grid(sd: dict[str, torch.Tensor]) -> None:
    sd["pos_embed"] = torch.randn(1, 1 + 7 * 7, 64)


def _wider(sd: dict[str, torch.Tensor]) -> None:
    sd["norm.weight"] = torch.ones(96)


def _sparse(sd: dict[str, torch.Tensor]) -> None:
    sd["norm.bias"] = torch.zeros(64).to_sparse()


def _meta(sd: dict[str, torch.Tensor]) -> None:
    sd["norm.bias"] = torch.zeros(64, device="meta")


def _truncated(d: Path, sd: dict[str, torch.Tensor]) -> str:
    torch.save(sd, d / "cut.pth")
    blob = (d / "cut.pth").read_bytes()
    (d / "cut.pth").write_bytes(blob[: len(blob) // 2])
    return str(d / "cut.pth")


_NP = safe_pickle.ALLOWED_GLOBALS["numpy.core.multiarray._reconstruct"]
_HUGE = c.HUGE

# name -> (how to make the --weights argument, a fragment of the one-line error)
CHECKPOINTS: dict[str, tuple[Any, str]] = {
    # 1. non-finite weights
    "all weights NaN": (_sd_case(_nan_all), "30 of 30 tensors hold NaN or inf (first: cls_token, 64 NaN"),
    "one inf": (_sd_case(_one_inf), "1 of 30 tensors hold NaN or inf (first: blocks.1.mlp.fc2.bias, 0 NaN and 1 inf"),
    "NaN in a safetensors file": (_sd_case(_nan_all, "w.safetensors", st=True), "NaN or inf"),
    # 2. foreign weights
    "integer tensor into a float parameter": (_sd_case(_int_cast), "refusing to cast integer weights to float"),
    "pos_embed of another grid": (_sd_case(_foreign_grid), "is a 7x7 grid"),
    "another width": (_sd_case(_wider), "does not fit dino:vits16"),
    "a sparse tensor": (_sd_case(_sparse), "refusing to unpickle global 'torch.serialization._get_layout'"),
    "a meta tensor": (_sd_case(_meta), "norm.bias is a torch.strided meta tensor"),
    # 9. allocation bombs
    "bytearray(2**44)": (_raw(lambda: c.proto0_call("builtins", "bytearray", _HUGE)), "refusing bytearray("),
    "FloatStorage(2**42)": (_raw(lambda: c.proto0_call("torch", "FloatStorage", _HUGE // 4)), "FloatStorage("),
    "torch.Tensor(2**20, 2**22)": (_raw(lambda: c.proto0_call("torch", "Tensor", 2**20, 2**22)), "refusing Tensor("),
    "numpy _reconstruct": (
        _raw(lambda: c.proto2_reduce(_NP, (np.ndarray, (_HUGE // 8,), np.dtype("f8")))),
        "refusing _reconstruct(",
    ),
    "BYTEARRAY8 length 2**44": (_raw(lambda: c.bytearray8(_HUGE)), "refusing BYTEARRAY8"),
    "legacy storage claim": (_raw(lambda: c.legacy_storage_claim(_HUGE // 4)), "refusing storage"),
    "view past its storage": (lambda d: str(c.view_past_storage(d / "v.pth", 2**40)), "refusing a tensor of size"),
    "zip bomb": (lambda d: str(c.zip_bomb(d / "z.pth", 4 << 20)), "zip records expand"),
    "tar checkpoint": (lambda d: str(c.tar_checkpoint(d / "t.tar")), "a tar checkpoint"),
    # code execution (kept so)
    "os.system pickle": (_save({"x": _Exploit()}, "evil.pth"), "refusing to unpickle global"),
    "builtins.eval pickle": (_raw(lambda: b"cbuiltins\neval\n(S'1+1'\ntR."), "'builtins.eval'"),
    # unreadable / not weights
    "garbage bytes": (_raw(lambda: b"not a checkpoint at all", "junk.pth"), "not a readable checkpoint"),
    "truncated zip": (_truncated, "not a readable checkpoint"),
    "garbage safetensors": (_raw(lambda: b"\0" * 20, "junk.safetensors"), "not a readable safetensors"),
    "empty dict": (_save({}, "empty.pth"), "no state dict found"),
    "a list": (_save([torch.zeros(1)], "list.pth"), "expected a dict of tensors"),
    "keys of another network": (_save({"conv1.weight": torch.zeros(1)}, "other.pth"), "do not look like"),
    # 8. where weights may come from
    "http:// URL": (lambda d: "http://example.org/w.pth", "refusing plain http://"),
    "ftp:// URL": (lambda d: "ftp://example.org/w.pth", "unsupported URL scheme"),
    "missing file": (lambda d: str(d / "absent.pth"), "no such checkpoint file"),
    "a folder": (lambda d: str(d), "is a folder"),
}


def _weights_arg(case: str, d: Path, sd: dict[str, torch.Tensor]) -> str:
    make = CHECKPOINTS[case][0]
    return make(d, sd) if make.__code__.co_argcount == 2 else make(d)


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_bad_checkpoint_inspect_weights(
    case: str, tmp_path: Path, tiny_sd: dict[str, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _weights_arg(case, tmp_path, tiny_sd)
    before = _files(tmp_path)
    _one_line_exit_1(["inspect-weights", "--method", "dino:vits16", "--weights", weights], capsys, CHECKPOINTS[case][1])
    assert _files(tmp_path) == before  # nothing written next to it (no partial, no cache)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_imagefolder(tmp_path_factory.mktemp("data"), n_classes=2, n_train=12, n_val=2, size=32)


RUN_CHECKPOINTS = [
    "all weights NaN",
    "pos_embed of another grid",
    "bytearray(2**44)",
    "integer tensor into a float parameter",
]


@pytest.mark.parametrize("case", RUN_CHECKPOINTS)
def test_bad_checkpoint_run_writes_no_record(
    case: str, tmp_path: Path, tiny_sd: dict[str, torch.Tensor], small_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _weights_arg(case, tmp_path, tiny_sd)
    out = tmp_path / "results"
    argv = ["run", "--method", "dino:vits16", "--task", "knn", "--data", str(small_data), "--weights", weights]
    _one_line_exit_1([*argv, "--smoke", "--out", str(out), "--no-progress"], capsys, CHECKPOINTS[case][1])
    assert not list(out.rglob("*.json"))


# ------------------------------------------------------------------------------------------------ datasets (run)
def _imagefolder(d: Path, **kw: Any) -> Path:
    return synth_imagefolder(d / "data", **{"n_classes": 2, "n_train": 12, "n_val": 2, "size": 32, **kw})


def _one_class(d: Path) -> Path:
    root = _imagefolder(d)
    for split in ("train", "val"):
        for p in sorted((root / split).iterdir())[1:]:
            for f in p.iterdir():
                f.unlink()
            p.rmdir()
    return root


def _garbage_image(d: Path) -> Path:
    root = _imagefolder(d)
    (root / "train" / "class_0_disc" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def _empty_class(d: Path) -> Path:
    root = _imagefolder(d)
    (root / "val" / "class_1_square").mkdir(exist_ok=True)
    for f in (root / "val" / "class_1_square").iterdir():
        f.unlink()
    return root


def _no_val(d: Path) -> Path:
    root = _imagefolder(d)
    for f in (root / "val").rglob("*.JPEG"):
        f.unlink()
    for p in (root / "val").iterdir():
        p.rmdir()
    (root / "val").rmdir()
    return root


def _float_image(d: Path) -> Path:
    root = _imagefolder(d)
    Image.fromarray(np.zeros((32, 32), dtype=np.float32)).save(root / "train" / "class_0_disc" / "f.tif")
    return root


def _int32_image(d: Path) -> Path:
    root = _imagefolder(d)
    Image.fromarray(np.full((32, 32), 1 << 20, dtype=np.int32)).save(root / "train" / "class_0_disc" / "i.tif")
    return root


def _unknown_val_class(d: Path) -> Path:
    root = _imagefolder(d)
    (root / "val" / "class_1_square").rename(root / "val" / "zebra")
    return root


def _coco_without_val_json(d: Path) -> Path:
    root = synth_coco(d / "coco", n_train=2, n_val=2)
    (root / "annotations" / "instances_val2017.json").unlink()
    return root


def _coco_unknown_category(d: Path) -> Path:
    root = synth_coco(d / "coco", n_train=2, n_val=2)
    ann = root / "annotations" / "instances_train2017.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["category_id"] = 99
    ann.write_text(json.dumps(data))
    return root


# name -> (task, how to make the data root, extra args, a fragment of the one-line error)
DATASETS: dict[str, tuple[str, Callable[[Path], Path], list[str], str]] = {
    "one class": ("knn", _one_class, [], "at least 2 classes"),
    "too few images for the headline k": ("knn", lambda d: _imagefolder(d, n_train=3), [], "fewer than the 20"),
    "a class of one image (linear)": ("linear", lambda d: _imagefolder(d, n_train=1), [], "held out"),
    "an unreadable image": ("knn", _garbage_image, [], "broken.jpg: unreadable image"),
    "a floating-point image": ("knn", _float_image, [], "f.tif: a floating-point image"),
    "a 32-bit integer image": ("knn", _int32_image, [], "i.tif: a 32-bit integer image"),
    "an empty class folder": ("knn", _empty_class, [], "empty class folder"),
    "no val split": ("knn", _no_val, [], "missing split folder"),
    "a val class unknown to train": ("knn", _unknown_val_class, [], "classes not present in train: zebra"),
    "no data folder": ("knn", lambda d: d / "absent", [], "data folder does not exist"),
    "paper track on synthetic data": ("knn", _imagefolder, ["--no-smoke"], "not the task's data"),
    "COCO without its val json": ("coco-maskrcnn-fpn-1x", _coco_without_val_json, [], "val2017.json: missing file"),
    "COCO annotation of an unknown category": ("coco-maskrcnn-fpn-1x", _coco_unknown_category, [], "category_id"),
}


@pytest.mark.parametrize("case", list(DATASETS))
def test_bad_dataset_run_writes_no_record(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task, make, extra, fragment = DATASETS[case]
    data = make(tmp_path)
    out = tmp_path / "results"
    smoke = [] if "--no-smoke" in extra else ["--smoke"]
    weights = "random"
    if not smoke:  # random weights are refused off the smoke track before the data is looked at: pass a file
        (weights_file := tmp_path / "dino_deitsmall16_pretrain.pth").write_bytes(b"never read: data refused first")
        weights = str(weights_file)
    argv = ["run", "--method", "dino:vits16", "--task", task, "--data", str(data), "--weights", weights, *smoke]
    argv += ["--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"]
    _one_line_exit_1(argv, capsys, fragment)
    assert not list(out.rglob("*.json"))


def test_there_are_at_least_30_bad_inputs() -> None:
    assert len(RECORDS) + len(CHECKPOINTS) + len(RUN_CHECKPOINTS) + len(DATASETS) >= 30


# ------------------------------------------------------------------------------------------------ real processes
def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VITBENCH_WORKERS": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_stderr_shape_in_real_processes(tmp_path: Path) -> None:
    """A record, a bomb checkpoint and a one-class dataset, each in its own ``vitbench`` process: exit 1, one line
    on stderr (no warning, no traceback), nothing written."""
    record = write(tmp_path / "results", _set(knn_record(), "provenance.git_sha", "not hex"))
    bomb = tmp_path / "bomb.pth"
    bomb.write_bytes(c.proto0_call("builtins", "bytearray", 2 * 10**10))
    data = _one_class(tmp_path)
    out = tmp_path / "out"
    cases = [
        (["validate", str(record)], "git commit id"),
        (["inspect-weights", "--method", "dino:vits16", "--weights", str(bomb)], "refusing bytearray(20000000000)"),
        (
            ["run", "--method", "dino:vits16", "--task", "knn", "--data", str(data), "--weights", "random", "--smoke"]
            + ["--out", str(out), "--no-progress"],
            "at least 2 classes",
        ),
    ]
    before = _files(tmp_path)
    for args, fragment in cases:
        proc = _cli(args, tmp_path)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert "Traceback" not in proc.stderr and fragment in lines[0], lines[0]
    assert _files(tmp_path) == before
