"""ImageNet class orders and layouts: the embedded lists against timm's and the authors' facts, the devkit -> wnid
mapping of the flat val, the robustness sets' folders, and one-line errors for data that is not what a 1000-way head
scores."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from benchmarks.catalog import IMAGENET_1K_VAL, IMAGENET_A, IMAGENET_R
from benchmarks.data import imagenet as layouts
from benchmarks.data.imagenet_classes import (
    DEVKIT_WNIDS,
    IMAGENET_A_WNIDS,
    IMAGENET_R_WNIDS,
    INDEX,
    SHA256,
    WNIDS,
    classes_sha256,
)
from benchmarks.synth import synth
from methods.errors import DataError, VitbenchError


def _timm_list(name: str) -> list[str]:
    return (files("timm.data") / "_info" / name).read_text().split()


# ------------------------------------------------------------------------------------------------ class orders
def test_sorted_wnids_are_timms_list_and_pinned() -> None:
    assert list(WNIDS) == _timm_list("imagenet_synsets.txt") == sorted(set(WNIDS)) and len(WNIDS) == 1000
    raw = (files("timm.data") / "_info" / "imagenet_synsets.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == "70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15"
    for key, classes in (
        ("imagenet-1k", WNIDS),
        ("devkit", DEVKIT_WNIDS),
        ("imagenet-a", IMAGENET_A_WNIDS),
        ("imagenet-r", IMAGENET_R_WNIDS),
    ):
        assert classes_sha256(classes) == SHA256[key]
    assert IMAGENET_1K_VAL.classes_sha256 == SHA256["imagenet-1k"]
    assert (IMAGENET_A.classes_sha256, IMAGENET_R.classes_sha256) == (SHA256["imagenet-a"], SHA256["imagenet-r"])


def test_devkit_order_against_published_facts() -> None:
    """The devkit ids are a permutation of the 1000 wnids; meta.mat's first synsets are kit fox, English setter,
    Siberian husky; and the first val ground-truth ids (490, 361, 171, 822, 297, 482) land on the sorted indices that
    Caffe's val.txt gives ILSVRC2012_val_00000001..6 (65 sea snake, 970, 230, 809, 516, 57)."""
    assert sorted(DEVKIT_WNIDS) == list(WNIDS)
    assert DEVKIT_WNIDS[:3] == ("n02119789", "n02100735", "n02110185")
    assert [INDEX[DEVKIT_WNIDS[i - 1]] for i in (490, 361, 171, 822, 297, 482)] == [65, 970, 230, 809, 516, 57]
    assert WNIDS[65] == "n01751748"  # sea snake


def test_200_class_subsets_are_the_authors() -> None:
    """ImageNet-A's ``indices_in_1k`` and ImageNet-R's mask (their eval.py), as timm ships them."""
    assert list(IMAGENET_A_WNIDS) == _timm_list("imagenet_a_synsets.txt")
    assert list(IMAGENET_R_WNIDS) == _timm_list("imagenet_r_synsets.txt")
    assert [INDEX[w] for w in IMAGENET_A_WNIDS] == [int(i) for i in _timm_list("imagenet_a_indices.txt")]
    assert [INDEX[w] for w in IMAGENET_R_WNIDS] == [int(i) for i in _timm_list("imagenet_r_indices.txt")]
    assert [INDEX[w] for w in IMAGENET_A_WNIDS][:5] == [6, 11, 13, 15, 17]  # natural-adv-examples thousand_k_to_200


# ------------------------------------------------------------------------------------------------ val layouts
@pytest.fixture(scope="module")
def synth_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("imagenet", tmp_path_factory.mktemp("imagenet"), seed=0)


def test_flat_val_maps_devkit_ids_like_the_imagefolder(synth_in: Path) -> None:
    folder, layout_a = layouts.scan_imagenet_val(synth_in)
    flat, layout_b = layouts.scan_imagenet_val(synth_in / "flat")
    assert (layout_a, layout_b) == ("imagefolder", "flat+devkit")
    by_name = {p.name: int(t) for p, t in zip(folder.paths, folder.targets)}
    assert {p.name: int(t) for p, t in zip(flat.paths, flat.targets)} == by_name and len(by_name) == 12
    assert {p.name: WNIDS[int(t)] for p, t in zip(folder.paths, folder.targets)} == {
        p.name: p.parent.name for p in folder.paths
    }
    assert folder.classes == flat.classes == WNIDS
    # The synthetic val numbers are shuffled across classes: file order is not class order.
    flat_labels = [int(t) for _, t in sorted(zip(flat.paths, flat.targets))]
    assert flat_labels != sorted(flat_labels)


def _flat(root: Path, lines: list[str], images: list[str]) -> Path:
    (root / "val").mkdir(parents=True)
    (root / layouts.GROUND_TRUTH).write_text("".join(f"{x}\n" for x in lines))
    for name in images:
        (root / "val" / name).write_bytes(b"")  # scanning reads names only
    return root


def test_flat_val_by_hand(tmp_path: Path) -> None:
    """Ground truth at the root works too; line n labels ILSVRC2012_val_<n>: 490 -> sea snake (65), 1 -> kit fox,
    1000 -> dumbbell (the devkit's last id), each at its *sorted* index."""
    root = _flat(tmp_path, ["490", "1", "1000"], [f"ILSVRC2012_val_{n:08d}.JPEG" for n in (3, 1, 2)])
    split, _ = layouts.scan_imagenet_val(root)
    got = {p.name: int(t) for p, t in zip(split.paths, split.targets)}
    assert got == {
        "ILSVRC2012_val_00000001.JPEG": 65,
        "ILSVRC2012_val_00000002.JPEG": INDEX["n02119789"],
        "ILSVRC2012_val_00000003.JPEG": INDEX["n03255030"],
    }


@pytest.mark.parametrize(
    ("lines", "images", "message"),
    [
        (["490", "abc"], ["ILSVRC2012_val_00000001.JPEG"], r"line 2 is 'abc', expected an ILSVRC2012_ID in 1..1000"),
        (["490", "1001"], ["ILSVRC2012_val_00000001.JPEG"], r"line 2 is '1001'"),
        (["490"], ["ILSVRC2012_val_00000002.JPEG"], r"image 2, but .* has 1 lines"),
        (["490"], ["val_0001.JPEG"], r"not an ILSVRC2012_val_<8 digits>.JPEG name"),
    ],
)
def test_flat_val_errors(tmp_path: Path, lines: list[str], images: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        layouts.scan_imagenet_val(_flat(tmp_path, lines, images))


def test_flat_val_without_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"flat val images but no ground truth: put the devkit's .*ILSVRC2012_devkit_t12"
    ):
        layouts.scan_imagenet_val(tmp_path)


def test_val_folders_that_are_not_wnids(imagefolder: Path) -> None:
    with pytest.raises(DataError, match=r"class folders class_0_disc, .* are not ImageNet-1k wnids; .*--task linear"):
        layouts.scan_imagenet_val(imagefolder)


def test_val_with_both_layouts(synth_in: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(synth_in / "val", tmp_path / "val")
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    with pytest.raises(DataError, match="holds both class folders"):
        layouts.scan_imagenet_val(tmp_path)


# ------------------------------------------------------------------------------------------------ robustness sets
def test_imagenetv2_folders_are_integer_class_indices(tmp_path: Path) -> None:
    root = synth("imagenetv2", tmp_path / "v2")
    split = layouts.scan_imagenetv2(root)
    assert {int(t) for t in split.targets} == {6, 11, 13, 22}
    assert all(int(t) == int(p.parent.name) for p, t in zip(split.paths, split.targets))
    text_sorted = sorted(p.name for p in root.iterdir())  # what an ImageFolder would index: '11', '13', '22', '6'
    assert text_sorted == ["11", "13", "22", "6"]


def test_imagenet_a_and_r_folders(tmp_path: Path) -> None:
    a = layouts.scan_imagenet_a(synth("imagenet-a", tmp_path / "a"))  # README.txt next to the folders is ignored
    r = layouts.scan_imagenet_r(synth("imagenet-r", tmp_path / "r"))
    assert sorted({WNIDS[int(t)] for t in a.targets}) == list(layouts.SYNTH_WNIDS) and len(a) == len(r) == 12
    (tmp_path / "a" / "n01440764").mkdir()  # tench: an ImageNet class, but not one of ImageNet-A's 200
    with pytest.raises(DataError, match=r"n01440764 are not imagenet-a wnids; pass the imagenet-a folder itself"):
        layouts.scan_imagenet_a(tmp_path / "a")


def test_imagenet_c_layout(tmp_path: Path) -> None:
    root = synth("imagenet-c", tmp_path / "c")
    splits = layouts.scan_imagenet_c(root, ("fog", "speckle_noise"), (1, 5))
    assert [s.name for s in splits] == ["fog/1", "fog/5", "speckle_noise/1", "speckle_noise/5"]
    assert all(np.array_equal(np.sort(s.targets), [6, 11, 13, 22]) for s in splits)
    import shutil

    shutil.rmtree(root / "fog" / "5")
    with pytest.raises(DataError, match=r"fog/5: missing \(ImageNet-C extracts to ROOT/<corruption>/<severity 1-5>"):
        layouts.scan_imagenet_c(root, ("fog",), (1, 5))


def test_imagenet_c_protocol_refuses_unknown_corruptions() -> None:
    from benchmarks.catalog import get_task

    with pytest.raises(VitbenchError, match="fgo is not an ImageNet-C corruption"):
        get_task("imagenet-c").protocol_for(smoke=False, overrides={"corruptions": ["fgo"]})
    with pytest.raises(VitbenchError, match="severities are 1..5"):
        get_task("imagenet-c").protocol_for(smoke=False, overrides={"severities": [0]})
