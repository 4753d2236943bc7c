"""ADE20K data (benchmarks.data.ade20k): the synthetic writer in the real layout, and every bad input refused with
one line naming the file before training starts, nothing written (no mm* needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.data.ade20k import (
    ADE_DIR,
    remember,
    resolve_root,
    synth_ade20k,
    validate_ade20k_split,
)
from methods.errors import DataError


@pytest.fixture
def ade(ade20k_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic set (its ADEChallengeData2016 folder), free to damage."""
    return Path(shutil.copytree(ade20k_root, tmp_path / ADE_DIR))


def test_synth_writes_ade20k_layout(ade20k_root: Path):
    assert ade20k_root.name == ADE_DIR
    train = validate_ade20k_split(ade20k_root, "training")
    val = validate_ade20k_split(ade20k_root, "validation")
    assert (train.n_images, val.n_images) == (8, 4)
    assert train.classes_present == val.classes_present == (1, 3, 4, 5)  # wall, sky, floor, tree
    names = sorted(p.name for p in (ade20k_root / "images" / "training").iterdir())
    assert names[0] == "ADE_train_00000001.jpg" and len(names) == 8
    assert (ade20k_root / "annotations" / "validation" / "ADE_val_00000001.png").is_file()
    for img in (ade20k_root / "images" / "training").iterdir():
        with Image.open(img) as im, Image.open(ade20k_root / "annotations" / "training" / (img.stem + ".png")) as lab:
            assert im.mode == "RGB" and lab.mode == "L" and im.size == lab.size
            assert im.size[0] % 32 and im.size[1] % 32  # odd sizes: padding and resizing are exercised
            values = set(np.unique(np.asarray(lab)).tolist())
            assert 0 in values and values <= {0, 1, 3, 4, 5}  # some "other" (ignored) in every image


def test_synth_is_deterministic_and_root_is_found_from_the_parent(tmp_path: Path):
    a, b = synth_ade20k(tmp_path / "a", seed=3), synth_ade20k(tmp_path / "b", seed=3)
    for rel in ("images/training/ADE_train_00000002.jpg", "annotations/validation/ADE_val_00000003.png"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert resolve_root(tmp_path / "a") == a and resolve_root(a) == a
    with pytest.raises(DataError, match=r"not ADE20K's layout: expected ADEChallengeData2016/images/<split>"):
        resolve_root(tmp_path)


def _label(ade: Path, stem: str = "ADE_train_00000002", split: str = "training") -> Path:
    return ade / "annotations" / split / f"{stem}.png"


def _image(ade: Path, stem: str = "ADE_train_00000002", split: str = "training") -> Path:
    return ade / "images" / split / f"{stem}.jpg"


def _rewrite_label(path: Path, fn) -> None:
    arr = np.asarray(Image.open(path)).copy()
    fn(arr)
    Image.fromarray(arr, "L").save(path)


def test_label_outside_the_classes(ade: Path):
    path = _label(ade)
    _rewrite_label(path, lambda a: a.__setitem__((0, 0), 151))
    with pytest.raises(
        DataError, match=rf"{path.name}: label values \[151\] outside 0-150 \(0 = other, 255 = ignore\)"
    ):
        validate_ade20k_split(ade, "training")
    _rewrite_label(path, lambda a: a.__setitem__((0, 0), 255))  # 255 is an explicit ignore value: accepted
    validate_ade20k_split(ade, "training")


def test_unpaired_files(ade: Path):
    _label(ade).unlink()
    with pytest.raises(DataError, match=r"ADE_train_00000002\.jpg: no label map .*ADE_train_00000002\.png"):
        validate_ade20k_split(ade, "training")
    _image(ade).unlink()
    extra = ade / "annotations" / "validation" / "ADE_val_00000099.png"
    Image.new("L", (8, 8)).save(extra)
    with pytest.raises(DataError, match=r"ADE_val_00000099\.png: no image .*ADE_val_00000099\.jpg"):
        validate_ade20k_split(ade, "validation")


def test_size_mismatch(ade: Path):
    path = _label(ade)
    Image.open(path).resize((50, 40)).save(path)
    with pytest.raises(DataError, match=rf"{path.name}: label map is 50x40 but its image ADE_train_00000002\.jpg"):
        validate_ade20k_split(ade, "training")


def test_missing_split_folder(ade: Path):
    shutil.rmtree(ade / "annotations" / "validation")
    with pytest.raises(DataError, match=r"annotations/validation: split folder not found"):
        validate_ade20k_split(ade, "validation")


def test_cmyk_refused_grayscale_converted(ade: Path):
    path = _image(ade)
    rgb = Image.open(path).convert("RGB")
    rgb.convert("CMYK").save(path)
    with pytest.raises(DataError, match=rf"{path.name}: CMYK JPEG; .*convert it to RGB"):
        validate_ade20k_split(ade, "training")
    rgb.convert("L").save(path)  # grayscale: mmcv decodes it to 3 equal channels, counted in the record
    assert validate_ade20k_split(ade, "training").skipped == {"grayscale_converted": 1}


def test_rgb_label_map_and_unreadable_image(ade: Path):
    path = _label(ade)
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(DataError, match=rf"{path.name}: label map of mode RGB; expected an 8-bit single-channel PNG"):
        validate_ade20k_split(ade, "training")
    img = _image(ade, "ADE_val_00000001", "validation")
    img.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=rf"{img.name}: not a readable image"):
        validate_ade20k_split(ade, "validation")


def test_a_remembered_check_is_not_repeated_and_file_changes_invalidate_it(
    ade: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import benchmarks.data.ade20k as mod

    cache = tmp_path / "work"
    split = validate_ade20k_split(ade, "training", cache_dir=cache)
    assert not cache.exists()  # validation writes nothing; the harness remembers a pass explicitly
    remember(split, cache)
    monkeypatch.setattr(mod, "_check_pair", lambda *a: pytest.fail("decoded again"))
    assert validate_ade20k_split(ade, "training", cache_dir=cache) == split
    _rewrite_label(_label(ade), lambda a: a.__setitem__((0, slice(None)), 200))  # new size: new fingerprint
    with pytest.raises(pytest.fail.Exception, match="decoded again"):
        validate_ade20k_split(ade, "training", cache_dir=cache)


def test_cli_synth_and_bad_data_fails_before_training_with_nothing_written(tmp_path: Path, capsys):
    """Through ``vitbench run`` (no mm* needed: the data is checked before the engine is imported)."""
    from benchmarks.cli import main

    assert main(["data", "synth", "ade20k", "--out", str(tmp_path / "d")]) == 0
    assert f"to {tmp_path / 'd' / ADE_DIR}" in capsys.readouterr().out
    ade = tmp_path / "d" / ADE_DIR
    _rewrite_label(_label(ade, "ADE_val_00000002", "validation"), lambda a: a.__setitem__((1, 1), 160))
    out = tmp_path / "results"
    argv = ["run", "--method", "selfpatch", "--task", "ade20k-semfpn-40k", "--data", str(tmp_path / "d")]
    argv += ["--weights", "random", "--smoke", "--out", str(out), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ADE_val_00000002.png: label values [160] outside 0-150" in err[0]
    assert not out.exists()
