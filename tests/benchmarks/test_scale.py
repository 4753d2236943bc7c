"""Scale: the real CLI under torchrun (2 gloo processes) against one process, and ``kill -9`` in the middle of a run
followed by the same command again. Marked ``scale`` (subprocesses of the real ``vitbench run``, ~3 min on 2 cores):
``.ci/run`` runs them; ``pytest -m scale`` here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.scale
ROOT = Path(__file__).resolve().parents[2]


def _env(cache: Path) -> dict[str, str]:
    env = {**os.environ, "VITBENCH_CACHE": str(cache), "VITBENCH_NO_PROGRESS": "1", "VITBENCH_WORKERS": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # this checkout's code
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    return env


def _cli(task: str, data: Path, out: Path, *extra: str) -> list[str]:
    run = ["run", "--method", "dino", "--task", task, "--data", str(data), "--weights", "random", "--smoke"]
    return [*run, "--out", str(out), *extra]


def _record(out: Path, task: str) -> dict:
    return json.loads((out / "runs" / task / "dino" / "vits16__seed0.json").read_text())


def _vitbench(args: list[str], cache: Path, torchrun: int = 0) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(torchrun)]
    cmd = [*(launch if torchrun else [sys.executable]), "-m", "benchmarks.cli", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(cache), capture_output=True, text=True, timeout=600, check=False)
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


def _kill_when(cmd: list[str], cache: Path, ready, timeout: float = 300) -> dict:  # noqa: ANN001
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` returns a state (not None), and return that state."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        while (state := ready()) is None:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(
                    f"the run ended (rc {proc.returncode}) before it could be killed: {out[-2000:]}{err[-2000:]}"
                )
            assert time.monotonic() - t0 < timeout, "the run never reached the point to kill it at"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return state


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
