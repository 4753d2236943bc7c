"""imagenet-finetune: layer-decay groups against MAE's formula, the schedules against the papers' formulas, a smoke run
from an authors'-layout checkpoint that writes a valid record, and exact resume after an interruption."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks.catalog import get_task
from benchmarks.classification import training
from benchmarks.classification.finetune import FinetuneHarness, lr_scheduler
from benchmarks.classification.protocols import (
    FINETUNE_RECIPES,
    FinetuneProtocol,
    finetune_recipe_name,
)
from benchmarks.harness import RunContext
from benchmarks.runner import RunRequest
from benchmarks.runner import run as run_request
from benchmarks.validate import validate_file
from methods import build_encoder, get_adapter
from methods.errors import CheckpointError, DataError, VitbenchError
from tests.methods._official import TINY, official_file, shrink


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models on shared cores: intra-op threads cost more in synchronisation than they save (21 s -> 2 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _mae_layer_id(name: str, depth: int) -> int:
    """MAE ``util/lr_decay.get_layer_id_for_vit`` (after BEiT), written from its source."""
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def _groups_by_param(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, tuple[float, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_layer_decay_groups_of_vit_b_match_mae_formula(pool: str) -> None:
    """Every parameter of a ViT-B classifier gets lr scale 0.65 ** (13 - layer_id) and weight decay 0.05, except 1-D
    parameters and cls_token / pos_embed (0): MAE's ``param_groups_lrd``, as timm's ``create_optimizer_v2`` builds
    it from the model's ``group_matcher``. One documented difference: with CLS pooling the final ``norm`` is kept
    and timm groups it with the last block (0.65), where MAE/BEiT give it 1.0."""
    from timm.optim import create_optimizer_v2

    with torch.device("meta"):  # shapes and names are all this needs: no 86 M random numbers
        enc = build_encoder("mae:vitb16", weights="random")
        model, _ = enc.finetune_model(1000, global_pool=pool, drop_path_rate=0.1)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.65)
    got = _groups_by_param(model, opt)
    depth, decay = 12, 0.65
    assert len(got) == len(list(model.parameters()))
    for name, p in model.named_parameters():
        scale = decay ** (depth + 1 - _mae_layer_id(name, depth))
        wd = 0.0 if p.ndim == 1 or name in ("cls_token", "pos_embed") else 0.05
        if pool == "token" and name.startswith("norm."):
            scale = decay  # timm: the final norm belongs to the last block's group
        assert got[name][0] == pytest.approx(scale, rel=1e-12), name
        assert got[name][1] == wd, name
    assert got["patch_embed.proj.weight"][0] == pytest.approx(0.65**13)
    assert got["head.weight"] == (1.0, 0.05)


def _lrs(recipe_name: str, steps: int, **changes) -> list[float]:
    """The lr of each optimizer step under the harness's scheduler (a group with lr_scale 1)."""
    import dataclasses

    recipe = dataclasses.replace(FINETUNE_RECIPES[recipe_name], **changes)
    lr = recipe.blr * recipe.batch_size / recipe.lr_batch
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": 1.0}], lr=lr)
    sched = lr_scheduler(recipe, opt, steps)
    out = []
    for epoch in range(recipe.epochs):
        if recipe.schedule == "epoch":
            sched.step(max(epoch - 1, 0))
        for s in range(steps):
            if recipe.schedule != "epoch":
                sched.step_update(epoch * steps + s)
            out.append(opt.param_groups[0]["lr"])
    return out


def test_mae_schedule_is_lr_sched_adjust_learning_rate() -> None:
    """MAE ``util/lr_sched.py``: linear warmup from 0 over the fractional epoch, then half-cosine to min_lr."""
    steps, epochs, warmup = 4, 10, 2
    got = _lrs("mae-vitb", steps, epochs=epochs, warmup_epochs=warmup)
    lr, min_lr = 5e-4 * 1024 / 256, 1e-6
    for i, value in enumerate(got):
        e = i / steps
        want = (
            lr * e / warmup
            if e < warmup
            else min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * (e - warmup) / (epochs - warmup)))
        )
        assert value == pytest.approx(want, rel=1e-9, abs=1e-15), i


def test_mfm_and_deit_schedules() -> None:
    """SimMIM/MFM: warmup and min lr scaled by bs/512 and one cosine over all steps; DeiT: per epoch, one epoch late."""
    steps, epochs = 3, 6
    got = _lrs("mfm-vitb", steps, epochs=epochs, warmup_epochs=1)
    scale = 2048 / 512
    lr, lo = 2e-3 * scale, 2.5e-7 * scale
    t = steps * epochs
    assert got[0] == pytest.approx(lo)
    assert got[steps] == pytest.approx(lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * steps / t)))
    deit = _lrs("deit-vitb", 1, epochs=epochs, warmup_epochs=2)
    assert deit[0] == deit[1] == pytest.approx(1e-6)  # epoch 1 still runs at the epoch-0 value, as DeiT's loop does
    assert deit[2] == pytest.approx(1e-6 + (5e-4 * 2 - 1e-6) / 2)


def test_auto_recipe_follows_the_pretraining_paper() -> None:
    assert finetune_recipe_name("mae", 768) == "mae-vitb" and finetune_recipe_name("mae", 1024) == "mae-vitl"
    assert finetune_recipe_name("ibot", 384) == "ibot-vits" and finetune_recipe_name("ibot", 768) == "ibot-vitb"
    assert finetune_recipe_name("mfm", 768) == "mfm-vitb"
    assert finetune_recipe_name("deit", 768) == "deit-vitb"
    assert finetune_recipe_name(None, 384) == "mae-vitb"  # no recipe of its own, no ViT-S in MAE's: nearest
    with pytest.raises(VitbenchError, match="family 'beit' .* has no recipe; families: deit, ibot, mae, mfm"):
        finetune_recipe_name("beit", 768)
    r = FinetuneProtocol(epochs=3, layer_decay=0.5).resolve("ibot", 768)
    assert (r.name, r.epochs, r.layer_decay, r.drop_path, r.global_pool) == ("ibot-vitb", 3, 0.5, 0.2, "token")
    assert FinetuneProtocol(recipe="mfm-vitb").resolve("mae", 384).name == "mfm-vitb"  # a forced recipe wins
    with pytest.raises(VitbenchError, match="unknown; recipes: auto, mae-vitb"):
        FinetuneProtocol.smoke(recipe="mae-vitz")


# The recipe each adapter's encoders carry (Variant.finetune_recipe), as each paper's fine-tuning section says.
AUTO_RECIPES = {
    "mae:vitb16": "mae-vitb",
    "mae:vitl16": "mae-vitl",
    "mae:vith14": "mae-vith",
    "semmae:vitb16": "mae-vitb",  # MAE's main_finetune.py, no command of its own
    "semmae:vitb8": "mae-vitb",
    "ibot:vits16": "ibot-vits",
    "ibot:vitb16": "ibot-vitb",
    "mfm:vitb16": "mfm-vitb",
    "mocov3:vits16": "deit-vits",
    "mocov3:vitb16": "deit-vitb",
    "dino:vits16": "mae-vitb",  # DINO publishes no fine-tuning recipe: MAE's, nearest size
    "deit:deitb16": "mae-vitb",
}


@pytest.mark.parametrize(("name", "recipe"), AUTO_RECIPES.items())
def test_auto_recipe_comes_from_the_encoder_not_the_method_name(name: str, recipe: str) -> None:
    """The harness reads the family from the encoder (its adapter's ``Variant.finetune_recipe``), never the method."""
    with torch.device("meta"):  # no weights needed: the family and the width decide
        enc = build_encoder(name, weights="random")
    assert enc.finetune_recipe == get_adapter(name.split(":")[0]).variant(name.split(":")[1]).finetune_recipe
    assert FinetuneProtocol().resolve(enc.finetune_recipe, enc.spec.embed_dim).name == recipe


def test_every_declared_recipe_family_has_recipes() -> None:
    from methods import list_methods

    for m in list_methods():
        for v in get_adapter(m).variants:
            if v.finetune_recipe is not None:
                assert finetune_recipe_name(v.finetune_recipe, 768).startswith(f"{v.finetune_recipe}-"), (m, v.name)


@pytest.mark.usefixtures("tiny_mae")
def test_the_harness_takes_the_recipe_family_from_the_encoder(imagefolder: Path, tmp_path: Path) -> None:
    """An encoder of a method the harness has never heard of, carrying iBOT's family, trains with iBOT's recipe:
    the choice follows the encoder's metadata alone."""
    enc = build_encoder("mae:vitb16", weights="random")
    enc.finetune_recipe = "ibot"
    out = FinetuneHarness(get_task("imagenet-finetune")).run(
        _ctx(enc, imagefolder, tmp_path), FinetuneProtocol.smoke(epochs=1, warmup_epochs=0)
    )
    assert out.probe["recipe"]["name"] == "ibot-vitb" and out.probe["pooling"] == "token"
    assert "finetune_recipe 'ibot'" in out.probe["recipe_rule"]


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture
def tiny_mae(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch, "mae", "vitb16", **TINY)


def _ctx(enc, data: Path, work: Path) -> RunContext:  # noqa: ANN001
    return RunContext(task=get_task("imagenet-finetune"), encoder=enc, data_root=data, work_dir=work, progress=False)


SMOKE = {"epochs": 3}


@pytest.mark.usefixtures("tiny_mae")
def test_interrupted_run_resumes_to_the_same_metrics(
    imagefolder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    protocol = FinetuneProtocol.smoke(**SMOKE)
    full = FinetuneHarness(get_task("imagenet-finetune")).run(
        _ctx(build_encoder("mae:vitb16", weights="random"), imagefolder, tmp_path / "a"), protocol
    )
    assert [h["epoch"] for h in full.extra["history"]] == [1, 2, 3]

    save, trained = training.Checkpoint.save, []

    def kill_after_first(self, state, info):  # noqa: ANN001
        save(self, state, info)
        raise KeyboardInterrupt  # the process dies right after the epoch-1 checkpoint is on disk

    monkeypatch.setattr(training.Checkpoint, "save", kill_after_first)
    work = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        FinetuneHarness(get_task("imagenet-finetune")).run(
            _ctx(build_encoder("mae:vitb16", weights="random"), imagefolder, work), protocol
        )
    monkeypatch.setattr(training.Checkpoint, "save", save)
    seed = training.seed_epoch
    monkeypatch.setattr(
        "benchmarks.classification.finetune.seed_epoch", lambda s, e, r: (trained.append(e), seed(s, e, r))
    )
    resumed = FinetuneHarness(get_task("imagenet-finetune")).run(
        _ctx(build_encoder("mae:vitb16", weights="random"), imagefolder, work), protocol
    )
    assert trained == [1, 2]  # epoch 1 came from the checkpoint
    assert resumed.metrics == full.metrics
    assert resumed.extra["history"] == full.extra["history"]
    assert full.metrics["top1"] == max(h["top1"] for h in full.extra["history"])
    assert full.metrics["last_top1"] == full.extra["history"][-1]["top1"]
    card = full.probe
    assert card["recipe"]["name"] == "mae-vitb" and card["pooling"] == "avg" and card["layer_decay"] == 0.65
    assert card["lr"] == pytest.approx(1e-3 * 16 / 256)
    assert "RandAugment" in card["train_transform"] and "RandomErasing" in card["train_transform"]
    assert card["classifier_load"]["dropped"] == ["norm.bias", "norm.weight"]


@pytest.mark.usefixtures("tiny_mae")
def test_smoke_run_from_an_official_layout_checkpoint_writes_a_valid_record(imagefolder: Path, tmp_path: Path) -> None:
    """MAE's own file layout ({'model': encoder}) -> fine-tune a few steps -> a record that validates."""
    adapter = get_adapter("mae")
    v = adapter.variant("vitb16")
    enc = build_encoder("mae:vitb16", weights="random", seed=3)
    sd = {k.removeprefix("model."): t for k, t in enc.state_dict().items()}
    ckpt = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save(official_file(adapter, v, v.official_layouts[0], sd), ckpt)
    req = RunRequest(
        method="mae:vitb16",
        task="imagenet-finetune",
        data=imagefolder,
        weights=str(ckpt),
        out=tmp_path / "results",
        smoke=True,
        progress=False,
        command="vitbench run --method mae:vitb16 --task imagenet-finetune --smoke",
        protocol_overrides=(("epochs", 1), ("warmup_epochs", 0)),
    )
    path, record = run_request(req)
    assert record is not None and record.track == "smoke" and record.weights.sha256
    assert set(record.metrics) == {"top1", "top5", "last_top1"}
    assert record.protocol.name == "imagenet-finetune"
    assert "config differs in: epochs, warmup_epochs" in str(validate_file(path))  # not the registered protocol
    req = RunRequest(**{**req.__dict__, "protocol_overrides": (), "out": tmp_path / "registered"})
    path, record = run_request(req)
    assert validate_file(path) is None  # ... the registered one validates


def test_bad_input_is_refused_before_training(imagefolder: Path, tmp_path: Path) -> None:
    harness = FinetuneHarness(get_task("imagenet-finetune"))
    enc = build_encoder("dino:vits16", weights="random")
    with pytest.raises(DataError, match="fewer than one batch of 4096"):
        harness.run(_ctx(enc, imagefolder, tmp_path), FinetuneProtocol.smoke(batch_size=4096))
    with pytest.raises(VitbenchError, match="even batch"):
        harness.run(_ctx(enc, imagefolder, tmp_path), FinetuneProtocol.smoke(batch_size=15))
    with pytest.raises(CheckpointError, match="cannot be fine-tuned"):
        harness.run(_ctx(build_encoder("selfpatch", weights="random"), imagefolder, tmp_path), FinetuneProtocol.smoke())
    assert not any(tmp_path.iterdir())  # nothing written


DDP_JOBS = [("imagenet-finetune", "mae:vitb16"), ("linear-dino", "dino:vits16")]


@pytest.mark.slow
def test_ddp_world_of_two_agrees_and_evaluates_all_of_val(
    imagefolder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gloo processes, as torchrun starts them, run both trained tasks: the ranks end with the same history (the
    train loss is averaged over ranks), each has half of the global batch, and the distributed val top-1 equals a
    single-process evaluation of the saved checkpoint (no val image counted twice or missed)."""
    import json

    import torch.multiprocessing as mp

    from benchmarks.classification.common import load_splits
    from benchmarks.classification.linear_dino import LinearClassifier, dino_features
    from benchmarks.classification.training import DistInfo, ImageDataset, evaluate, loader
    from benchmarks.probe.engine import transform_for
    from tests.benchmarks._ddp import free_port, worker

    mp.start_processes(
        worker, args=(2, free_port(), DDP_JOBS, str(imagefolder), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    for task, method in DDP_JOBS:
        r0, r1 = (json.loads((tmp_path / f"{task}.rank{r}.json").read_text()) for r in (0, 1))
        assert r0 == r1, task
        assert r0["probe"]["world_size"] == 2 and r0["probe"]["batch_per_process"] == 8
        state = torch.load(next((tmp_path / task).glob("*.pt")), weights_only=True)
        name, variant = method.split(":")
        shrink(monkeypatch, name, variant, **TINY)
        enc = build_encoder(method, weights="random")
        val = ImageDataset(load_splits(imagefolder)[1], transform_for(enc, 32).image())
        if task == "imagenet-finetune":
            model, _ = enc.finetune_model(6, global_pool="avg")
            model.load_state_dict(state["model"])
            fn = model.eval()
        else:
            head = LinearClassifier(4 * 64, 6)
            head.load_state_dict(state["head"])
            fn = lambda x, head=head, enc=enc: head(dino_features(enc, x, 4, False))  # noqa: E731
        single = evaluate(fn, loader(val, 16, drop_last=False, device="cpu"), DistInfo())
        assert single["top1"] == pytest.approx(r0["history"][-1]["top1"]), task
