"""``Encoder.finetune_model`` over every registered adapter and variant: a trainable timm classifier that carries the
encoder's weights, or a one-line refusal for encoders whose global feature is not timm's pooled feature."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from methods import build_encoder, get_adapter, list_methods
from methods.errors import CheckpointError
from tests.methods._official import shrink
from tests.methods.test_contract import _round_trip_input, _round_trip_size

# One variant per adapter, its smallest: variants of one adapter share its loading and model-building code.
CASES = [
    pytest.param(m, v.name, id=f"{m}:{v.name}")
    for m in list_methods()
    for v in [min(get_adapter(m).variants, key=lambda v: v.params_m or 0.0)]
]

# Encoders whose forward_global is a head of their own (SelfPatch's class attention, CLIP's attention pool).
NOT_FINETUNABLE = {"selfpatch", "dualcoop"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(("method", "variant"), CASES)
def test_finetune_model_carries_the_encoders_weights(
    method: str, variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = get_adapter(method).variant(variant)
    shrink(monkeypatch, method, variant, **_round_trip_size(v.arch))
    enc = build_encoder(method, variant, weights="random", seed=0)
    if method in NOT_FINETUNABLE:
        with pytest.raises(CheckpointError, match="cannot be fine-tuned through a fresh timm head"):
            enc.finetune_model(7)
        return
    with torch.no_grad():  # non-trivial norms and biases, so a weight that is not carried over shows
        gen = torch.Generator().manual_seed(1)
        for p in enc.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    x = _round_trip_input(enc)
    model, report = enc.finetune_model(7, drop_path_rate=0.1)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in enc.parameters())  # the encoder itself stays frozen
    assert report.missing_allowed and all(k.split(".")[0] in ("head", "fc", "aux_head") for k in report.missing_allowed)
    model.eval()  # no drop path: the pooled feature is the encoder's global feature, so every weight came over
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_head(model.forward_features(x), pre_logits=True), enc.forward_global(x), atol=1e-5, rtol=0
        )
    assert model.train()(x).shape == (2, 7)  # after the comparison: a train-mode pass moves BatchNorm statistics
    avg, report = enc.finetune_model(7, global_pool="avg")
    if "fc_norm.weight" in avg.state_dict():  # timm ViTs; BEiT/MAE's head: the final norm is replaced by fc_norm
        assert {"fc_norm.weight", "fc_norm.bias"} <= set(report.missing_allowed)
        assert set(report.dropped) == (
            {"norm.weight", "norm.bias"} if "norm.weight" in enc.model.state_dict() else set()
        )
