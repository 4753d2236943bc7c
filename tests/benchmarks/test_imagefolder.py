"""ImageFolder scanning fails early with one line naming the folder or file, and writes no record."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.data.imagefolder import scan_split, synth_imagefolder
from methods.errors import DataError


@pytest.fixture
def data(tmp_path: Path) -> Path:
    # 7 train images a class: 21 >= the k-NN headline k = 20, so the k-NN CLI runs reach the images
    return synth_imagefolder(tmp_path / "d", seed=1, n_classes=3, n_train=7, n_val=2, size=32)


def test_synth_layout_and_determinism(data: Path, tmp_path: Path) -> None:
    train = scan_split(data, "train")
    assert len(train.classes) == 3 and len(train.samples) == 21
    assert all(p.suffix == ".JPEG" and p.parent.parent.name == "train" for p, _ in train.samples)
    again = synth_imagefolder(tmp_path / "e", seed=1, n_classes=3, n_train=7, n_val=2, size=32)
    assert scan_split(again, "train").fingerprint() == train.fingerprint()


def _run_knn(data: Path, out: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(
        [
            "run",
            "--method",
            "dino",
            "--task",
            "knn",
            "--data",
            str(data),
            "--weights",
            "random",
            "--smoke",
            "--out",
            str(out),
        ]
    )
    return code, capsys.readouterr().err


def test_missing_split(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.rmtree(data / "val")
    code, err = _run_knn(data, tmp_path / "out", capsys)
    assert code == 1 and f"{data / 'val'}: missing split folder" in err
    assert not (tmp_path / "out" / "runs").exists()


def test_empty_class_folder(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = next((data / "train").iterdir())
    for f in folder.iterdir():
        f.unlink()
    code, err = _run_knn(data, tmp_path / "out", capsys)
    assert code == 1 and f"{folder}: empty class folder" in err


def test_val_class_unknown_to_train(data: Path) -> None:
    (data / "val" / "zebra").mkdir()
    (data / "val" / "zebra" / "z.png").write_bytes(b"x")
    with pytest.raises(DataError, match="classes not present in train: zebra"):
        scan_split(data, "val", classes=scan_split(data, "train").classes)


def test_unreadable_image(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = next((data / "val").iterdir()) / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8 truncated")
    code, err = _run_knn(data, tmp_path / "out", capsys)
    assert code == 1 and f"{bad}: unreadable image" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "out" / "runs").exists()
