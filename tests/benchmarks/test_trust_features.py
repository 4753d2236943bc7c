"""Issue 10, "publish no wrong number", on the feature path: non-finite features (1b), a stale feature cache (4),
degenerate data (6a/6b) and a full disk (10). Every hostile input is generated here."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import features
from benchmarks.catalog import get_task
from benchmarks.classification import common
from benchmarks.classification.knn import KnnHarness, KnnProtocol
from benchmarks.classification.linear import LinearHarness, LinearProtocol
from benchmarks.data.imagefolder import scan_split, synth_imagefolder
from benchmarks.features import FeatureKey, extract
from benchmarks.harness import RunContext
from benchmarks.probe.data import EvalTransform, ProbeDataset, load_rgb
from benchmarks.records import atomic_write_text
from methods.errors import DataError, VitbenchError

T32 = EvalTransform(32, 1.0, "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _means(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"global": x.mean(dim=(2, 3))}


def _key(ds: ProbeDataset) -> FeatureKey:
    return FeatureKey("w", ds.split.fingerprint(), ds.split.name, T32.desc, "global")


def _run(ds: ProbeDataset, cache: Path, fn=_means, **kw) -> dict[str, np.ndarray]:  # noqa: ANN001
    return extract(fn, ds, _key(ds), cache_dir=cache, device="cpu", batch_size=4, num_workers=0, progress=False, **kw)


@pytest.fixture()
def small(tmp_path: Path) -> ProbeDataset:
    root = synth_imagefolder(tmp_path / "d", seed=3, n_classes=2, n_train=6, n_val=2, size=32)
    return ProbeDataset(scan_split(root, "train"), T32)


# ------------------------------------------------------------------------------------------------ 1b non-finite
def test_non_finite_batch_is_refused_naming_it_and_nothing_is_cached(small: ProbeDataset, tmp_path: Path) -> None:
    calls = []

    def nan_second_batch(x: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(len(x))
        out = _means(x)
        if len(calls) == 2:
            out["global"][1, 0] = float("nan")
        return out

    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        _run(small, cache, nan_second_batch, flush_every=1)
    msg = str(err.value)
    assert "\n" not in msg and "non-finite" in msg and "images 4-7" in msg
    assert small.split.paths[4].name in msg
    folder = cache / _key(small).digest()
    assert not folder.exists()  # nothing complete was cached
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():  # what stays for resume is finite and covers only the batches before the bad one
        arr = np.load(partial / "global.npy")
        import json

        done = json.loads((partial / "progress.json").read_text())["done"]
        assert done == 4 and np.isfinite(arr[:done]).all()
    out = _run(small, cache)  # a good run resumes and completes
    assert np.isfinite(np.asarray(out["global"])).all() and len(out["global"]) == len(small)


def test_inf_in_first_batch_leaves_no_partial(small: ProbeDataset, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="images 0-3"):
        _run(small, cache, lambda x: {"global": torch.full((len(x), 3), float("inf"))})
    assert not any(cache.iterdir()) if cache.exists() else True


# ------------------------------------------------------------------------------------------------ 4 stale cache
def _bmp_set(root: Path, seed: int) -> Path:
    """Uncompressed BMPs: the byte size depends only on the image size, so pixels can change at equal sizes."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                px = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(px).save(root / split / c / f"{i}.bmp")
    return root


def test_equal_sizes_and_labels_but_other_pixels_do_not_share_features(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    a = ProbeDataset(scan_split(_bmp_set(tmp_path / "a", 0), "train"), T32)
    b = ProbeDataset(scan_split(_bmp_set(tmp_path / "b", 1), "train"), T32)
    assert a.split.fingerprint() == b.split.fingerprint()  # paths, sizes and labels agree
    cache = tmp_path / "cache"
    fa = np.asarray(_run(a, cache)["global"]).copy()
    fb = np.asarray(_run(b, cache)["global"]).copy()
    truth_b = np.asarray(_run(b, None)["global"])  # no cache: what b's pixels give
    assert not np.allclose(fa, fb)
    np.testing.assert_array_equal(fb, truth_b)
    assert "other image contents" in capsys.readouterr().err
    calls = []
    again = _run(b, cache, lambda x: calls.append(1) or _means(x))  # same content: reused, no forward pass
    assert calls == [] and np.array_equal(np.asarray(again["global"]), fb)


def test_the_hash_is_taken_while_extracting_and_a_changed_file_restarts_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = ProbeDataset(scan_split(_bmp_set(tmp_path / "a", 0), "train"), T32)
    cache = tmp_path / "cache"
    reads: list[int] = []
    real = features.content_digest
    monkeypatch.setattr(features, "content_digest", lambda paths, **kw: reads.append(len(paths)) or real(paths))
    _run(ds, cache)
    assert reads == []  # no separate pass over the files: the workers hashed what they read
    meta = __import__("json").loads((cache / _key(ds).digest() / "meta.json").read_text())
    assert meta["content"] == real(ds.split.paths)  # what a reuse recomputes
    _run(ds, cache)
    assert reads == [len(ds)]  # a reuse reads the files once to verify them

    calls = []

    def stop_after_first(x: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _means(x)

    other = tmp_path / "cache2"
    with pytest.raises(KeyboardInterrupt):
        _run(ds, other, stop_after_first, flush_every=1)
    partial = other / (_key(ds).digest() + ".partial")
    assert __import__("json").loads((partial / "progress.json").read_text())["done"] == 4
    px = np.asarray(Image.open(ds.split.paths[0])).copy()
    px[0, 0] ^= 0xFF  # a file already extracted changes (same size)
    Image.fromarray(px).save(ds.split.paths[0])
    redo = []
    out = _run(ds, other, lambda x: redo.append(len(x)) or _means(x))
    assert sum(redo) == len(ds)  # started over, not resumed
    truth = _run(ProbeDataset(scan_split(tmp_path / "a", "train"), T32), None)
    np.testing.assert_array_equal(np.asarray(out["global"]), np.asarray(truth["global"]))


def test_content_digest_sees_a_single_changed_byte(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"\0" * 5000)
    before = features.content_digest([f])
    f.write_bytes(b"\0" * 4999 + b"\1")
    assert features.content_digest([f]) != before


# ------------------------------------------------------------------------------------------------ 6a degenerate
def _ctx(task: str, data: Path, work: Path) -> RunContext:
    from methods import build_encoder

    enc = build_encoder("dino:vits16", weights="random")
    return RunContext(task=get_task(task), encoder=enc, data_root=data, work_dir=work, progress=False)


def test_one_class_dataset_is_refused_naming_the_folder(tmp_path: Path) -> None:
    root = synth_imagefolder(tmp_path / "one", seed=0, n_classes=2, n_train=3, n_val=2, size=16)
    for split in ("train", "val"):
        for p in (root / split / "class_1_square").iterdir():
            p.unlink()
        (root / split / "class_1_square").rmdir()
    with pytest.raises(DataError, match="at least 2 classes") as err:
        common.load_splits(root)
    assert str(root / "train") in str(err.value) and "\n" not in str(err.value)


def test_knn_refuses_a_train_split_smaller_than_the_headline_k(tmp_path: Path) -> None:
    root = synth_imagefolder(tmp_path / "d", seed=0, n_classes=2, n_train=3, n_val=2, size=16)
    with pytest.raises(DataError, match="6 train images, fewer than the 20") as err:
        KnnHarness(get_task("knn")).run(_ctx("knn", root, tmp_path / "w"), KnnProtocol.smoke())
    assert str(root / "train") in str(err.value)


def test_linear_refuses_a_class_with_one_image(tmp_path: Path) -> None:
    root = synth_imagefolder(tmp_path / "d", seed=0, n_classes=2, n_train=1, n_val=2, size=16)
    with pytest.raises(DataError, match="held out") as err:
        LinearHarness(get_task("linear")).run(_ctx("linear", root, tmp_path / "w"), LinearProtocol.smoke())
    assert str(root / "train" / "class_0_disc") in str(err.value)
    two_each = synth_imagefolder(tmp_path / "ok", n_classes=2, n_train=2, size=16)
    common.require_per_class(scan_split(two_each, "train"), 2, "")  # 2 a class is enough


# ------------------------------------------------------------------------------------------------ 6b 16-bit
def test_16bit_png_is_scaled_by_its_depth_not_saturated(tmp_path: Path) -> None:
    grad = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    Image.fromarray(grad).save(tmp_path / "grad.png")
    with Image.open(tmp_path / "grad.png") as img:
        assert img.mode.startswith("I")  # really a 16-bit image
    rgb = np.asarray(load_rgb(tmp_path / "grad.png"))
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grad >> 8)

    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "d" / split / c).mkdir(parents=True)
            Image.fromarray(np.full((32, 32), 0x8000, dtype=np.uint16)).save(tmp_path / "d" / split / c / "x.png")
    ds = ProbeDataset(scan_split(tmp_path / "d", "train"), T32)
    x, _ = ds[0]  # what the encoder receives (mean 0, std 1: pixel / 255)
    assert torch.allclose(x, torch.full_like(x, 128 / 255), atol=1e-3)  # saturation would give 1.0


# ------------------------------------------------------------------------------------------------ 10 disk full
def _enospc(*a, **k):  # noqa: ANN002, ANN003, ANN202
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_cache_disk_is_one_line_and_leaves_nothing(small: ProbeDataset, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    cache = tmp_path / "cache"
    monkeypatch.setattr(features.os, "posix_fallocate", _enospc)
    with pytest.raises(VitbenchError) as err:
        _run(small, cache)
    msg = str(err.value)
    assert "\n" not in msg and "no space left" in msg and str(cache) in msg and "needs" in msg
    assert not cache.exists() or not any(cache.iterdir())  # no half-written partial


def test_cache_space_is_reserved_not_sparse(small: ProbeDataset, tmp_path: Path) -> None:
    arrays = features._allocate(tmp_path / "p.partial", {"global": np.zeros((1, 4096), np.float16)}, 64)
    path = tmp_path / "p.partial" / "global.npy"
    assert os.stat(path).st_blocks * 512 >= path.stat().st_size
    del arrays


def test_full_out_disk_on_record_write(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    out = tmp_path / "out" / "r.json"
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(VitbenchError) as err:
        atomic_write_text(out, "{}" * 100)
    msg = str(err.value)
    assert "\n" not in msg and str(out.parent) in msg and "200 bytes" in msg
    assert list(out.parent.iterdir()) == []  # no temp file, no record


class _Bands(torch.utils.data.Dataset):
    """Samples of two band files each (BigEarthNet's layout: ``split.paths[i]`` names the sample's folder, its
    ``split.source.files(i)`` are what is read); ``indices``: the dataset covers part of its split."""

    def __init__(self, root: Path, n: int, indices: list[int] | None = None) -> None:
        class Source:
            def files(self, i: int) -> list[Path]:
                return [root / f"s{i}" / "B02.npy", root / f"s{i}" / "B03.npy"]

        class Split:
            paths = [root / f"s{i}" for i in range(n)]
            source = Source()

        self.split, self.indices = Split(), indices if indices is not None else list(range(n))

    def content_digest(self) -> str:
        return "declared"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        a, b = (np.load(f) for f in self.split.source.files(self.indices[i]))
        return torch.from_numpy(np.stack([a, b])).float(), 0


def _band_set(root: Path, n: int, value: float) -> None:
    for i in range(n):
        (root / f"s{i}").mkdir(parents=True, exist_ok=True)
        np.save(root / f"s{i}" / "B02.npy", np.full((4, 4), float(i), dtype=np.float32))
        np.save(root / f"s{i}" / "B03.npy", np.full((4, 4), value + i, dtype=np.float32))


@pytest.mark.parametrize("indices", [None, [4, 1, 2]])
def test_every_file_of_a_multi_file_sample_keys_the_cache(tmp_path: Path, indices: list[int] | None) -> None:
    """A band file other than the one ``split.paths`` names changes (same size): the cache re-extracts; a dataset
    over part of its split hashes the files of its own items."""
    root = tmp_path / "bands"
    _band_set(root, 5, 10.0)
    ds = _Bands(root, 5, indices)
    key = FeatureKey("w", "same-fingerprint", "train", "bands", "global")

    def run() -> np.ndarray:
        out = extract(
            _means, ds, key, cache_dir=tmp_path / "c", device="cpu", batch_size=2, num_workers=0, progress=False
        )
        return np.asarray(out["global"]).copy()

    first = run()
    want = [[float(i), 10.0 + i] for i in (indices or range(5))]
    np.testing.assert_array_equal(first, np.asarray(want, dtype=np.float16))
    _band_set(root, 5, 20.0)  # every B03 changes, the folders and B02 do not
    second = run()
    np.testing.assert_array_equal(second, np.asarray([[a, b + 10.0] for a, b in want], dtype=np.float16))
