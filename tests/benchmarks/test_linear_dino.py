"""linear-dino: DINO's per-architecture features, features recomputed from augmented images every epoch, best epoch
selection, and exact resume after an interruption."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmarks.catalog import get_task
from benchmarks.classification import training
from benchmarks.classification.linear_dino import (
    LinearDinoHarness,
    dino_features,
    feature_recipe,
    train_transform,
)
from benchmarks.classification.protocols import LinearDinoProtocol
from benchmarks.harness import RunContext
from methods import build_encoder
from methods.errors import VitbenchError
from tests.methods._official import TINY, shrink


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_feature_recipe_is_dinos_per_architecture_rule() -> None:
    with torch.device("meta"):
        vits, vitb, rn50 = (build_encoder(f"dino:{v}", weights="random") for v in ("vits16", "vitb16", "rn50"))
    p = LinearDinoProtocol()
    assert feature_recipe(vits, p) == (4, False)  # README: ViT-S concatenates the last 4 CLS tokens
    assert feature_recipe(vitb, p) == (1, True)  # ViT-B: last CLS + avg-pooled patch tokens
    assert feature_recipe(rn50, p) == (0, False)  # ResNet-50: the pooled global feature
    assert feature_recipe(vits, LinearDinoProtocol(n_last_blocks=1, avgpool=True)) == (1, True)
    with pytest.raises(VitbenchError, match="avgpool=true needs n_last_blocks=1"):
        feature_recipe(vits, LinearDinoProtocol(avgpool=True))
    with pytest.raises(VitbenchError, match="has 12 blocks"):
        feature_recipe(vits, LinearDinoProtocol(n_last_blocks=13))


def test_features_are_get_intermediate_layers_of_dinos_vit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reference from the blocks themselves: DINO's ``get_intermediate_layers`` applies the final norm to each of the
    last n block outputs; eval_linear.py takes their CLS and, with avgpool, the mean of the last one's patches."""
    shrink(monkeypatch, "dino", "vits16", **TINY)
    enc = build_encoder("dino:vits16", weights="random")
    x = torch.randn(3, 3, 32, 32)
    m = enc.model
    with torch.no_grad():
        h = m._pos_embed(m.patch_embed(x))
        outs = []
        for blk in m.blocks:
            h = blk(h)
            outs.append(m.norm(h))
        want4 = torch.cat([o[:, 0] for o in outs[-4:]], dim=-1)
        want1 = torch.cat([outs[-1][:, 0], outs[-1][:, 1:].mean(1)], dim=-1)
    torch.testing.assert_close(dino_features(enc, x, 4, False), want4, atol=1e-5, rtol=0)
    torch.testing.assert_close(dino_features(enc, x, 1, True), want1, atol=1e-5, rtol=0)


def test_train_transform_draws_a_new_crop_and_flip_per_image() -> None:
    img = Image.new("RGB", (64, 48))
    img.paste((255, 0, 0), (0, 0, 20, 48))
    t = train_transform(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.manual_seed(0)
    a, b = t(img), t(img)
    assert a.shape == (3, 32, 32) and not torch.equal(a, b)
    assert [type(s).__name__ for s in t.transforms] == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ToTensor",
        "Normalize",
    ]


def test_smoke_run_recomputes_features_every_epoch_and_resumes(
    imagefolder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shrink(monkeypatch, "dino", "vits16", **TINY)
    spec = get_task("linear-dino")
    protocol = LinearDinoProtocol.smoke()

    def run(work: Path):  # noqa: ANN202
        enc = build_encoder("dino:vits16", weights="random")
        seen: list[int] = []
        probe = enc.forward_probe
        monkeypatch.setattr(enc, "forward_probe", lambda x, b: (seen.append(len(x)), probe(x, b))[1])
        ctx = RunContext(task=spec, encoder=enc, data_root=imagefolder, work_dir=work, progress=False)
        return LinearDinoHarness(spec).run(ctx, protocol), sum(seen)

    full, images = run(tmp_path / "a")
    n_train, n_val, epochs = 96, 48, protocol.epochs
    assert images == epochs * (n_train + n_val)  # every epoch: all of train through the encoder, then val
    history = full.extra["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert full.metrics["top1"] == max(h["top1"] for h in history)
    assert full.metrics["last_top1"] == history[-1]["top1"]
    assert full.probe["pooling"] == "CLS of the last 4 block(s)" and full.probe["lr"] == pytest.approx(0.5 * 16 / 256)
    assert "RandomResizedCrop(32)" in full.probe["augmentation"]
    assert full.probe["training_data"] == "all of train (96 images)"

    save = training.Checkpoint.save

    def killed(self, state, info):  # noqa: ANN001
        save(self, state, info)
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Checkpoint, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.setattr(training.Checkpoint, "save", save)
    resumed, images = run(tmp_path / "b")
    assert images == (epochs - 1) * (n_train + n_val)  # epoch 1 came from the checkpoint
    assert resumed.extra["history"] == history and resumed.metrics == full.metrics


def test_linear_probe_card_states_how_it_differs_from_dino() -> None:
    from benchmarks.classification.linear import differences_from_dino
    from benchmarks.classification.protocols import LinearProtocol

    text = " ".join(differences_from_dino(LinearProtocol()))
    assert "no augmentation" in text and "90% of train" in text and "10% (per class)" in text
    assert "last-epoch weights" in text and "13 base lrs" in text and "no refit" in text


def test_checkpoint_of_another_run_or_a_torn_file_starts_over(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    info = training.DistInfo()
    training.Checkpoint(tmp_path, "c", {"protocol": "a"}).save({"epoch": 3}, info)
    assert training.Checkpoint(tmp_path, "c", {"protocol": "a"}).load("cpu")["epoch"] == 3
    assert training.Checkpoint(tmp_path, "c", {"protocol": "b"}).load("cpu") is None
    assert "checkpoint of another run" in capsys.readouterr().err
    (tmp_path / "c.pt").write_bytes(b"\x80\x02 torn")
    assert training.Checkpoint(tmp_path, "c", {"protocol": "a"}).load("cpu") is None
    assert "unreadable checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp file left behind


def test_a_killed_writers_temp_file_is_removed_by_the_next_save(tmp_path: Path) -> None:
    """SIGKILL/SIGTERM during ``torch.save`` skips the ``finally``: the next save removes that temp file (a ViT-B
    fine-tuning checkpoint with optimizer state is about 1 GB), and leaves other runs' checkpoints alone."""
    stale = tmp_path / ".c.pt.999999.tmp"
    stale.write_bytes(b"half a checkpoint")
    (tmp_path / ".other.pt.999999.tmp").write_bytes(b"another checkpoint's")
    training.Checkpoint(tmp_path, "c", {"protocol": "a"}).save({"epoch": 1}, training.DistInfo())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.999999.tmp", "c.pt"]
