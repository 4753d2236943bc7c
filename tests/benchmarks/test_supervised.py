"""``imagenet-supervised`` and the robustness tasks: top-1 equals a plain timm forward + argmax over the same images,
ImageNet-A scores among its 200 classes as its authors' eval.py does, mCE by hand, and the runner end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torchvision import transforms as T

from benchmarks.catalog import get_task
from benchmarks.classification.protocols import ALEXNET_ERR
from benchmarks.classification.supervised import SupervisedHarness, mean_corruption_error, predict_top5
from benchmarks.data import imagenet as layouts
from benchmarks.data.imagenet_classes import IMAGENET_A_WNIDS, INDEX, WNIDS
from benchmarks.harness import RunContext
from benchmarks.runner import RunRequest, run
from benchmarks.synth import synth
from benchmarks.validate import validate_file
from methods import build_encoder
from methods.errors import DataError, VitbenchError
from tests.methods._official import shrink

TINY = {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}
SYNTH_IDX = [INDEX[w] for w in layouts.SYNTH_WNIDS]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("imagenet", tmp_path_factory.mktemp("imagenet"), seed=0)


def _deit(tmp_path: Path, favour: int | None = None) -> tuple[Path, torch.nn.Module]:
    """DeiT's release file (``{'model': ...}``) of a tiny random DeiT whose head prefers the 4 synthetic classes (so
    top-1 is neither 0 nor constant), or, with ``favour``, one class outside them above all."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", num_classes=1000, **TINY).eval()
    with torch.no_grad():
        model.head.bias.fill_(-50.0)
        model.head.bias[SYNTH_IDX] = 0.0
        model.head.weight.mul_(20.0)
        if favour is not None:
            model.head.bias[favour] = 50.0
    path = tmp_path / "deit.pth"
    torch.save({"model": model.state_dict()}, path)
    return path, model


def _reference(model: torch.nn.Module, root: Path, subset: list[int] | None = None) -> dict[str, np.ndarray]:
    """The plain way: torchvision's DeiT eval pipeline at 64 px (Resize(int(64 / 0.875)), bicubic, CenterCrop),
    the timm model, argmax / top-5; labels from the wnid folder names in sorted order."""
    tf = T.Compose(
        [
            T.Resize(int(64 / 0.875), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(64),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    files = sorted((p for p in root.glob("*/*") if p.is_file()), key=lambda p: p.name)
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in files])
    with torch.no_grad():
        logits = model(x)
    if subset is not None:  # natural-adv-examples eval.py: output[:, indices_in_1k], then max(1)
        logits = logits[:, subset]
    top5 = logits.topk(5, dim=1).indices.numpy()
    if subset is not None:
        top5 = np.asarray(subset)[top5]
    return {
        "names": np.array([p.name for p in files]),
        "top5": top5,
        "labels": np.array([sorted(WNIDS).index(p.parent.name) for p in files]),
    }


def _ctx(task: str, enc, data_root: Path, work: Path, smoke: bool = True) -> RunContext:  # type: ignore[no-untyped-def]
    return RunContext(get_task(task), enc, data_root, work, progress=False, smoke=smoke)


def test_top1_equals_plain_timm_forward_and_argmax(data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shrink(monkeypatch, "deit", "deits16", **TINY)
    path, model = _deit(tmp_path)
    enc = build_encoder("deit:deits16", weights=path, classifier=True)
    ref = _reference(model, data / "val")
    want1 = 100.0 * float((ref["top5"][:, 0] == ref["labels"]).mean())
    want5 = 100.0 * float((ref["top5"] == ref["labels"][:, None]).any(axis=1).mean())
    assert 0.0 < want1 < 100.0, "the test head must make top-1 informative"

    protocol = get_task("imagenet-supervised").protocol_for(smoke=True, overrides={"resolution": 64})
    out = SupervisedHarness(get_task("imagenet-supervised")).run(
        _ctx("imagenet-supervised", enc, data, tmp_path), protocol
    )
    assert out.metrics == pytest.approx({"top1": want1, "top5": want5})
    # Per image, the same predictions, from both val layouts.
    for root in (data, data / "flat"):
        split, _ = layouts.scan_imagenet_val(root)
        pred, labels = predict_top5(enc, split, resolution=64)
        order = np.argsort([p.name for p in split.paths])
        np.testing.assert_array_equal(pred[order], ref["top5"])
        np.testing.assert_array_equal(labels[order], ref["labels"])
    assert out.dataset.splits == {"val": 12} and out.dataset.n_classes == 1000
    assert out.probe["transform"] == {
        "resize": 73,
        "crop": 64,
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }


def test_imagenet_a_scores_among_its_200_classes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A head that puts tench (not one of ImageNet-A's 200) above everything: a 1000-way argmax would be wrong on
    every image; restricted to the 200 as the authors' eval.py restricts it, the prediction equals theirs."""
    shrink(monkeypatch, "deit", "deits16", **TINY)
    assert "n01440764" not in IMAGENET_A_WNIDS
    path, model = _deit(tmp_path, favour=INDEX["n01440764"])
    enc = build_encoder("deit:deits16", weights=path, classifier=True)
    root = synth("imagenet-a", tmp_path / "imagenet-a")
    ref = _reference(model, root, subset=[INDEX[w] for w in IMAGENET_A_WNIDS])
    protocol = get_task("imagenet-a").protocol_for(smoke=True, overrides={"resolution": 64})
    out = SupervisedHarness(get_task("imagenet-a")).run(_ctx("imagenet-a", enc, root, tmp_path), protocol)
    assert out.metrics["top1"] == pytest.approx(100.0 * float((ref["top5"][:, 0] == ref["labels"]).mean()))
    assert out.metrics["top1"] > 0.0
    assert out.dataset.n_classes == 200 and out.probe["label_space"] == "200 classes (logits restricted)"


def test_mean_corruption_error_by_hand() -> None:
    """AugMix's compute_mce: CE_c = 100 * (1 - mean accuracy over severities) / AlexNet's error on c."""
    got = mean_corruption_error({("gaussian_noise", 1): 50.0, ("gaussian_noise", 2): 30.0, ("fog", 1): 80.0})
    ce_gn, ce_fog = 100 * 0.6 / 0.886428, 100 * 0.2 / 0.819324
    assert ALEXNET_ERR["gaussian_noise"] == 0.886428 and ALEXNET_ERR["fog"] == 0.819324
    assert got == pytest.approx(
        {
            "top1_gaussian_noise": 40.0,
            "top1_fog": 80.0,
            "CE_gaussian_noise": ce_gn,
            "CE_fog": ce_fog,
            "mCE": (ce_gn + ce_fog) / 2,
            "top1": (50 + 30 + 80) / 3,
        }
    )
    assert "CE_saturate" not in mean_corruption_error({("saturate", 1): 10.0})  # extras: no AlexNet normaliser


def test_rerun_reads_the_cache(data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Predictions are cached per split: a second run (or one resumed after a kill) does no forward pass again."""
    shrink(monkeypatch, "deit", "deits16", **TINY)
    path, _ = _deit(tmp_path)
    enc = build_encoder("deit:deits16", weights=path, classifier=True)
    protocol = get_task("imagenet-supervised").protocol_for(smoke=True, overrides={"resolution": 64})
    harness = SupervisedHarness(get_task("imagenet-supervised"))
    first = harness.run(_ctx("imagenet-supervised", enc, data, tmp_path), protocol).metrics

    def boom(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("forward pass on a cached split")

    monkeypatch.setattr(enc, "forward_logits", boom)
    assert harness.run(_ctx("imagenet-supervised", enc, data, tmp_path), protocol).metrics == first


# ------------------------------------------------------------------------------------------------ the runner
@pytest.mark.parametrize("method", ["deit:deits16", "gcvit:xxtiny"])
def test_smoke_run_writes_a_valid_record(
    data: Path, method: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``vitbench run --method M --task imagenet-supervised --data D --weights random --smoke`` (DeiT shrunk; GC
    ViT-XXT at its real 224 px, which its windows require)."""
    if method.startswith("deit"):
        shrink(monkeypatch, "deit", "deits16", **TINY)
    req = RunRequest(method=method, task="imagenet-supervised", data=data, weights="random", smoke=True, out=tmp_path)
    path, record = run(req)
    assert record is not None and record.track == "smoke" and set(record.metrics) == {"top1", "top5"}
    assert validate_file(path) is None
    assert json.loads(path.read_text())["probe"]["classifier"]["labels"] == "imagenet-1k"


def test_paper_track_on_other_data_is_refused_before_computing(
    data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shrink(monkeypatch, "deit", "deits16", **TINY)
    weights, _ = _deit(tmp_path)  # a real release file: random weights are refused on the paper track up front
    req = RunRequest(method="deit:deits16", task="imagenet-supervised", data=data, weights=str(weights), out=tmp_path)
    with pytest.raises(DataError, match=r"12 images in val, but the paper track of imagenet-supervised .* 50000"):
        run(req)
    assert not list(tmp_path.rglob("*.json"))


def test_backbone_only_method_is_refused(data: Path, tmp_path: Path) -> None:
    req = RunRequest(
        method="dino:vits16", task="imagenet-supervised", data=data, weights="random", smoke=True, out=tmp_path
    )
    with pytest.raises(VitbenchError, match="dino:vits16 has no released classification head"):
        run(req)
    assert not list(tmp_path.rglob("*.json"))
