"""The probe engine for any target: multi-label BCE/ASL grids with unknown labels, and data in any band order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data.table import MULTIBAND_BANDS
from benchmarks.probe.data import EvalTransform, LabelledSplit, ProbeDataset, band_index, scan_table
from benchmarks.probe.engine import as_tensor, block_features, fit_grid, global_features, stack_blocks
from benchmarks.probe.heads import Target, multilabel_ap
from benchmarks.synth import synth
from methods import build_encoder
from methods.errors import DataError

GRID = {
    "lrs": (0.1, 1.0),
    "epochs": 30,
    "batch_size": 16,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "holdout_fraction": 0.2,
    "seed": 0,
    "device": "cpu",
    "progress": False,
}


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("multilabel", tmp_path_factory.mktemp("ml"), seed=0)


@pytest.fixture(scope="module")
def multiband(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("multiband", tmp_path_factory.mktemp("mb"), seed=0)


def _constant_map(y: torch.Tensor) -> float:
    """mAP of a constant score: every class's AP is its positive rate."""
    known = y >= 0
    rates = [
        ((y[:, c] == 1) & known[:, c]).sum() / known[:, c].sum() for c in range(y.shape[1]) if (y[:, c] == 1).any()
    ]
    return 100.0 * float(torch.stack(rates).mean())


def test_multilabel_ap_by_hand() -> None:
    # Class 0: scores rank the two positives 1st and 3rd -> AP = (1/1 + 2/3) / 2 = 0.8333.
    # Class 1: the positive ranks 2nd -> AP = 1/2. Class 2: no positive -> excluded from the macro mean.
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.7, 0.9, 0.1], [0.1, 0.2, 0.4]])
    y = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    m = multilabel_ap(scores, y)
    assert m["mAP"] == pytest.approx(100 * (5 / 6 + 1 / 2) / 2, abs=1e-4)
    assert m["n_classes_without_positive"] == 1.0
    # An unknown label (-1) is dropped: hiding the negative that outranks class 1's positive makes its AP 1.
    y2 = y.clone()
    y2[2, 1] = -1
    assert multilabel_ap(scores, y2)["mAP"] == pytest.approx(100 * (5 / 6 + 1.0) / 2, abs=1e-4)


@pytest.mark.parametrize("loss", ["bce", "asl"])
def test_unknown_labels_contribute_no_loss(loss: str) -> None:
    target = Target("multi", 3, loss=loss)
    logits = torch.randn(4, 2, 3)  # [B, H, C]
    y = torch.tensor([[1, 0, -1], [0, -1, 1], [1, 1, 0], [-1, -1, -1]])
    base = target.head_losses(logits, y)
    wild = logits.clone()
    wild[y[:, None, :].expand(-1, 2, -1) < 0] = 50.0  # whatever the head says about unknown labels
    torch.testing.assert_close(target.head_losses(wild, y), base)
    if loss == "bce":  # the mean over known labels of plain BCE, per head
        known = y >= 0
        for h in range(2):
            want = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, h][known], y[known].float())
            torch.testing.assert_close(base[h], want)


def test_asl_down_weights_easy_negatives() -> None:
    """ASL (gamma_neg 2, clip 0.05): a confidently rejected negative (p < clip) costs nothing, unlike BCE."""
    logits = torch.full((1, 1, 1), -4.0)  # p = 0.018 < 0.05
    y = torch.zeros(1, 1, dtype=torch.long)
    assert Target("multi", 1, loss="asl").head_losses(logits, y).item() == 0.0
    assert Target("multi", 1, loss="bce").head_losses(logits, y).item() > 0.01


def test_table_layout_is_scanned_strictly(multilabel: Path, tmp_path: Path) -> None:
    train = scan_table(multilabel, "train")
    assert train.multilabel and train.targets.shape == (48, 4) and (train.targets == -1).any()
    assert train.bands is None and scan_table(multilabel, "val", train.classes).fingerprint()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.csv").write_text("path,a,b\nx.jpg,1,0\n")
    with pytest.raises(DataError, match=r"train.csv: line 2 lists .*x.jpg, which does not exist"):
        scan_table(bad, "train")
    (bad / "x.jpg").write_bytes(b"")
    (bad / "train.csv").write_text("path,a,b\nx.jpg,1,2\n")
    with pytest.raises(DataError, match="line 2: labels must be 1, 0 or -1"):
        scan_table(bad, "train")
    with pytest.raises(DataError, match="differ from train's"):
        (bad / "val.csv").write_text("path,a,c\nx.jpg,1,0\n")
        scan_table(bad, "val", classes=("a", "b"))


def test_multilabel_bce_grid_beats_a_constant_predictor(multilabel: Path) -> None:
    enc = build_encoder("dino:vits16", weights="random")
    train, val = scan_table(multilabel, "train"), scan_table(multilabel, "val", scan_table(multilabel, "train").classes)
    kw = {"resolution": 32, "device": "cpu", "cache_dir": None, "progress": False}
    blocks = [10, 11]
    tr, va = (block_features(enc, s, blocks, **kw) for s in (train, val))
    y, vy = as_tensor(tr["labels"]).long(), as_tensor(va["labels"]).long()
    assert y.shape == (48, 4) and (y == -1).any(), "partial labels travel through the feature cache"
    recipes = {
        "cls_last1": stack_blocks(tr, "tok", blocks)[:, -1],
        "avg_last1": stack_blocks(tr, "avg", blocks)[:, -1],
    }
    val_recipes = {
        "cls_last1": stack_blocks(va, "tok", blocks)[:, -1],
        "avg_last1": stack_blocks(va, "avg", blocks)[:, -1],
    }
    res = fit_grid(recipes, y, val_recipes, vy, Target("multi", 4, loss="bce"), **GRID)
    assert len(res.grid) == 4 and res.key == "mAP"
    assert res.metrics["mAP"] > _constant_map(vy) + 15, (res.metrics, _constant_map(vy))
    assert res.best == max(res.grid, key=lambda n: (res.grid[n]["holdout_mAP"], -len(n)))


def test_fourteen_bands_reach_the_encoder_by_name(multiband: Path, tmp_path: Path) -> None:
    """The files hold torchgeo's order (VH, VV, B01, ...); DINO-MM expects B01..B12, VH, VV: mapped by name."""
    import shutil

    multiband = Path(shutil.copytree(multiband, tmp_path / "mb"))
    enc = build_encoder("dino-mm:vits8", weights="random")
    order = enc.data_config.band_order
    assert order is not None and len(order) == 14 and order != MULTIBAND_BANDS
    split = scan_table(multiband, "train")
    assert split.bands == MULTIBAND_BANDS
    # A constant array whose band k holds the value k shows where each band lands.
    probe = Path(split.paths[0])
    np.save(probe, np.arange(14, dtype=np.float32)[:, None, None] * np.ones((14, 20, 30), dtype=np.float32))
    t = EvalTransform(size=16, crop_pct=1.0, interpolation="bilinear", mean=(0.0,) * 14, std=(1.0,) * 14)
    x, target = ProbeDataset(split, t, order)[0]
    assert x.shape == (14, 16, 16) and target.shape == (4,)
    assert [int(v) for v in x[:, 8, 8]] == [MULTIBAND_BANDS.index(b) for b in order]
    # An S2-only set: the encoder's S1 bands are missing -> refused, or zeros when asked (DINO-MM's sensor drop).
    s2 = LabelledSplit(split.root, "train", split.classes, split.paths[:1], split.targets[:1], MULTIBAND_BANDS)
    assert band_index(MULTIBAND_BANDS[2:], order, missing="zeros")[-2:] == [None, None]
    with pytest.raises(DataError, match="missing: VH, VV"):
        band_index(MULTIBAND_BANDS[2:], order)
    assert ProbeDataset(s2, t, order)[0][0].shape == (14, 16, 16)


def test_fourteen_band_probe_beats_a_constant_predictor(multiband: Path) -> None:
    enc = build_encoder("dino-mm:vits8", weights="random")
    train = scan_table(multiband, "train")
    val = scan_table(multiband, "val", train.classes)
    kw = {"resolution": 32, "device": "cpu", "cache_dir": None, "progress": False}
    tr, va = global_features(enc, train, **kw), global_features(enc, val, **kw)
    assert tr["global"].shape == (48, enc.spec.embed_dim)
    y, vy = as_tensor(tr["labels"]).long(), as_tensor(va["labels"]).long()
    res = fit_grid(
        {"global": as_tensor(tr["global"])}, y, {"global": as_tensor(va["global"])}, vy, Target("multi", 4), **GRID
    )
    assert res.metrics["mAP"] > _constant_map(vy) + 15, (res.metrics, _constant_map(vy))


def test_rgb_and_multiband_are_never_mixed_silently(multiband: Path, imagefolder: Path) -> None:
    from benchmarks.data.imagefolder import scan_split

    t = EvalTransform(size=16, crop_pct=1.0, interpolation="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3)
    with pytest.raises(DataError, match="14-band data .* for an RGB encoder"):
        ProbeDataset(scan_table(multiband, "train"), t, None)
    with pytest.raises(DataError, match="RGB images, but the encoder expects bands"):
        ProbeDataset(scan_split(imagefolder, "train"), t, MULTIBAND_BANDS)
