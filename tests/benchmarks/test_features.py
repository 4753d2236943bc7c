"""Feature cache: one forward pass per (weights, data, transform); interrupted extraction resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from benchmarks.features import FeatureKey, extract


class _Toy(Dataset):
    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if i == self.fail_at:
            raise RuntimeError("interrupted")
        return torch.full((3, 2, 2), float(i)), i % 3


KEY = FeatureKey("w", "fp", "train", "t", "global")


def _fn(calls: list[int]):
    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(len(x))
        return {"global": x.flatten(1)[:, :2] * 2}

    return fn


def test_second_extraction_hits_the_cache(tmp_path: Path) -> None:
    calls: list[int] = []
    a = extract(_fn(calls), _Toy(10), KEY, cache_dir=tmp_path, device="cpu", batch_size=4, num_workers=0)
    assert sum(calls) == 10
    b = extract(_fn(calls), _Toy(10), KEY, cache_dir=tmp_path, device="cpu", batch_size=4, num_workers=0)
    assert sum(calls) == 10, "cached features must not run the model again"
    assert np.array_equal(a["global"], b["global"]) and b["global"].dtype == np.float16
    assert list(b["labels"]) == [i % 3 for i in range(10)]
    other = FeatureKey("w", "fp", "train", "t2", "global")  # another transform is another cache entry
    extract(_fn(calls), _Toy(10), other, cache_dir=tmp_path, device="cpu", batch_size=4, num_workers=0)
    assert sum(calls) == 20


def test_interrupted_extraction_resumes(tmp_path: Path) -> None:
    calls: list[int] = []
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(
            _fn(calls),
            _Toy(12, fail_at=9),
            KEY,
            cache_dir=tmp_path,
            device="cpu",
            batch_size=2,
            num_workers=0,
            flush_every=1,
        )
    assert sum(calls) == 8  # four batches done and checkpointed before the failing one
    calls.clear()
    out = extract(_fn(calls), _Toy(12), KEY, cache_dir=tmp_path, device="cpu", batch_size=2, num_workers=0)
    assert sum(calls) == 4, "only the unfinished images are extracted again"
    assert np.array_equal(out["global"][:, 0], np.arange(12, dtype=np.float16) * 2)


def test_random_weights_of_two_methods_with_one_arch_never_share_a_cache_entry() -> None:
    """DINO and SelfPatch are both timm ``vit_small_patch16_224``: keyed by arch alone, SelfPatch's smoke records
    were computed from DINO's cached features (the committed ones were, until this test)."""
    from methods import build_encoder

    dino, selfpatch = (build_encoder(m, weights="random").identity for m in ("dino:vits16", "selfpatch:vits16"))
    assert dino.arch == selfpatch.arch
    assert dino.weights_id != selfpatch.weights_id
    assert build_encoder("dino:vits16", weights="random", seed=1).identity.weights_id != dino.weights_id


def test_an_fp32_key_hashes_as_before_precision_joined_the_key() -> None:
    import hashlib
    import json

    old = {"weights_id": "w", "dataset_fingerprint": "fp", "split": "train", "transform": "t", "what": "global"}
    assert KEY.digest() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:24]
    assert FeatureKey(**old, precision="bf16").digest() != KEY.digest()


def test_bf16_extraction_is_its_own_cache_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``VITBENCH_AMP=bf16`` runs the forward under bf16 autocast (here on the CPU) into a cache entry of its own,
    so fp32 features are never reused as bf16 ones, nor the other way round."""
    lin = torch.nn.Linear(12, 4)
    torch.nn.init.normal_(lin.weight)
    dtypes: list[torch.dtype] = []

    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = lin(x.flatten(1) / 7)
        dtypes.append(out.dtype)
        return {"global": out}

    kw = {"cache_dir": tmp_path, "device": "cpu", "batch_size": 4, "num_workers": 0}
    fp32 = extract(fn, _Toy(10), KEY, **kw)
    monkeypatch.setenv("VITBENCH_AMP", "bf16")
    bf16 = extract(fn, _Toy(10), KEY, **kw)
    assert dtypes == [torch.float32] * 3 + [torch.bfloat16] * 3  # the second call did not hit the fp32 entry
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    a, b = np.asarray(fp32["global"], np.float32), np.asarray(bf16["global"], np.float32)
    assert np.isfinite(b).all() and not np.array_equal(a, b)
    np.testing.assert_allclose(b, a, rtol=0.05, atol=0.05)  # bf16 keeps 8 bits of mantissa


@pytest.mark.parametrize(("value", "device", "needle"), [("fp8", "cpu", "expected one of"), ("fp16", "cpu", "CUDA")])
def test_a_wrong_precision_is_refused(value: str, device: str, needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.precision import extraction_precision

    monkeypatch.setenv("VITBENCH_AMP", value)
    with pytest.raises(ValueError, match=needle):
        extraction_precision(device)
    monkeypatch.setenv("VITBENCH_AMP", "auto")
    assert extraction_precision("cpu") == "fp32" and extraction_precision("cuda:1") == "fp16"
