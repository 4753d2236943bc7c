"""What the BigEarthNet tasks add to the probe engine, without torchgeo: the encoder's band order and scaling on a
known patch, the zero-filled missing modality, nested label fractions, the RGB adaptations, the metric report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.bigearthnet.protocols import BigEarthNetLinearProtocol
from benchmarks.data.bigearthnet import S1_BANDS, S2_BANDS, stretch_for
from benchmarks.probe.data import ChannelMap, EvalTransform, LabelledSplit, ProbeDataset, apply_stretch, nested_fraction
from benchmarks.probe.engine import fit_grid
from benchmarks.probe.heads import Target, multilabel_metrics
from methods import build_encoder
from methods.dino_mm import BANDS as DINO_MM_BANDS
from methods.errors import VitbenchError

TORCHGEO_ORDER = (*S1_BANDS, *S2_BANDS)  # VH, VV, B01 ... B08, B8A, B09, B11, B12


@dataclass(frozen=True)
class MemorySource:
    """An :class:`~benchmarks.probe.data.ArraySource` over arrays in memory (one file per sample to fingerprint)."""

    arrays: tuple[np.ndarray, ...]
    names: tuple[Path, ...]

    def read(self, i: int) -> np.ndarray:
        return self.arrays[i]

    def files(self, i: int) -> Sequence[Path]:
        return [self.names[i]]


def _known_patch(bands: Sequence[str], n: int = 10) -> np.ndarray:
    """``[len(bands), n, n]``: B02 at its mean, B04 at mean + 3 std, B01 at mean - 3 std, B08 at mean + 1 std,
    VH a ramp -30.0, -29.8, ... -10.2 dB (row-major), VV constant -12.59 dB, every other band at 1000."""
    s = stretch_for(TORCHGEO_ORDER)
    mean = dict(zip(TORCHGEO_ORDER, s.mean))
    std = dict(zip(TORCHGEO_ORDER, s.std))
    values = {
        "B02": mean["B02"],
        "B04": mean["B04"] + 3 * std["B04"],
        "B01": mean["B01"] - 3 * std["B01"],
        "B08": mean["B08"] + std["B08"],
        "VV": -12.59,
    }
    out = np.full((len(bands), n, n), 1000.0, dtype=np.float32)
    for c, b in enumerate(bands):
        if b == "VH":
            out[c] = (-30.0 + 0.2 * np.arange(n * n)).reshape(n, n)
        elif b in values:
            out[c] = values[b]
    return out


def _split(tmp_path: Path, bands: Sequence[str], arrays: list[np.ndarray]) -> LabelledSplit:
    names = []
    for i in range(len(arrays)):
        f = tmp_path / f"patch{i}"
        f.write_bytes(arrays[i].tobytes())
        names.append(f)
    targets = np.zeros((len(arrays), 2), dtype=np.int8)
    return LabelledSplit(
        tmp_path, "train", ("a", "b"), tuple(names), targets, tuple(bands), MemorySource(tuple(arrays), tuple(names))
    )


IDENTITY = EvalTransform(size=10, crop_pct=1.0, interpolation="bilinear", mean=(0.0,) * 14, std=(1.0,) * 14)


def test_dino_mm_band_order_and_scaling_on_a_known_patch(tmp_path: Path) -> None:
    """Data in torchgeo's order (S1 first) reaches DINO-MM as B01...B12, VH, VV, scaled as its data_config says."""
    enc = build_encoder("dino-mm:vits8", weights="random")
    dc = enc.data_config
    assert dc.band_order == DINO_MM_BANDS and dc.band_scaling is not None
    split = _split(tmp_path, TORCHGEO_ORDER, [_known_patch(TORCHGEO_ORDER)])
    x, _ = ProbeDataset(split, IDENTITY, dc.band_order, scaling=dc.band_scaling)[0]
    assert x.shape == (14, 10, 10)
    at = {b: x[DINO_MM_BANDS.index(b)] for b in DINO_MM_BANDS}
    # (v - (mean - 2 std)) / (4 std) * 255, clipped, truncated, / 255:
    assert torch.all(at["B02"] == 127 / 255)  # 127.5 -> 127
    assert torch.all(at["B04"] == 1.0)  # above the range: 255
    assert torch.all(at["B01"] == 0.0)  # below the range
    assert torch.all(at["B08"] == 191 / 255)  # 191.25
    assert torch.all(at["VV"] == 127 / 255)  # at the S1 mean
    # VH: the ramp is clipped to its 1 / 99 % quantiles (-29.802, -10.398) before the stretch (-19.22 +- 2 x 5.42).
    vh = at["VH"].flatten()
    assert vh[0] == 3 / 255  # (-29.802 + 30.06) / 21.68 * 255 = 3.03; unclipped (-30.0) it would be 0
    assert vh[50] == 118 / 255  # -20.0 -> 118.3
    assert vh[99] == 231 / 255  # -10.2 clipped to -10.398 -> 231.3; unclipped 233
    # The same patch stored in DINO-MM's own order gives the same tensor: bands go by name, not position.
    (tmp_path / "own").mkdir()
    own = _split(tmp_path / "own", DINO_MM_BANDS, [_known_patch(DINO_MM_BANDS)])
    torch.testing.assert_close(ProbeDataset(own, IDENTITY, dc.band_order, scaling=dc.band_scaling)[0][0], x)


def test_missing_modality_is_zero_filled_after_scaling(tmp_path: Path) -> None:
    """S2-only data: DINO-MM's VH, VV are exactly 0 (its SensorDrop zeroes the scaled input), S2 unchanged; without
    asking for zeros the missing bands are an error."""
    enc = build_encoder("dino-mm:vits8", weights="random")
    dc = enc.data_config
    full = ProbeDataset(_split(tmp_path, TORCHGEO_ORDER, [_known_patch(TORCHGEO_ORDER)]), IDENTITY, dc.band_order,
                        scaling=dc.band_scaling)[0][0]  # fmt: skip
    (tmp_path / "s2").mkdir()
    s2 = _split(tmp_path / "s2", S2_BANDS, [_known_patch(S2_BANDS)])
    x, _ = ProbeDataset(s2, IDENTITY, dc.band_order, missing="zeros", scaling=dc.band_scaling)[0]
    assert torch.all(x[12:] == 0)
    torch.testing.assert_close(x[:12], full[:12])
    with pytest.raises(Exception, match="missing: VH, VV"):
        ProbeDataset(s2, IDENTITY, dc.band_order, scaling=dc.band_scaling)


def test_stretch_quantiles_equal_numpy() -> None:
    """The per-image quantile clip is numpy's linear quantile, as DINO-MM's ``np.quantile``."""
    rng = np.random.default_rng(0)
    x = rng.normal(-19.0, 5.0, size=(1, 8, 8)).astype(np.float32)
    s = stretch_for(("VH",))
    lo, hi = np.quantile(x[0].astype(np.float64), (0.01, 0.99))
    want = np.floor(np.clip((np.clip(x[0], lo, hi) - (-19.22 - 10.84)) / 21.68 * 255, 0, 255)) / 255
    np.testing.assert_allclose(apply_stretch(x, ("VH",), s)[0], want, atol=1e-6)


def test_label_fractions_are_seeded_and_nested() -> None:
    n = 269_695
    one, ten, full = (nested_fraction(n, f, 42) for f in (0.01, 0.1, 1.0))
    assert (len(one), len(ten), len(full)) == (2696, 26969, n)  # int(f * n), as DINO-MM's random_subset
    assert set(one) <= set(ten) <= set(full) and len(set(one)) == len(one)  # nested, without replacement
    np.testing.assert_array_equal(one, nested_fraction(n, 0.01, 42))  # seeded
    assert not np.array_equal(one, nested_fraction(n, 0.01, 43))
    assert len(nested_fraction(10, 0.01, 0)) == 1
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        nested_fraction(10, 0.0, 0)


def test_tile_adaptation_equals_the_tiled_input_convolution() -> None:
    """Folding C normalised bands into 3 channels, then the RGB encoder's patch embedding == timm's
    ``adapt_input_conv`` (filters repeated over the bands, x 3 / C) applied to the C bands."""
    from timm.models._manipulate import adapt_input_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, kernel_size=4, stride=4)
    for n in (2, 12, 14):
        bands = TORCHGEO_ORDER[:n]
        cmap = ChannelMap.tile(bands)
        x = torch.randn(1, n, 16, 16)
        folded = torch.einsum("kc,bchw->bkhw", torch.tensor(cmap.weights), x)
        tiled = torch.nn.functional.conv2d(x, adapt_input_conv(n, conv.weight.detach()), conv.bias, stride=4)
        torch.testing.assert_close(conv(folded), tiled, atol=1e-5, rtol=1e-5)
        assert [cmap.source_channel(c) for c in range(n)] == [c % 3 for c in range(n)]
    rgb = ChannelMap.select(("B04", "B03", "B02"))
    assert rgb.weights == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def test_rgb_encoder_gets_three_channels_through_a_channel_map(tmp_path: Path) -> None:
    split = _split(tmp_path, TORCHGEO_ORDER, [_known_patch(TORCHGEO_ORDER)])
    rgb = ("B04", "B03", "B02")
    cmap = ChannelMap.select(rgb, stretch_for(rgb))
    t = EvalTransform(10, 1.0, "bilinear", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x, _ = ProbeDataset(split, t, None, channel_map=cmap)[0]
    assert x.shape == (3, 10, 10)
    torch.testing.assert_close(x[0], torch.full((10, 10), (1.0 - 0.5) / 0.25))  # B04 at the top of its range
    torch.testing.assert_close(x[2], torch.full((10, 10), (127 / 255 - 0.5) / 0.25))  # B02 at its mean
    with pytest.raises(Exception, match="choose an adaptation"):
        ProbeDataset(split, t, None)


def test_metric_report_by_hand() -> None:
    """Two classes, four samples. Class 0: positives rank 1st and 3rd -> AP 5/6; class 1: its positive ranks 2nd
    -> AP 1/2. Micro pools the 8 pairs. F1 at sigmoid >= 0.5 (logit >= 0). Batch-averaged micro AP over batches of
    2: batch 1 = samples 0-1, batch 2 = samples 2-3."""
    logits = torch.tensor([[3.0, -1.0], [1.0, 0.5], [0.5, 2.0], [-2.0, -3.0]])
    y = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 0]])
    m = multilabel_metrics(logits, y, threshold=0.5, batch_size=2)
    assert m["AP_c00"] == pytest.approx(100 * 5 / 6, abs=1e-4)
    assert m["AP_c01"] == pytest.approx(50.0, abs=1e-4)
    assert m["mAP_macro"] == pytest.approx(100 * (5 / 6 + 1 / 2) / 2, abs=1e-4)
    # micro: scores sorted 3.0(+) 2.0(-) 1.0(-) 0.5(+) 0.5(+) -1(-) -2(-) -3(-); tie at 0.5 -> one threshold.
    # precision/recall steps: (1, 1/3) (1/2, 1/3) (1/3, 1/3) (3/5, 1) -> AP = 1/3 * 1 + 2/3 * 3/5 = 11/15.
    assert m["mAP_micro"] == pytest.approx(100 * 11 / 15, abs=1e-4)
    # predictions >= 0: class 0 {0, 1, 2} (tp 2, fp 1) -> F1 0.8; class 1 {1, 2} (tp 1, fp 1) -> F1 2/3.
    assert m["F1_macro"] == pytest.approx(100 * (0.8 + 2 / 3) / 2, abs=1e-4)
    assert m["F1_micro"] == pytest.approx(100 * 2 * 3 / (2 * 3 + 2 + 0), abs=1e-4)  # tp 3, fp 2, fn 0
    # batch 1: scores 3(+) 1(-) 0.5(+) -1(-) -> AP (1 + 2/3) / 2 = 5/6; batch 2: 2(-) 0.5(+) -2 -3 -> AP 1/2.
    assert m["mAP_micro_batchavg"] == pytest.approx(100 * (5 / 6 * 2 + 1 / 2 * 2) / 4, abs=1e-4)


def test_single_head_trains_on_all_of_train() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(20, 4), (torch.rand(20, 3) > 0.5).long()
    kw = {"epochs": 2, "batch_size": 8, "momentum": 0.9, "weight_decay": 0.0, "seed": 0, "device": "cpu"}
    res = fit_grid({"f": x}, y, {"f": x}, y, Target("multi", 3), lrs=(0.1,), holdout_fraction=0.0, progress=False, **kw)
    assert res.best == "f@lr=0.1" and np.isnan(res.holdout)
    with pytest.raises(ValueError, match="nothing to select 2 heads"):
        fit_grid({"f": x}, y, {"f": x}, y, Target("multi", 3), lrs=(0.1, 1.0), holdout_fraction=0.0, progress=False,
                 **kw)  # fmt: skip


def test_protocol_fields_are_checked() -> None:
    p = BigEarthNetLinearProtocol.paper(modality="s2", label_fraction="0.01")
    assert p.modality == "s2" and p.label_fraction == 0.01 and p.lrs == (0.01,) and p.batch_size == 256
    with pytest.raises(VitbenchError, match="--set modality='s4'"):
        BigEarthNetLinearProtocol.paper(modality="s4")
    with pytest.raises(VitbenchError, match="rgb_adaptation"):
        BigEarthNetLinearProtocol.paper(rgb_adaptation="gray")
