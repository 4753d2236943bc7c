"""BigEarthNet through torchgeo (marker ``geo``: needs ``pip install -e ".[geo]"``; ``.ci/run`` runs these).

Synthetic v1 / v2 sets in the layouts torchgeo reads (GeoTIFFs at the real band sizes, label JSONs, split CSVs,
metadata.parquet), the tasks end to end through the runner (records validated by the one gate), bad input refused
naming the patch, and the metric report against scikit-learn.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import bigearthnet as ben
from benchmarks.probe.data import EvalTransform, ProbeDataset
from benchmarks.runner import RunRequest, run
from benchmarks.synth import synth
from benchmarks.validate import validate_file
from methods import build_encoder
from methods.dino_mm import BANDS as DINO_MM_BANDS
from methods.errors import DataError, VitbenchError
from tests.methods._official import shrink

pytestmark = pytest.mark.geo


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("bigearthnet", tmp_path_factory.mktemp("ben1"), seed=0)


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("bigearthnet-v2", tmp_path_factory.mktemp("ben2"), seed=0)


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    """A fresh 2 / 1 / 1-patch v1 set a test may break."""
    return ben.synth_bigearthnet(tmp_path / "mini", seed=1, n_train=2, n_val=1, n_test=1)


@pytest.fixture
def small_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """4-block DINO-MM ViT-S/8 and DINO ViT-S/16 (the task reads the last 4 blocks)."""
    shrink(monkeypatch, "dino-mm", "vits8", depth=4)
    shrink(monkeypatch, "dino", "vits16", depth=4)


def _run(task: str, method: str, data: Path, out: Path, **overrides: object):
    req = RunRequest(
        method=method,
        task=task,
        data=data,
        weights="random",
        smoke=True,
        out=out,
        force=True,
        progress=False,
        protocol_overrides=tuple(overrides.items()),
        command="pytest",
    )
    return run(req)


def _check_record(path: Path, overrides: dict) -> None:
    """The record passes the one gate; with ``--set`` overrides it is refused only as not the registered protocol
    (the leaderboard never ranks it with the standard setting)."""
    problem = validate_file(path)
    if not overrides:
        assert problem is None, problem
    else:
        assert problem is not None and problem.endswith(f"(config differs in: {', '.join(sorted(overrides))})")


def _constant_map(y: np.ndarray) -> float:
    """Macro mAP of a constant score: each class's AP is its positive rate."""
    rates = [y[:, c].mean() for c in range(y.shape[1]) if y[:, c].any()]
    return 100.0 * float(np.mean(rates))


# ------------------------------------------------------------------------------------------------ reading
@pytest.mark.parametrize("modality", ["s1s2", "s2", "s1"])
def test_scan_reads_what_torchgeo_reads(v1: Path, modality: str) -> None:
    import torchgeo.datasets as tgd

    ds = tgd.BigEarthNet(str(v1), split="val", bands={"s1s2": "all"}.get(modality, modality), num_classes=19)
    split = ben.scan(v1, "val", modality)
    assert len(split) == len(ds) == 20 and split.bands == ben.modality_bands(modality)
    assert split.classes == tuple(ds.class_sets[19])
    for i in (0, 7):
        sample = ds[i]
        np.testing.assert_array_equal(split.targets[i], sample["label"].numpy())
        ours, theirs = split.source.read(i), sample["image"].numpy()
        assert ours.shape == theirs.shape == (len(split.bands), 120, 120)
        s2 = [k for k, b in enumerate(split.bands) if b in ben.S2_BANDS]
        s1 = [k for k, b in enumerate(split.bands) if b in ben.S1_BANDS]
        np.testing.assert_array_equal(ours[s2], theirs[s2])  # uint16 reflectances: identical
        if s1:  # torchgeo's int32 cast rounds the float32 dB values; the source keeps them
            assert np.abs(ours[s1] - theirs[s1]).max() <= 0.5 and not np.array_equal(ours[s1], theirs[s1])


def test_v2_scan_reads_what_torchgeo_reads(v2: Path) -> None:
    import torchgeo.datasets as tgd

    ds = tgd.BigEarthNetV2(str(v2), split="val", bands="all")
    split = ben.scan(v2, "val", "s1s2", version="v2")
    assert len(split) == len(ds) == 20 and split.bands == (*ben.S1_BANDS, *ben.S2_BANDS)
    sample = ds[3]
    np.testing.assert_array_equal(split.targets[3], sample["label"].numpy())
    np.testing.assert_array_equal(split.source.read(3)[2:], sample["image_s2"].numpy())
    assert np.abs(split.source.read(3)[:2] - sample["image_s1"].numpy()).max() <= 0.5
    assert ben.split_sizes(v2, "v2") == {"train": 40, "val": 20, "test": 20}


def test_known_patch_reaches_dino_mm_in_its_order_and_scaling(mini: Path) -> None:
    """Constant GeoTIFFs at native sizes (B01 20x20, B05 60x60, B02 120x120...) written through rasterio, read
    through torchgeo's layout: DINO-MM receives B01...B12, VH, VV with SeCo's stretch, hand-computed."""
    split = ben.scan(mini, "train", "s1s2")
    patch = {b: p for b, p in split.source.band_files(0)}
    s = ben.stretch_for((*ben.S2_BANDS, *ben.S1_BANDS))
    mean = dict(zip((*ben.S2_BANDS, *ben.S1_BANDS), s.mean))
    std = dict(zip((*ben.S2_BANDS, *ben.S1_BANDS), s.std))
    want = {}
    for k, band in enumerate(DINO_MM_BANDS):
        n = ben.NATIVE_SIZE[band]
        if band in ben.S1_BANDS:  # a per-image constant: the quantile clip keeps it
            value = np.float32(mean[band] + 0.5 * std[band])
            want[band] = np.floor(2.5 / 4 * 255) / 255  # (mean + 0.5 std - (mean - 2 std)) / 4 std = 0.625
        else:  # a different point of the stretch per band: mean - 1.5 std ... mean + 0.7 std
            value = np.uint16(max(0, round(mean[band] + (-1.5 + 0.2 * k) * std[band])))
            unit = (float(value) - (mean[band] - 2 * std[band])) / (4 * std[band])
            want[band] = np.floor(np.clip(unit, 0, 1) * 255) / 255
        ben._write_band(patch[band], np.full((n, n), value), 0, 0, 1200 // n)
    enc = build_encoder("dino-mm:vits8", weights="random")
    dc = enc.data_config
    t = EvalTransform(size=120, crop_pct=1.0, interpolation="bilinear", mean=dc.mean, std=dc.std)
    x, _ = ProbeDataset(split, t, dc.band_order, scaling=dc.band_scaling)[0]
    got = {b: float(x[k, 60, 60]) for k, b in enumerate(DINO_MM_BANDS)}
    assert got == pytest.approx(want, abs=1e-6)
    assert got["VH"] == pytest.approx(159 / 255)


# ------------------------------------------------------------------------------------------------ tasks
def test_linear_s1s2_record_with_micro_and_macro_map(v1: Path, tmp_path: Path, small_models: None) -> None:
    path, record = _run("bigearthnet-linear", "dino-mm", v1, tmp_path / "res")
    assert validate_file(path) is None
    m = record.metrics
    for split in ("val", "test"):
        assert {f"{split}_mAP_micro", f"{split}_mAP_macro", f"{split}_F1_micro", f"{split}_F1_macro"} <= set(m)
    assert "val_mAP_micro_batchavg" in m and "test_mAP_micro_batchavg" not in m
    val_y = ben.scan(v1, "val").targets
    assert m["val_mAP_macro"] > _constant_map(val_y) + 15
    assert record.dataset.splits == {"train": 40, "val": 20, "test": 20} and record.dataset.n_classes == 19
    assert record.probe["blocks"] == [0, 1, 2, 3] and record.probe["missing_bands"] == "none"
    assert record.probe["compare_reported_with"].startswith("val_mAP_micro_batchavg")


@pytest.mark.parametrize(
    ("task", "method", "overrides", "fed"),
    [
        ("bigearthnet-linear-s2", "dino-mm", {}, "zeros (sensor drop)"),
        ("bigearthnet-linear-s1", "dino-mm", {}, "zeros (sensor drop)"),
        ("bigearthnet-linear", "dino", {}, "adaptation rgb"),
        ("bigearthnet-linear-s1", "dino", {"rgb_adaptation": "tile"}, "adaptation tile"),
    ],
)
def test_linear_modalities_and_rgb_adaptations(
    v1: Path, tmp_path: Path, small_models: None, task: str, method: str, overrides: dict, fed: str
) -> None:
    path, record = _run(task, method, v1, tmp_path / "res", **overrides)
    _check_record(path, overrides)
    card = record.probe
    assert fed in (card["missing_bands"] if method == "dino-mm" else card["input"])
    assert card["modality"] == {"bigearthnet-linear-s2": "s2", "bigearthnet-linear-s1": "s1"}.get(task, "s1s2")
    assert record.metrics["val_mAP_macro"] > _constant_map(ben.scan(v1, "val").targets) + 10


def test_each_cell_is_its_own_validated_leaderboard_row(
    v1: Path, tmp_path: Path, small_models: None, capsys: pytest.CaptureFixture
) -> None:
    """DINO-MM's table cells are tasks: each record validates as the registered protocol of its cell and sits at its
    own path and row. ``--set`` to the same cell on another task gives the same numbers, refused as an override,
    and the run names the task to use."""
    from leaderboard.collect import find_task, group_records, load_records

    out = tmp_path / "res"
    cells = ("bigearthnet-linear", "bigearthnet-linear-s2", "bigearthnet-linear-1pct", "bigearthnet-finetune-s1-1pct")
    records = {}
    for task in cells:
        path, records[task] = _run(task, "dino-mm", v1, out, **({"epochs": 1} if "finetune" in task else {}))
        _check_record(path, {"epochs": 1} if "finetune" in task else {})
    assert records["bigearthnet-linear-1pct"].probe["n_train_labelled"] == 1  # int(0.01 x 40), at least 1
    assert records["bigearthnet-linear-1pct"].dataset.splits == {"train": 40, "val": 20, "test": 20}
    capsys.readouterr()
    path, over = _run("bigearthnet-linear", "dino-mm", v1, tmp_path / "other", modality="s2")
    assert "this is task bigearthnet-linear-s2's registered protocol" in capsys.readouterr().err
    _check_record(path, {"modality": "s2"})
    assert over.metrics == pytest.approx(records["bigearthnet-linear-s2"].metrics)
    groups = group_records(load_records(out), {t: find_task(t) for t in cells})
    assert sorted(g.task for g in groups) == sorted(cells) and {g.status for g in groups} == {"smoke"}


def test_rgb_adaptation_needs_s2_bands(v1: Path, tmp_path: Path, small_models: None) -> None:
    with pytest.raises(VitbenchError, match="rgb_adaptation=rgb reads B04/B03/B02, which modality s1 lacks"):
        _run("bigearthnet-linear", "dino", v1, tmp_path / "res", modality="s1")
    assert not (tmp_path / "res" / "runs").exists()


def test_linear_on_v2(v2: Path, tmp_path: Path, small_models: None) -> None:
    path, record = _run("bigearthnet-linear", "dino-mm", v2, tmp_path / "res", version="v2")
    _check_record(path, {"version": "v2"})
    assert "metadata.parquet" in record.dataset.annotations and record.metrics["val_mAP_macro"] > 50


def test_label_fraction_trains_on_the_nested_subset(v1: Path, tmp_path: Path, small_models: None) -> None:
    _, record = _run("bigearthnet-linear", "dino-mm", v1, tmp_path / "res", label_fraction=0.25)
    assert record.probe["n_train_labelled"] == 10 and record.dataset.splits["train"] == 40


def test_finetune_runs_and_resumes(v1: Path, tmp_path: Path, small_models: None) -> None:
    work = tmp_path / "res" / "work" / "bigearthnet-finetune" / "dino-mm" / "vits8__seed0"
    path, record = _run("bigearthnet-finetune", "dino-mm", v1, tmp_path / "res", epochs=1)
    _check_record(path, {"epochs": 1})
    assert (work / "finetune_last.pt").is_file()
    assert record.probe["resumed_from_epoch"] == 0 and np.isfinite(record.probe["final_train_loss"])
    # The same protocol again: the checkpoint says every epoch is done, so nothing trains and the scores repeat.
    _, again = _run("bigearthnet-finetune", "dino-mm", v1, tmp_path / "res", epochs=1)
    assert again.probe["resumed_from_epoch"] == 1 and again.metrics == record.metrics


def test_paper_track_refuses_other_data_before_reading_patches(v1: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    # A weights file, not "random": random weights are refused on the paper track before the data is looked at.
    weights = tmp_path / "dino_mm.safetensors"
    model = build_encoder("dino-mm", "vits8", weights="random").model
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    req = RunRequest(
        method="dino-mm", task="bigearthnet-linear", data=v1, weights=str(weights), out=tmp_path, progress=False
    )
    with pytest.raises(VitbenchError, match="40 patches, but the paper track of bigearthnet-linear is defined on"):
        run(req)


def test_catalogue_identity_is_torchgeos_class_list() -> None:
    import hashlib

    import torchgeo.datasets as tgd

    from benchmarks.catalog import BIGEARTHNET_V1_19

    names = "\n".join(tgd.BigEarthNet.class_sets[19]).encode()
    assert BIGEARTHNET_V1_19.classes_sha256 == hashlib.sha256(names).hexdigest()
    assert tuple(tgd.BigEarthNetV2.class_set) == tuple(tgd.BigEarthNet.class_sets[19])


# ------------------------------------------------------------------------------------------------ bad input
def _break_missing_band(root: Path) -> str:
    d = next((root / ben.V1_DIRS["s2"]).iterdir())
    (d / f"{d.name}_B03.tif").unlink()
    return rf"{d.name} lacks band file\(s\) B03"


def _break_wrong_size(root: Path) -> str:
    d = next((root / ben.V1_DIRS["s2"]).iterdir())
    ben._write_band(d / f"{d.name}_B02.tif", np.zeros((60, 60), np.uint16), 0, 0, 20)
    return rf"band B02 of patch {d.name} is 60x60 px; BigEarthNet's B02 is 120x120"


def _break_s1_pair(root: Path) -> str:
    first = (root / "bigearthnet-train.csv").read_text().splitlines()[0]
    s2, s1 = first.split(",")
    shutil.rmtree(root / ben.V1_DIRS["s1"] / s1)
    return rf"line 1: S2 patch {s2}'s S1 pair {s1} is absent"


def _break_label(root: Path) -> str:
    s1 = (root / "bigearthnet-val.csv").read_text().splitlines()[0].split(",")[1]
    f = root / ben.V1_DIRS["s1"] / s1 / f"{s1}_labels_metadata.json"
    meta = json.loads(f.read_text())
    f.write_text(json.dumps({**meta, "labels": ["Moon base"]}))
    return rf"label 'Moon base' of patch {s1} is not in BigEarthNet's 43-class nomenclature"


def _break_csv(root: Path) -> str:
    with open(root / "bigearthnet-test.csv", "a") as fh:
        fh.write("S2A_MSIL2A_20170613T101031_99_99,S1A_IW_GRDH_1SDV_20170613T165043_33UUP_99_99\n")
    return r"bigearthnet-test.csv: line 2 names S2 patch S2A_MSIL2A_20170613T101031_99_99, absent"


@pytest.mark.parametrize("breaker", [_break_missing_band, _break_wrong_size, _break_s1_pair, _break_label, _break_csv])
def test_bad_input_is_one_line_naming_the_patch(mini: Path, tmp_path: Path, small_models: None, breaker) -> None:
    match = breaker(mini)
    with pytest.raises(DataError, match=match) as err:
        _run("bigearthnet-linear", "dino-mm", mini, tmp_path / "res")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "res" / "runs").exists()  # no record


# ------------------------------------------------------------------------------------------------ metrics
def test_metric_report_equals_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score, f1_score

    from benchmarks.probe.heads import multilabel_metrics

    g = torch.Generator().manual_seed(0)
    y = (torch.rand(150, 19, generator=g) < 0.2).long()
    y[:, 18] = 0  # a class without positives: no AP, F1 0 (zero_division=0)
    logits = torch.randn(150, 19, generator=g) + 1.5 * y
    m = multilabel_metrics(logits, y, threshold=0.5, batch_size=64)
    p, yn = torch.sigmoid(logits).numpy(), y.numpy()
    has = yn.any(0)
    assert m["mAP_macro"] == pytest.approx(
        100 * average_precision_score(yn[:, has], p[:, has], average="macro"), abs=1e-3
    )
    assert m["mAP_micro"] == pytest.approx(100 * average_precision_score(yn, p, average="micro"), abs=1e-3)
    for avg in ("macro", "micro"):
        want = 100 * f1_score(yn, p >= 0.5, average=avg, zero_division=0)
        assert m[f"F1_{avg}"] == pytest.approx(want, abs=1e-3)
    for c in np.flatnonzero(has):
        assert m[f"AP_c{c:02d}"] == pytest.approx(100 * average_precision_score(yn[:, c], p[:, c]), abs=1e-3)
    assert "AP_c18" not in m
    # DINO-MM's validate_network: sklearn micro AP per batch of 64, MetricLogger mean weighted by batch size.
    batches = [(yn[s : s + 64], p[s : s + 64]) for s in range(0, 150, 64)]
    want = sum(100 * average_precision_score(yb, pb, average="micro") * len(yb) for yb, pb in batches) / 150
    assert m["mAP_micro_batchavg"] == pytest.approx(want, abs=1e-3)
    assert m["mAP_micro_batchavg"] != pytest.approx(m["mAP_micro"], abs=1e-3)
