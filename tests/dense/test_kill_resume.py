"""``kill -9`` in the middle of a dense training run, then the same command again (marker ``dense``).

``vitbench run --task ade20k-semfpn-40k --smoke`` (the cheapest dense smoke task: 6 iterations; here a checkpoint
every 2) runs in a subprocess, is SIGKILLed as soon as its second checkpoint file appears (so, usually, while mmengine
is still writing it), and the same command is run again: it resumes through mmengine's ``resume`` from the last
complete checkpoint and writes a record whose metrics equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._kill import kill_when

pytestmark = pytest.mark.dense
ROOT = Path(__file__).resolve().parents[2]
TASK = "ade20k-semfpn-40k"


def _env() -> dict[str, str]:
    env = {**os.environ, "VITBENCH_NO_PROGRESS": "1", "VITBENCH_WORKERS": "0", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # this checkout's code
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(var, None)
    return env


def _cmd(data: Path, out: Path) -> list[str]:
    run = ["run", "--method", "dino", "--task", TASK, "--data", str(data), "--weights", "random", "--smoke"]
    return [sys.executable, "-m", "benchmarks.cli", *run, "--out", str(out), "--set", "checkpoint_interval=2"]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _record(out: Path) -> dict:
    return json.loads((out / "runs" / TASK / "dino" / "vits16__seed0.json").read_text())


def test_ade20k_killed_during_training_resumes_with_the_same_metrics(ade20k_root: Path, tmp_path: Path):
    data = ade20k_root.parent
    killed = tmp_path / "killed"
    work = killed / "work" / TASK / "dino" / "vits16__seed0" / "mmseg"
    # Polled every 5 ms, so the kill usually lands while mmengine is still writing iter_4.pth.
    kill_when(_cmd(data, killed), _env(), lambda: True if (work / "iter_4.pth").exists() else None, poll=0.005)
    assert not (killed / "runs").exists()  # no record of a killed run
    from benchmarks.dense.mm_glue import complete_checkpoint

    half_written = not complete_checkpoint(work / "iter_4.pth")  # usually: the kill lands while torch.save writes
    marker = (work / "last_checkpoint").read_text()
    assert marker.endswith("iter_2.pth") or (marker.endswith("iter_4.pth") and not half_written), marker

    _run(_cmd(data, killed))  # the same command again: resumes
    whole = tmp_path / "whole"
    _run(_cmd(data, whole))
    a, b = _record(killed), _record(whole)
    resumed = a["extra"]["resumed_from"]
    assert (
        resumed.endswith("iter_2.pth" if half_written else ("iter_2.pth", "iter_4.pth"))
        and b["extra"]["resumed_from"] is None
    )
    assert a["extra"]["train_iters"] == b["extra"]["train_iters"] == 6
    assert a["metrics"] == b["metrics"]
    assert a["extra"]["per_class_iou"] == b["extra"]["per_class_iou"]


def test_a_half_written_checkpoint_or_torn_marker_is_never_resumed(tmp_path: Path):
    """mmengine writes checkpoints and the ``last_checkpoint`` marker in place: a file cut short by a kill is
    recognised (no zip end record) and skipped, a torn marker falls back to the newest complete checkpoint, no
    marker is a fresh start, and a marker naming a file outside the work folder is still refused."""
    import torch

    from benchmarks.dense.mm_glue import OWN_CHECKPOINT, complete_checkpoint, own_last_checkpoint
    from methods.errors import VitbenchError

    work = tmp_path / "mmseg"
    work.mkdir()
    for it in (2, 4):
        torch.save({"meta": {"iter": it}, "state_dict": {"w": torch.randn(4096)}}, work / f"iter_{it}.pth")
    assert own_last_checkpoint(work) is None  # no marker: start over, whatever the folder holds
    marker = work / "last_checkpoint"
    marker.write_text(str(work / "iter_4.pth"))
    assert own_last_checkpoint(work) == OWN_CHECKPOINT + str(work / "iter_4.pth")
    data = (work / "iter_4.pth").read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 100):  # killed while torch.save was writing iter_4
        (work / "iter_4.pth").write_bytes(data[:cut])
        assert not complete_checkpoint(work / "iter_4.pth")
        assert own_last_checkpoint(work) == OWN_CHECKPOINT + str(work / "iter_2.pth")
    (work / "iter_4.pth").write_bytes(data)
    for torn in ("", str(work / "iter_4.pth")[:-6]):  # killed while the marker was rewritten
        marker.write_text(torn)
        assert own_last_checkpoint(work) == OWN_CHECKPOINT + str(work / "iter_4.pth")
    for it in (2, 4):
        (work / f"iter_{it}.pth").write_bytes(b"PK\x03\x04 cut short")
    assert own_last_checkpoint(work) is None  # nothing complete: training starts over
    outside = tmp_path / "elsewhere.pth"
    torch.save({}, outside)
    marker.write_text(str(outside))
    with pytest.raises(VitbenchError, match="outside the run's work folder"):
        own_last_checkpoint(work)


def test_generator_states_survive_the_restricted_checkpoint_loader(tmp_path: Path):
    """What the RNG hook stores in a checkpoint loads back through the own-checkpoint scheme and restores every
    generator: the draws after a restore equal the draws after the save."""
    import random

    import numpy as np
    import torch

    from benchmarks.dense import mm_glue

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.normal(), torch.rand(3)  # numpy's cached gaussian is part of the state
    path = tmp_path / "iter_1.pth"
    torch.save({"vitbench_rng": mm_glue.rng_state()}, path)
    after_save = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    mm_glue.set_rng_state(mm_glue._load_own_checkpoint(mm_glue.OWN_CHECKPOINT + str(path))["vitbench_rng"])
    assert (random.random(), np.random.normal(), np.random.rand(), torch.rand(3).tolist()) == after_save
