"""1 + 2: what loads is what a trained network holds. For every registered adapter, its own official layout with one
tensor spoilt is refused: NaN or inf (the error names the key, the load report counts them), an integer tensor where
the model has floats; a position table of a grid the method does not declare is refused unless
``resample_pos_embed`` is asked for, which the load report then carries."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from methods import CheckpointError, get_adapter, list_methods
from methods.base import MethodAdapter
from methods.weights import LoadReport, load_strict
from tests.trust._ckpt import cached_tiny, official, our_state_dict, spoil, victim_key

METHODS = list_methods()
PATH = Path("spoilt.pth")


def _load(method: str, how: str) -> tuple[str, pytest.ExceptionInfo]:
    adapter, v, enc, sd = cached_tiny(method)
    key = victim_key(sd)
    with pytest.raises(CheckpointError) as err:
        adapter.load_weights(enc.model, enc.global_head, official(adapter, v, spoil(sd, key, how)), v, PATH)
    return key, err


@pytest.mark.parametrize("method", METHODS)
def test_nan_weights_are_refused_naming_the_key(method: str) -> None:
    key, err = _load(method, "nan")
    msg = str(err.value)
    assert "NaN or inf" in msg and key in msg and str(PATH) in msg and "\n" not in msg


@pytest.mark.parametrize("method", METHODS)
def test_integer_weights_are_not_cast_to_float(method: str) -> None:
    key, err = _load(method, "int")
    msg = str(err.value)
    assert "refusing to cast integer weights to float" in msg and key in msg, msg


def test_one_inf_is_enough_and_the_report_counts_them() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["0.bias"][1] = float("inf")
    sd["1.weight"][0] = float("nan")
    report = LoadReport()
    with pytest.raises(CheckpointError, match=r"2 of 4 tensors hold NaN or inf \(first: 0\.bias, 0 NaN and 1 inf"):
        load_strict(model, sd, report=report, path=PATH)
    assert report.non_finite == 2
    assert not torch.isinf(model.state_dict()["0.bias"]).any()  # nothing was loaded
    good = LoadReport()
    load_strict(model, model.state_dict(), report=good)
    assert good.non_finite == 0 and good.matched == 4


def test_integer_buffers_still_load_as_integers() -> None:
    model = torch.nn.BatchNorm1d(3)
    sd = dict(model.state_dict())
    assert sd["num_batches_tracked"].dtype == torch.int64
    load_strict(model, sd)  # int64 into int64: fine
    sd["num_batches_tracked"] = torch.tensor(1.5)
    with pytest.raises(CheckpointError, match="refusing to cast float weights to integer"):
        load_strict(model, sd)


def test_every_adapter_loads_through_the_checked_path() -> None:
    """The checks live in ``MethodAdapter.load_weights`` / ``load_strict``: no adapter may bypass them."""
    for method in METHODS:
        cls = type(get_adapter(method))
        assert cls.load_weights is MethodAdapter.load_weights, f"{method} overrides load_weights"
        assert cls.build is MethodAdapter.build, f"{method} overrides build"


# ------------------------------------------------------------------------------------------------ 2 foreign grids
def _grid_methods() -> list[str]:
    out = []
    for m in METHODS:
        v = min(get_adapter(m).variants, key=lambda v: v.params_m or 1e9)
        if "vit" in v.arch and "gcvit" not in v.arch:
            out.append(m)
    return out


def _foreign_table(enc_pos: torch.Tensor) -> torch.Tensor:
    """A square table one patch per side larger than ``enc_pos``'s grid (same prefix slots, same width)."""
    n, d = enc_pos.shape[1], enc_pos.shape[2]
    prefix = next(p for p in (0, 1) if int((n - p) ** 0.5) ** 2 == n - p)
    side = int((n - prefix) ** 0.5) + 3
    return torch.randn(1, prefix + side * side, d)


@pytest.mark.parametrize("method", _grid_methods())
def test_a_position_table_of_another_grid_is_refused_unless_asked(method: str) -> None:
    adapter, v, enc, sd = cached_tiny(method)
    pos = getattr(enc.model, "pos_embed", None)
    if not isinstance(pos, torch.Tensor) or pos.ndim != 3:
        pytest.fail(f"{method}: expected a ViT with a learned [1, N, D] pos_embed")
    sd = dict(sd)
    sd["pos_embed"] = _foreign_table(pos)
    ckpt = official(adapter, v, sd)
    before = pos.detach().clone()
    with pytest.raises(CheckpointError, match="--resample-pos-embed") as err:
        adapter.load_weights(enc.model, enc.global_head, ckpt, v, PATH)
    assert "grid" in str(err.value) and "\n" not in str(err.value)
    report = adapter.load_weights(enc.model, enc.global_head, ckpt, v, PATH, resample_pos_embed=True)
    assert report.resample_pos_embed
    assert any("--resample-pos-embed" in line for line in report.converted), report.converted
    assert pos.shape == before.shape and not torch.equal(pos, before)  # resampled to the model's grid and loaded


def test_the_issue_case_a_50_token_table_into_vits16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[1, 50, 384] (a 7x7 ViT-S/32 table) into dino:vits16 (14x14): refused; with the option it loads, said so."""
    from methods import build_encoder
    from tests.methods._official import shrink

    shrink(monkeypatch, "dino", "vits16", depth=1)  # ViT-S/16's width and grid, one block

    enc = build_encoder("dino:vits16", weights="random")
    sd = {k.removeprefix("model."): t for k, t in enc.state_dict().items()}
    sd["pos_embed"] = torch.randn(1, 50, 384)
    torch.save(sd, tmp_path / "s32.pth")
    with pytest.raises(CheckpointError, match=r"7x7 grid, but dino:vits16 .* is 14x14"):
        build_encoder("dino:vits16", weights=tmp_path / "s32.pth")
    loaded = build_encoder("dino:vits16", weights=tmp_path / "s32.pth", resample_pos_embed=True)
    rep = loaded.identity.load_report
    assert rep is not None and rep.resample_pos_embed and any("7x7 -> 14x14" in c for c in rep.converted)


def test_a_declared_grid_resamples_without_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """SemMAE's files carry a 28x28 table (declared): it loads into the 14x14 model and the report says why."""
    adapter = get_adapter("semmae")
    v = adapter.variant("vitb16")
    small = dataclasses.replace(v, model_kwargs={"embed_dim": 64, "depth": 2, "num_heads": 4})
    monkeypatch.setattr(type(adapter), "variants", (small, *adapter.variants[1:]))
    enc = adapter.build("vitb16", weights="random")
    sd = our_state_dict(enc)
    sd["pos_embed"] = torch.randn(1, 1 + 28 * 28, 64)
    report = adapter.load_weights(enc.model, None, official(adapter, small, sd), small, PATH)
    assert not report.resample_pos_embed
    assert any("a grid the method's files are released at" in c for c in report.converted)
