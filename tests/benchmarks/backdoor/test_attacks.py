"""HTBA poisons, triggers, the poison cache, and both harnesses end to end on tiny encoders and generated data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from benchmarks.backdoor import poison as poison_mod
from benchmarks.backdoor.harness import BadNetsHarness, HtbaHarness
from benchmarks.backdoor.images import (
    Normalizer,
    SquareImages,
    load_square,
    make_trigger,
    paste,
    random_positions,
    read_trigger,
)
from benchmarks.backdoor.poison import generate_poisons, greedy_pairs, pgd_batch
from benchmarks.backdoor.protocols import PAPER_PAIRS, BadNetsProtocol, HtbaProtocol
from benchmarks.catalog import get_task
from benchmarks.cli import main
from benchmarks.data.imagefolder import scan_split
from benchmarks.harness import RunContext
from benchmarks.synth import synth
from methods import Encoder, build_encoder
from methods.errors import DataError, VitbenchError
from tests.methods._official import shrink

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 32}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> Encoder:
    shrink(monkeypatch, "deit", "deits16", **TINY)
    return build_encoder("deit", "deits16", weights="random")


def _ctx(enc: Encoder, task: str, data: Path, work: Path, seed: int = 0) -> RunContext:
    return RunContext(task=get_task(task), encoder=enc, data_root=data, work_dir=work, seed=seed, progress=False)


def htba(**kw: Any) -> HtbaProtocol:
    p = HtbaProtocol.smoke(**kw)
    assert isinstance(p, HtbaProtocol)
    return p


def badnets(**kw: Any) -> BadNetsProtocol:
    p = BadNetsProtocol.smoke(**kw)
    assert isinstance(p, BadNetsProtocol)
    return p


def _images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# ------------------------------------------------------------------------------------------------ poisons
def test_greedy_pairs_are_one_to_one_and_closest_first() -> None:
    """Closest (1, 0) = 0.1 first; then row 1 and column 0 leave: (0, 2) = 0.2; then (2, 1) = 5 (row 0's 0.3 is
    taken). [BT]'s loop would give column 1 to row 0 or 1 again."""
    dist = torch.tensor([[0.9, 0.3, 0.2], [0.1, 0.4, 8.0], [7.0, 5.0, 6.0]])
    assert greedy_pairs(dist).tolist() == [1, 2, 0]
    assert sorted(greedy_pairs(torch.rand(6, 6)).tolist()) == list(range(6))


@pytest.mark.parametrize("space", ["pixel", "normalized"])
def test_poisons_respect_the_bound_and_stay_valid_images(tiny: Encoder, space: str) -> None:
    """A large step saturates the perturbation, so the L-inf bound is what limits it: never beyond eps (pixel) or
    eps * std_c (normalised, [BT]'s bound, per channel) in 8-bit steps, and the poisons are uint8 images."""
    targets, sources = _images(4, 0), _images(4, 1)
    patched = paste(sources, make_trigger(8, 4, 0), random_positions(4, 32, 8, np.random.default_rng(0)))
    norm = Normalizer(tiny.data_config.mean, tiny.data_config.std)
    kw: dict[str, Any] = {"resolution": 32, "patch_size": 8, "pgd_lr": 20.0, "eps_space": space, "pgd_stop_loss": 0}
    p = htba(pgd_iters=12, **kw)
    first = pgd_batch(tiny, targets.float() / 255, patched.float() / 255, norm, htba(pgd_iters=1, **kw))[1]
    poisons, losses = pgd_batch(tiny, targets.float() / 255, patched.float() / 255, norm, p)
    assert poisons.dtype == torch.uint8 and poisons.shape == targets.shape
    delta = (poisons.int() - targets.int()).abs().amax(dim=(0, 2, 3))  # per channel
    limit = torch.full((3,), 16) if space == "pixel" else torch.floor(16 * torch.tensor(tiny.data_config.std) + 1e-6)
    assert (delta <= limit).all() and (delta == limit).all(), (delta, limit)  # reached, never exceeded
    assert losses.mean() < first.mean()  # the features moved towards the patched sources


def test_poison_cache_resumes(tiny: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches are cached as they finish: after losing one, a rerun computes only that one and returns exactly
    the poisons of an uninterrupted run."""
    targets, sources, trigger = _images(8, 2), _images(8, 3), make_trigger(8, 4, 1)
    p = htba(resolution=32, patch_size=8, pgd_iters=3, pgd_batch=4, n_generation=8, num_poison=16)
    full = generate_poisons(tiny, targets, sources, trigger, p, folder=tmp_path / "c", seed=5, device="cpu")
    assert len(full.images) == 16 and len(list((tmp_path / "c").glob("batch_*.npz"))) == 4  # 2 epochs x 2 batches
    (tmp_path / "c" / "batch_1_0001.npz").unlink()
    calls: list[int] = []
    real = poison_mod.pgd_batch

    def counted(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(poison_mod, "pgd_batch", counted)
    again = generate_poisons(tiny, targets, sources, trigger, p, folder=tmp_path / "c", seed=5, device="cpu")
    assert len(calls) == 1
    assert torch.equal(again.images, full.images) and torch.equal(again.target_index, full.target_index)
    torch.testing.assert_close(again.features, full.features)
    # Each epoch perturbs every target image once.
    assert sorted(full.target_index[:8].tolist()) == sorted(full.target_index[8:].tolist()) == list(range(8))


# ------------------------------------------------------------------------------------------------ triggers
def test_trigger_is_seeded_and_lands_where_recorded(tmp_path: Path, imagefolder: Path, tiny: Encoder) -> None:
    t1, t2 = make_trigger(12, 4, 7), make_trigger(12, 4, 7)
    assert torch.equal(t1, t2) and not torch.equal(t1, make_trigger(12, 4, 8))
    assert set(t1.unique().tolist()) > {0, 255}  # binary cells, resized bilinearly as HTBA's trigger PNGs
    p = htba(resolution=32, patch_size=8, block_size=8, filter_size=9, n_pairs=1, defense="none")
    out = HtbaHarness(get_task("backdoor-htba")).run(_ctx(tiny, "backdoor-htba", imagefolder, tmp_path), p)
    (row,) = out.extra["pairs"]
    trigger = read_trigger(Path(row["trigger_png"]))
    rec = json.loads(Path(row["test_triggers"]).read_text())
    assert len(rec["images"]) == p.n_test and len(rec["yx"]) == p.n_test
    val = scan_split(imagefolder, "val")
    idx = [val.paths.index(Path(f)) for f in rec["images"]]
    assert {val.targets[i] for i in idx} == {val.classes.index(row["source"])}
    shown = SquareImages(val, 32, "bilinear", None, idx, trigger, np.asarray(rec["yx"]))
    for k, (y, x) in enumerate(rec["yx"]):
        img, clean = shown[k][0], load_square(val.paths[idx[k]], 32)
        assert torch.equal(img[:, y : y + 8, x : x + 8], trigger)
        mask = torch.ones(32, 32, dtype=torch.bool)
        mask[y : y + 8, x : x + 8] = False
        assert torch.equal(img[:, mask], clean[:, mask])
    assert set(out.metrics) == {"clean_acc", "asr", "robust_acc", "asr_unpatched"}  # defense=none: no blocked


# ------------------------------------------------------------------------------------------------ the attacks
@pytest.fixture(scope="module")
def dark_imagefolder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic ImageFolder with inverted colours (dark backgrounds): blacking out a box then leaves an image
    that looks like background there, instead of adding a new odd-looking patch a random encoder could key on."""
    root = synth("imagefolder", tmp_path_factory.mktemp("dark"), seed=0)
    for path in root.rglob("*.JPEG"):
        with Image.open(path) as img:
            inverted = ImageOps.invert(img.convert("RGB"))
        inverted.save(path, quality=92)
    return root


def test_badnets_high_poison_rate_backdoors_and_blocking_removes_it(
    dark_imagefolder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30% of train carries a 16 px trigger in the bottom-right 4x4-grid cell of a tiny random DeiT (64 px): the
    head learns the backdoor (ASR >= 75%, chance is 17%), and rollout-guided blocking finds the trigger and cuts
    the ASR by at least 40 points (measured: 90 -> 32.5)."""
    shrink(monkeypatch, "deit", "deits16", embed_dim=64, depth=4, num_heads=4, img_size=64)
    enc = build_encoder("deit", "deits16", weights="random", seed=0)
    p = badnets(
        resolution=64,
        patch_size=16,
        margin=0,
        block_size=20,
        filter_size=17,
        poison_rate=0.3,
        victim_lr=0.1,
        victim_epochs=40,
    )
    out = BadNetsHarness(get_task("backdoor-badnets")).run(_ctx(enc, "backdoor-badnets", dark_imagefolder, tmp_path), p)
    m = out.metrics
    assert m["asr"] >= 75 and m["robust_acc"] <= 25
    assert m["asr_blocked"] <= m["asr"] - 40
    assert m["robust_acc_blocked"] >= m["robust_acc"] + 40
    boxes = json.loads((tmp_path / "test_triggers.json").read_text())["blocked_boxes_y0y1x0x1"]
    on_trigger = [y0 <= 48 and y1 >= 60 and x0 <= 48 and x1 >= 60 for y0, y1, x0, x1 in boxes]
    assert np.mean(on_trigger) >= 0.75  # the map's peak sits on the trigger [48, 64)^2
    assert out.probe["defense"] == "rollout" and out.extra["pairs"][0]["n_poisons"] == round(0.3 * 96)


# ------------------------------------------------------------------------------------------------ refusals
def test_bad_settings_are_refused_before_any_work(tiny: Encoder, imagefolder: Path, tmp_path: Path) -> None:
    with pytest.raises(VitbenchError, match="num_poison"):
        htba(num_poison=100)
    with pytest.raises(VitbenchError, match="odd size"):
        badnets(filter_size=8)
    harness = HtbaHarness(get_task("backdoor-htba"))
    ctx = _ctx(tiny, "backdoor-htba", imagefolder, tmp_path)
    with pytest.raises(DataError, match="not class folders"):
        harness.run(ctx, htba(pairs=("class_0_disc:n02096294",)))
    with pytest.raises(DataError, match=r"class_0_disc: 16 image\(s\).*n_generation=16"):
        harness.run(ctx, htba(n_generation=16, num_poison=16))
    resnet = build_encoder("dino", "rn50", weights="random")
    with pytest.raises(VitbenchError, match="defense=rollout.*no token attention"):
        harness.run(_ctx(resnet, "backdoor-htba", imagefolder, tmp_path), htba(defense="rollout"))
    assert not list(tmp_path.rglob("*.npz"))  # nothing was generated


def _paper() -> HtbaProtocol:
    p = HtbaProtocol.paper()
    assert isinstance(p, HtbaProtocol)
    return p


def test_paper_pairs_fall_back_to_seeded_pairs(tiny: Encoder, imagefolder: Path) -> None:
    from benchmarks.backdoor.harness import resolve_pairs

    classes = scan_split(imagefolder, "train").classes
    pairs, why = resolve_pairs(_paper(), classes, seed=0)
    assert len(pairs) == 10 and "lacks the paper's ImageNet wnids" in why
    assert pairs == resolve_pairs(_paper(), classes, seed=0)[0] != resolve_pairs(_paper(), classes, seed=1)[0]
    wnids = tuple(sorted({c for pair in PAPER_PAIRS for c in pair.split(":")}))
    assert resolve_pairs(_paper(), wnids, seed=3)[0] == [tuple(x.split(":")) for x in PAPER_PAIRS]


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("task", ["backdoor-htba", "backdoor-badnets"])
def test_smoke_run_writes_a_valid_record(
    task: str, imagefolder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    shrink(monkeypatch, "deit", "deits16", **TINY)
    argv = ["run", "--method", "deit", "--task", task, "--data", str(imagefolder), "--weights", "random", "--smoke"]
    assert main([*argv, "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    record = tmp_path / "runs" / task / "deit" / "deits16__seed0.json"
    data = json.loads(record.read_text())
    assert {"clean_acc", "asr", "clean_acc_blocked", "asr_blocked"} <= set(data["metrics"])
    assert data["track"] == "smoke" and data["probe"]["defense"] == "rollout"
    rows = data["extra"]["pairs"]
    assert len(rows) == (2 if task == "backdoor-htba" else 1)
    for metric in ("clean_acc", "asr", "asr_blocked"):
        assert data["metrics"][metric] == pytest.approx(np.mean([r[metric] for r in rows]))
    assert main(["validate", str(record)]) == 0
