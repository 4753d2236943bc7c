"""DAVIS-2017 label propagation: the propagation step by hand, the layout's refusals, the harness end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.catalog import get_task
from benchmarks.cli import main
from benchmarks.data.davis import davis_palette, read_indexed, scan_davis, write_indexed
from benchmarks.harness import RunContext
from benchmarks.transfer.davis import (
    DavisHarness,
    DavisProtocol,
    affinity,
    first_mask,
    frame_size,
    neighbourhood,
    propagate_from_affinity,
    segment_sequence,
    sequence_features,
)
from benchmarks.transfer.davis_metrics import summarise
from methods import build_encoder
from methods.errors import DataError


@pytest.fixture(scope="module")
def davis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benchmarks.synth import synth

    return synth("davis", tmp_path_factory.mktemp("davis"), seed=0)


# ------------------------------------------------------------------------------------------------ by hand
def test_frame_size_is_dinos_rule() -> None:
    assert frame_size(480, 854, 480, 64) == (480, 832)  # DAVIS 480p: 854 -> 832
    assert frame_size(854, 480, 480, 64) == (832, 480)  # portrait
    assert frame_size(128, 224, 128, 64) == (128, 192)


def test_propagation_on_a_hand_built_affinity() -> None:
    """Columns are target patches. Column 0 (4, 3, 2, 1), top-2: keeps 4 and 3 -> weights 4/7, 3/7. Column 1
    (1, 1, 5, 0): the 2nd largest is 1, and DINO keeps every value >= it, ties included -> 1/7, 1/7, 5/7, 0."""
    aff = torch.tensor([[4.0, 1.0], [3.0, 1.0], [2.0, 5.0], [1.0, 0.0]])
    segs = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])  # [C=2, S=4]
    got = propagate_from_affinity(aff, segs, topk=2)
    want = torch.tensor([[4 / 7, 6 / 7], [3 / 7, 1 / 7]])
    torch.testing.assert_close(got, want)


def test_affinity_and_window_by_hand() -> None:
    """Unit vectors at 0, 60 and 90 degrees: cosines 1, 1/2, 0, so exp(cos / 0.5) = e^2, e^1, e^0."""
    ang = torch.tensor([0.0, 60.0, 90.0]) * math.pi / 180
    vec = torch.stack([ang.cos(), ang.sin()], dim=1)
    target = vec[:1]  # [1, 2]
    sources = vec[None]  # one context frame of 3 patches
    got = affinity(target, sources, temperature=0.5)
    torch.testing.assert_close(got[:, 0], torch.tensor([math.e**2, math.e, 1.0]))
    # A 1 x 3 grid, window 1 patch: target patch 0 sees source patches 0 and 1 only.
    win = neighbourhood(1, 3, 1)
    np.testing.assert_array_equal(win.numpy(), [[1, 1, 0], [1, 1, 1], [0, 1, 1]])
    got = affinity(vec, sources, temperature=0.5, window=win)
    assert got[2, 0] == 0 and got[0, 2] == 0 and got[1, 0] == pytest.approx(math.e)


def test_sequence_propagation_by_hand() -> None:
    """Two patches (1 x 2 grid, patch 2 px). Frame 0: A = (1, 0) holds the object, B = (0, 1) is background; in
    frame 1 they swap places, so with top-1 the object moves right. Upsampling by 2 (bilinear, half-pixel centres)
    gives object scores (0, 1/4, 3/4, 1) against background (1, 3/4, 1/4, 0): labels 0 0 1 1. Frame 2 repeats frame
    0; its context (frame 0 and frame 1's soft mask) agrees, and the object moves back."""
    a, b = [1.0, 0.0], [0.0, 1.0]
    feats = np.array([[a, b], [b, a], [a, b]], dtype=np.float32).transpose(0, 2, 1)[:, :, None, :]  # [T, d, 1, 2]
    first = first_mask(np.array([[1, 1, 0, 0], [1, 1, 0, 0]], np.uint8), (1, 2), n_objects=1)
    torch.testing.assert_close(first, torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]]))
    protocol = DavisProtocol(topk=1, size_mask_neighborhood=0)
    labels = segment_sequence(feats, first, protocol, patch=2, size=(2, 4), device="cpu")
    np.testing.assert_array_equal(labels[0], [[0, 0, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(labels[1], [[1, 1, 0, 0], [1, 1, 0, 0]])


def test_palette_pngs_round_trip(tmp_path: Path) -> None:
    pal = davis_palette()
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert pal[255].tolist() == [224, 224, 192]
    labels = np.array([[0, 1, 2], [3, 255, 0]], np.uint8)
    write_indexed(tmp_path / "00001.png", labels)
    from PIL import Image

    with Image.open(tmp_path / "00001.png") as img:
        assert img.mode == "P" and img.getpalette()[:15] == pal[:5].ravel().tolist()
    np.testing.assert_array_equal(read_indexed(tmp_path / "00001.png"), labels)


# ------------------------------------------------------------------------------------------------ bad input
def _copy(davis: Path, tmp_path: Path) -> Path:
    root = tmp_path / "DAVIS"
    shutil.copytree(davis, root)
    return root


def _seq(root: Path, kind: str) -> Path:
    return root / kind / "480p" / "synth-shapes-0"


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (lambda r: (_seq(r, "Annotations") / "00000.png").unlink(), r"00000\.png: sequence synth-shapes-0 has no"),
        (lambda r: (_seq(r, "JPEGImages") / "00003.jpg").unlink(), r"00004\.jpg: frames are numbered with a gap"),
        (
            lambda r: write_indexed(_seq(r, "Annotations") / "00005.png", np.full((128, 224), 3, np.uint8)),
            r"00005\.png: palette index 3 exceeds the 2 object",
        ),
        (lambda r: (_seq(r, "Annotations") / "00002.png").unlink(), r"00002\.png: missing annotation for frame"),
        (lambda r: (r / "ImageSets/2017/val.txt").unlink(), r"val\.txt: missing sequence list"),
    ],
)
def test_bad_layouts_are_refused_naming_the_file(davis: Path, tmp_path: Path, breakage, needle: str) -> None:  # noqa: ANN001
    root = _copy(davis, tmp_path)
    breakage(root)
    with pytest.raises(DataError, match=needle):
        scan_davis(root)


def test_bad_data_is_one_line_and_no_record(davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _copy(davis, tmp_path)
    (_seq(root, "Annotations") / "00000.png").unlink()
    out = tmp_path / "results"
    argv = ["run", "--method", "dino", "--task", "davis2017-vos", "--data", str(root), "--weights", "random"]
    assert main([*argv, "--smoke", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no first-frame annotation" in err[0]
    assert not (out / "runs").exists()


# ------------------------------------------------------------------------------------------------ end to end
def test_smoke_run_writes_a_valid_record_and_reloadable_pngs(
    davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "results"
    argv = ["run", "--method", "dino", "--task", "davis2017-vos", "--data", str(davis), "--weights", "random"]
    assert main([*argv, "--smoke", "--out", str(out)]) == 0
    record_path = out / "runs" / "davis2017-vos" / "dino" / "vits16__seed0.json"
    rec = json.loads(record_path.read_text())
    assert rec["track"] == "smoke" and set(rec["metrics"]) == {"JF_mean", "J_mean", "F_mean"}
    m = rec["metrics"]
    assert m["JF_mean"] == pytest.approx((m["J_mean"] + m["F_mean"]) / 2)
    # Predicting background everywhere scores J = F = 0 on every object: a random ViT's colour features track.
    assert m["J_mean"] > 40 and m["F_mean"] > 30, m
    assert set(rec["extra"]["per_sequence"]) == {"synth-shapes-0", "synth-shapes-1"}
    assert rec["extra"]["n_objects"] == 5 and rec["dataset"]["splits"] == {"val": 2}
    assert rec["probe"]["std"] == [0.228, 0.224, 0.225] and rec["probe"]["frame_sizes"] == ["128x192"]
    assert main(["validate", str(record_path)]) == 0
    capsys.readouterr()

    # The PNGs, read back, are the predicted masks: recompute one sequence's from the cached features.
    results = Path(rec["extra"]["predictions"])
    data = scan_davis(davis)
    seq = data.sequences[1]
    enc = build_encoder("dino:vits16", weights="random")
    ctx = RunContext(task=get_task("davis2017-vos"), encoder=enc, data_root=davis, work_dir=tmp_path, progress=False)
    protocol = DavisProtocol.smoke()
    stats = ((0.485, 0.456, 0.406), (0.228, 0.224, 0.225))
    feats = sequence_features(enc, seq, data.root, (128, 192), stats, ctx)
    first = first_mask(read_indexed(seq.annotations[0]), feats.shape[2:], seq.n_objects)
    with torch.inference_mode():
        want = segment_sequence(feats, first, protocol, 16, seq.size, "cpu")
    from PIL import Image

    for t, labels in enumerate(want, start=1):
        path = results / seq.name / f"{t:05d}.png"
        with Image.open(path) as img:
            assert img.mode == "P" and img.getpalette()[:12] == davis_palette()[:4].ravel().tolist()
        np.testing.assert_array_equal(read_indexed(path), labels)
    np.testing.assert_array_equal(read_indexed(results / seq.name / "00000.png"), read_indexed(seq.annotations[0]))
    # And the record's numbers are those PNGs scored by the official definitions.
    from benchmarks.transfer.davis import score_results

    assert summarise(score_results(data, results, 0.008)) == pytest.approx(m)


def test_harness_refuses_multiband_encoders(davis: Path, tmp_path: Path) -> None:
    enc = build_encoder("dino-mm:vits8", weights="random")
    ctx = RunContext(task=get_task("davis2017-vos"), encoder=enc, data_root=davis, work_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="DAVIS frames are RGB, but the encoder expects bands"):
        DavisHarness(get_task("davis2017-vos")).run(ctx, DavisProtocol.smoke())


@pytest.mark.parametrize(("method", "variant"), [("selfpatch", "vits16"), ("mae", "vith14")])
def test_other_vits_run_through_the_contract(
    method: str, variant: str, davis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SelfPatch has no CLS and no final norm; MAE ViT-H/14's patch does not divide the 128 x 192 frames (a 9 x 13
    grid, upsampled to 126 x 182, then resized to the frame): both through forward_last only, at tiny widths."""
    from tests.methods._official import shrink

    shrink(monkeypatch, method, variant, embed_dim=64, depth=2, num_heads=4)
    enc = build_encoder(method, variant, weights="random")
    ctx = RunContext(task=get_task("davis2017-vos"), encoder=enc, data_root=davis, work_dir=tmp_path, progress=False)
    out = DavisHarness(get_task("davis2017-vos")).run(ctx, DavisProtocol.smoke())
    assert 0 < out.metrics["J_mean"] <= 100 and 0 < out.metrics["F_mean"] <= 100
    pred = read_indexed(Path(out.extra["predictions"]) / "synth-shapes-0" / "00004.png")
    assert pred.shape == (128, 224) and set(np.unique(pred)) <= {0, 1, 2}
