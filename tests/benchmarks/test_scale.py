"""Scale: the real CLI under torchrun (2 gloo processes) against one process, and ``kill -9`` in the middle of a run
followed by the same command again (knn extraction, the linear grid, imagenet-finetune, backdoor poison generation).
Marked ``scale`` (subprocesses of the real ``vitbench run``; the finetune and poison kill tests take ~2 min together
on a loaded 2-core machine, with one intra-op thread): ``.ci/run`` runs them; ``pytest -m scale`` here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._kill import kill_when

pytestmark = pytest.mark.scale
ROOT = Path(__file__).resolve().parents[2]


def _env(cache: Path, threads: int | None = None, progress: bool = False) -> dict[str, str]:
    env = {**os.environ, "VITBENCH_CACHE": str(cache), "VITBENCH_NO_PROGRESS": "1", "VITBENCH_WORKERS": "0"}
    if progress:  # plain lines on the pipe: the first says where the work starts; no periodic line in between
        env.pop("VITBENCH_NO_PROGRESS")
        env["VITBENCH_PROGRESS_INTERVAL"] = "1e9"
    if threads is not None:  # a ViT-S trained on 96 tiny images: one intra-op thread is ~2.5x faster on 2 cores
        env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # this checkout's code
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    return env


def _cli(task: str, data: Path, out: Path, *extra: str) -> list[str]:
    run = ["run", "--method", "dino", "--task", task, "--data", str(data), "--weights", "random", "--smoke"]
    return [*run, "--out", str(out), *extra]


def _record(out: Path, task: str) -> dict:
    return json.loads((out / "runs" / task / "dino" / "vits16__seed0.json").read_text())


def _vitbench(
    args: list[str], cache: Path, torchrun: int = 0, threads: int | None = None, progress: bool = False
) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torchrun)]
    cmd = [*(launch if torchrun else [sys.executable]), "-m", "benchmarks.cli", *args]
    env = _env(cache, threads, progress)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("task", ["knn", "linear"])
def test_torchrun_two_processes_writes_one_record_equal_to_one_process(imagefolder: Path, tmp_path: Path, task: str):
    """``torchrun --nproc-per-node 2 vitbench run ...`` on CPU (gloo): each rank extracts half of each split, rank 0
    alone writes the record, whose metrics are the one-process run's (k-NN: identical, integer vote counts summed;
    linear: the grid trains under DDP on each rank's half of every global batch, within 1 point top-1; on this data
    the whole grid comes out identical) and whose provenance says 2 processes."""
    one, two = tmp_path / "one", tmp_path / "two"
    _vitbench(_cli(task, imagefolder, one), tmp_path / "cache1")
    proc = _vitbench(_cli(task, imagefolder, two), tmp_path / "cache2", torchrun=2)
    assert proc.stdout.count("record:") == 1, proc.stdout  # only rank 0 reports (and writes)
    a, b = _record(one, task), _record(two, task)
    assert a["provenance"]["world_size"] == 1 and b["provenance"]["world_size"] == 2
    assert b["probe"] == a["probe"] and b["dataset"] == a["dataset"]  # the card does not depend on the world
    assert list((two / "runs").rglob("*.json")) == [two / "runs" / task / "dino" / "vits16__seed0.json"]
    if task == "knn":
        assert b["metrics"] == a["metrics"]
    else:
        assert abs(b["metrics"]["top1"] - a["metrics"]["top1"]) <= 1.0
        for head, scores in a["extra"]["grid"].items():
            assert abs(b["extra"]["grid"][head]["val_top1"] - scores["val_top1"]) <= 1.0 + 1e-6, head
    # The shards were merged into the ordinary cache folders (no shard left behind): a one-process rerun reuses them.
    feats = sorted(p.name for p in (tmp_path / "cache2" / "features").iterdir())
    assert feats == sorted(p.name for p in (tmp_path / "cache1" / "features").iterdir()) and len(feats) == 2


def _kill_when(cmd: list[str], cache: Path, ready, timeout: float = 300, threads: int | None = None) -> dict:  # noqa: ANN001
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` returns a state (not None), and return that state."""
    return kill_when(cmd, _env(cache, threads), ready, timeout)


@pytest.fixture(scope="module")
def large_imagefolder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,100 train images (more than the 1,280 after which extraction first checkpoints) and 60 val images."""
    from benchmarks.data.imagefolder import synth_imagefolder

    return synth_imagefolder(tmp_path_factory.mktemp("large"), n_classes=6, n_train=350, n_val=10, size=32)


def test_knn_killed_during_extraction_resumes_with_the_same_metrics(large_imagefolder: Path, tmp_path: Path):
    """SIGKILL while train features are being extracted (after the first progress checkpoint), then the same command:
    extraction resumes from the checkpoint and the record's metrics equal those of an uninterrupted run."""
    args = _cli("knn", large_imagefolder, tmp_path / "killed")
    cache = tmp_path / "cache"

    def extracting() -> dict | None:
        for progress in (cache / "features").glob("*.partial/progress.json"):
            try:
                return json.loads(progress.read_text())
            except (OSError, json.JSONDecodeError):  # not there yet (atomic writes: never torn)
                return None
        return None

    state = _kill_when([sys.executable, "-m", "benchmarks.cli", *args], cache, extracting)
    assert 0 < state["done"] < 2100
    assert not (tmp_path / "killed" / "runs").exists()  # no record of a killed run
    _vitbench(args, cache)  # the same command again: resumes
    _vitbench(_cli("knn", large_imagefolder, tmp_path / "whole"), tmp_path / "cache-whole")
    assert _record(tmp_path / "killed", "knn")["metrics"] == _record(tmp_path / "whole", "knn")["metrics"]


def test_linear_grid_killed_between_epochs_resumes_with_the_same_metrics(imagefolder: Path, tmp_path: Path):
    """SIGKILL while the grid trains (after an epoch's checkpoint), then the same command: the grid resumes from the
    last epoch (heads, optimiser, schedule, sampler state) and the record equals an uninterrupted run's."""
    extra = ("--set", "epochs=200")
    args = _cli("linear", imagefolder, tmp_path / "killed", *extra)
    ckpt = tmp_path / "killed" / "work" / "linear" / "dino" / "vits16__seed0" / "linear-grid.pt"

    def training() -> dict | None:
        if not ckpt.exists():
            return None
        import torch

        return {"epoch": int(torch.load(ckpt, weights_only=True)["epoch"])}

    state = _kill_when([sys.executable, "-m", "benchmarks.cli", *args], tmp_path / "cache", training)
    assert 0 < state["epoch"] < 200
    import torch

    assert int(torch.load(ckpt, weights_only=True)["epoch"]) < 200  # killed before the end
    _vitbench(args, tmp_path / "cache")
    _vitbench(_cli("linear", imagefolder, tmp_path / "whole", *extra), tmp_path / "cache-whole")
    a, b = _record(tmp_path / "killed", "linear"), _record(tmp_path / "whole", "linear")
    assert a["metrics"] == b["metrics"] and a["extra"]["grid"] == b["extra"]["grid"]


def test_finetune_killed_after_an_epoch_resumes_with_the_same_metrics(imagefolder: Path, tmp_path: Path):
    """``imagenet-finetune --smoke`` (2 epochs) SIGKILLed as soon as the first epoch's checkpoint is on disk, then
    the same command: it starts at epoch 2 from the checkpoint (model, optimiser, scaler, history; per-epoch
    seeding) and the record's metrics and per-epoch history equal an uninterrupted run's."""
    task = "imagenet-finetune"
    args = _cli(task, imagefolder, tmp_path / "killed")
    ckpt = tmp_path / "killed" / "work" / task / "dino" / "vits16__seed0" / "finetune.pt"
    cmd = [sys.executable, "-m", "benchmarks.cli", *args]
    _kill_when(cmd, tmp_path / "cache", lambda: {} if ckpt.exists() else None, threads=1)  # os.replace: whole
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and [h["epoch"] for h in state["history"]] == [1]
    assert not (tmp_path / "killed" / "runs").exists()  # no record of a killed run
    proc = _vitbench(args, tmp_path / "cache", threads=1, progress=True)
    assert "fine-tune: 1/2 epoch" in proc.stderr, proc.stderr[-2000:]  # resumed after epoch 1, not from scratch
    assert "fine-tune: 0/2" not in proc.stderr
    _vitbench(_cli(task, imagefolder, tmp_path / "whole"), tmp_path / "cache-whole", threads=1)
    a, b = _record(tmp_path / "killed", task), _record(tmp_path / "whole", task)
    assert a["metrics"] == b["metrics"] and a["extra"]["history"] == b["extra"]["history"]
    assert [h["epoch"] for h in a["extra"]["history"]] == [1, 2]


def test_poison_generation_killed_after_a_batch_resumes_with_the_same_metrics(imagefolder: Path, tmp_path: Path):
    """``backdoor-htba --smoke`` (2 pairs x 3 batches of poisons) SIGKILLed as soon as the first batch of poisons
    is cached, then the same command: the finished batches are read back, not computed again (the files are
    untouched and the pair's progress starts past them), and the record's metrics and per-pair results equal an
    uninterrupted run's."""
    task = "backdoor-htba"
    args = _cli(task, imagefolder, tmp_path / "killed")
    poisons = tmp_path / "cache" / "backdoor-poisons"

    def finished() -> dict | None:
        done = [p for p in poisons.glob("*/batch_*.npz") if not p.name.endswith(".tmp.npz")]  # .tmp: being written
        return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in done} or None

    state = _kill_when([sys.executable, "-m", "benchmarks.cli", *args], tmp_path / "cache", finished, threads=1)
    assert not (tmp_path / "killed" / "runs").exists()
    folders = {Path(p).parent for p in state}
    n_batches = 3  # generation_epochs x ceil(n_generation / pgd_batch) of the smoke protocol
    assert all(len(list(f.glob("batch_*.npz"))) < n_batches for f in folders)  # killed in the middle of a pair
    proc = _vitbench(args, tmp_path / "cache", threads=1, progress=True)
    for path, stamp in state.items():
        assert (Path(path).stat().st_ino, Path(path).stat().st_mtime_ns) == stamp, path  # read back, not rewritten
    _vitbench(_cli(task, imagefolder, tmp_path / "whole"), tmp_path / "cache-whole", threads=1)
    a, b = _record(tmp_path / "killed", task), _record(tmp_path / "whole", task)
    for pair in a["extra"]["pairs"]:
        done = sum(Path(p).parent == Path(pair["poison_cache"]) for p in state)
        line = f"poisons {pair['source']}->{pair['target']}: {done}/{n_batches} batch"
        assert line in proc.stderr, (line, proc.stderr[-2000:])  # where the rerun started this pair
    assert a["metrics"] == b["metrics"]
    paths = ("poison_cache", "trigger_png", "test_triggers")  # the run's folders, which differ
    strip = [[{k: v for k, v in row.items() if k not in paths} for row in r["extra"]["pairs"]] for r in (a, b)]
    assert strip[0] == strip[1] and len(strip[0]) == 2


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``vitbench data synth voc``: the smoke data of the partial-label tasks."""
    from benchmarks.synth import synth

    return synth("voc", tmp_path_factory.mktemp("voc"), seed=0)


def test_torchrun_partial_label_linear_heads_equal_one_process(voc: Path, tmp_path: Path):
    """``voc-partial`` with an encoder without a text tower trains the probe engine's multi-label grid (ASL, unknown
    labels masked) for each label proportion (3 of the 9 here, to keep the test short). Under torchrun each rank
    extracts half of each split and the heads train under DDP, every rank's masked loss sum divided by the global
    batch's number of known labels, so the averaged gradient is the one-process gradient up to float summation
    order. Tolerance: 0.1 point of mAP per proportion, the same selected head for each (on this data every number
    comes out identical)."""
    task, extra = "voc-partial", ("--set", "proportions=[0.1,0.5,0.9]")
    one, two = tmp_path / "one", tmp_path / "two"
    _vitbench(_cli(task, voc, one, *extra), tmp_path / "cache1", threads=1)
    proc = _vitbench(_cli(task, voc, two, *extra), tmp_path / "cache2", torchrun=2, threads=1)
    assert proc.stdout.count("record:") == 1, proc.stdout
    a, b = _record(one, task), _record(two, task)
    assert a["provenance"]["world_size"] == 1 and b["provenance"]["world_size"] == 2
    assert b["probe"] == a["probe"] and b["dataset"] == a["dataset"] and a["probe"]["head"] == "linear"
    assert list((two / "runs").rglob("*.json")) == [two / "runs" / task / "dino" / "vits16__seed0.json"]
    assert set(a["metrics"]) == set(b["metrics"]) and len(a["metrics"]) == 4
    for name, value in a["metrics"].items():
        assert abs(b["metrics"][name] - value) <= 0.1, (name, value, b["metrics"][name])
    for p, detail in a["extra"]["per_proportion"].items():
        assert b["extra"]["per_proportion"][p]["selected_head"] == detail["selected_head"], p
        assert abs(b["extra"]["per_proportion"][p]["micro_AP"] - detail["micro_AP"]) <= 0.1, p
