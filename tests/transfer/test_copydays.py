"""Copydays copy detection: the Holidays AP on fixed rankings by hand, whitening, the layout's refusals, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.cli import main
from benchmarks.data.copydays import scan_copydays
from benchmarks.transfer.copydays import gem
from benchmarks.transfer.retrieval import Whitening, mean_ap, score_ap_from_ranks, search
from methods.errors import DataError


@pytest.fixture(scope="module")
def copydays(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benchmarks.synth import synth

    return synth("copydays", tmp_path_factory.mktemp("copydays"), seed=0)


# ------------------------------------------------------------------------------------------------ by hand
def test_holidays_ap_by_hand() -> None:
    """Trapezoids of width 1/n between the precision before and after each found positive."""
    assert score_ap_from_ranks([0], 1) == 1.0
    # Found at ranks 0 and 2 of 2: (1 + 1)/2 * 1/2 + (1/2 + 2/3)/2 * 1/2 = 0.5 + 0.291666...
    assert score_ap_from_ranks([0, 2], 2) == pytest.approx(0.5 + (0.5 + 2 / 3) / 4)
    # One positive at rank 3: before = 0/3 = 0, after = 1/4 -> (0 + 1/4) / 2 = 1/8.
    assert score_ap_from_ranks([3], 1) == pytest.approx(1 / 8)
    # Two positives, one beyond the returned list: only the found one's trapezoid, at width 1/2: (1 + 1)/2 * 1/2.
    assert score_ap_from_ranks([0], 2) == pytest.approx(0.5)
    assert score_ap_from_ranks([], 3) == 0.0


def test_mean_ap_on_a_fixed_ranking() -> None:
    ranked = np.array([[4, 0, 2], [1, 3, 0], [2, 1, 0]])  # database indices, best first
    positives = [(0,), (1, 3), (5,)]  # query 2's positive was not returned
    # q0: rank 1 -> (0 + 1/2)/2 = 1/4; q1: ranks 0, 1 of 2 -> 1/2 + 1/2 = 1; q2: 0.
    assert mean_ap(ranked, positives) == pytest.approx(100 * (0.25 + 1.0 + 0.0) / 3)


def test_search_is_cosine_top_k() -> None:
    db = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    q = np.array([[3.0, 0.1], [0.0, -1.0]])
    # Query 1 = (0, -1): cosines 0, -1, -0.71 with the three rows.
    np.testing.assert_array_equal(search(q, db, k=2), [[0, 2], [0, 2]])
    assert search(q, db, k=10).shape == (2, 3)


def test_whitening_is_dinos_pca() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)) @ np.diag([5.0, 2.0, 1.0, 0.1]) + 3.0
    w = Whitening.fit(x, power=0.5)
    np.testing.assert_allclose(w.mean, x.mean(axis=0))
    # The eigenvectors are those of the *uncentred* second moment, as DINO's script computes it.
    second = x.T @ x / len(x)
    vals, vecs = np.linalg.eigh(second)
    np.testing.assert_allclose(np.abs(w.projection), np.abs((vecs / np.sqrt(vals)).T[::-1]), rtol=1e-8)
    assert Whitening.fit(x, power=0.5, dim=2).projection.shape == (2, 4)
    # Centred data: the whitened second moment is the identity.
    xc = x - x.mean(axis=0)
    z = Whitening.fit(xc)(xc)
    np.testing.assert_allclose(z.T @ z / len(z), np.eye(4), atol=1e-8)
    # Rank-deficient data: eigenvalues are clamped at 1e-5 x the largest instead of dividing by zero.
    assert np.isfinite(Whitening.fit(np.repeat(x[:, :1], 3, axis=1)).projection).all()


def test_gem_by_hand() -> None:
    patches = torch.tensor([1.0, 2.0, -5.0, 0.0]).reshape(1, 1, 2, 2)  # clamped to (1, 2, 1e-6, 1e-6)
    want = ((1 + 16 + 2e-24) / 4) ** 0.25
    torch.testing.assert_close(gem(patches, 4.0), torch.tensor([[want]]))
    assert torch.isfinite(gem(torch.full((1, 1, 2, 2), 40.0).half(), 4.0)).all()  # 40^4 overflows fp16


# ------------------------------------------------------------------------------------------------ bad input
def _copy(copydays: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copydays"
    shutil.copytree(copydays, root)
    return root


def test_layout_scan(copydays: Path) -> None:
    data = scan_copydays(copydays)
    strong = data.queries[0]
    assert strong.name == "strong" and len(strong.images) == 12 and len(data.originals) == 8
    names = [p.name for p in strong.images.paths]
    assert strong.positives[names.index("200301.jpg")] == (3,)  # 2003xx -> original 200300.jpg
    assert [q.metric for q in data.queries] == ["mAP", "mAP_original", "mAP_jpegqual_50"]
    assert data.sizes() == {"original": 8, "strong": 12, "jpegqual/50": 8, "distractors": 24, "whitening": 40}


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (lambda r: (r / "strong" / "200001.jpg").rename(r / "strong" / "999901.jpg"), r"999901\.jpg: no original"),
        (lambda r: (r / "jpegqual" / "50" / "200000.jpg").unlink(), r"jpegqual/50: 7 images, but its copies map 1:1"),
        (lambda r: shutil.rmtree(r / "distractors"), r"distractors: missing distractor folder"),
        (lambda r: shutil.rmtree(r / "strong"), r"strong: missing Copydays block"),
    ],
)
def test_bad_layouts_are_refused_naming_the_file(copydays: Path, tmp_path: Path, breakage, needle: str) -> None:  # noqa: ANN001
    root = _copy(copydays, tmp_path)
    breakage(root)
    with pytest.raises(DataError, match=needle):
        scan_copydays(root)


def test_whitening_folder_only_needed_when_whitening(copydays: Path, tmp_path: Path) -> None:
    root = _copy(copydays, tmp_path)
    shutil.rmtree(root / "whitening")
    with pytest.raises(DataError, match="whitening: missing whitening folder"):
        scan_copydays(root)
    assert scan_copydays(root, whitening=False).whitening is None


# ------------------------------------------------------------------------------------------------ end to end
def test_smoke_run_writes_a_valid_record(copydays: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "results"
    argv = ["run", "--method", "dino", "--task", "copydays-copy-detection", "--data", str(copydays)]
    assert main([*argv, "--weights", "random", "--smoke", "--out", str(out)]) == 0
    path = out / "runs" / "copydays-copy-detection" / "dino" / "vits16__seed0.json"
    rec = json.loads(path.read_text())
    assert rec["track"] == "smoke" and set(rec["metrics"]) == {"mAP", "mAP_original", "mAP_jpegqual_50"}
    # Chance: a random ranking of the 32-image database finds a positive in the top 20 at ~rank 10 (AP ~ 0.1).
    m = rec["metrics"]
    assert m["mAP"] > 40 and m["mAP_jpegqual_50"] > 80 and m["mAP_original"] == 100.0, m
    assert rec["probe"]["feature_dim"] == 2 * 384 and rec["probe"]["whitening"]["dims"] == 16  # CLS ++ GeM
    assert rec["dataset"]["splits"]["distractors"] == 24
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()


def test_an_encoder_without_cls_uses_the_patch_mean(copydays: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """SelfPatch has no CLS: the contract's probe token (the patch mean) stands in, next to the GeM."""
    from benchmarks.catalog import get_task
    from benchmarks.harness import RunContext
    from benchmarks.transfer.copydays import CopydaysHarness, CopydaysProtocol
    from methods import build_encoder
    from tests.methods._official import shrink

    shrink(monkeypatch, "selfpatch", "vits16", embed_dim=64, depth=2, num_heads=4)
    enc = build_encoder("selfpatch", "vits16", weights="random")
    spec = get_task("copydays-copy-detection")
    ctx = RunContext(task=spec, encoder=enc, data_root=copydays, work_dir=tmp_path, progress=False)
    out = CopydaysHarness(spec).run(ctx, CopydaysProtocol.smoke())
    assert out.probe["feature_dim"] == 128 and 0 < out.metrics["mAP"] <= 100
