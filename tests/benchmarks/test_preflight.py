"""``vitbench run`` refuses what needs no model before torch is imported: one line, exit 1, in well under 3 s.

Each case runs the real CLI in a fresh interpreter through a small wrapper that reports, after ``main`` returns,
whether torch or timm ever entered ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.preflight import RunRequest, check_request, check_writable_dir
from methods.errors import VitbenchError

_WRAPPER = (
    "import json, sys\n"
    "from benchmarks.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "print(json.dumps(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)))\n"
    "sys.exit(rc)\n"
)
ROOT = Path(__file__).resolve().parents[2]


def _cli(*argv: str) -> tuple[int, list[str], list[str], float]:
    """(exit code, stderr lines, heavy modules imported, wall seconds) of ``vitbench ARGV`` in a new process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    wall = time.perf_counter() - t0
    heavy = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else ["<no report>"]
    return proc.returncode, proc.stderr.strip().splitlines(), heavy, wall


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in the ImageFolder layout (two class folders per split, no images: the refusals come before any
    image is read)."""
    root = tmp_path_factory.mktemp("data")
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
    return root


def _case(name: str, folder: Path, tmp: Path) -> tuple[list[str], str]:
    run = ["run", "--method", "dino", "--task", "knn", "--data", str(folder)]
    out_file = tmp / "results.json"
    out_file.write_text("{}")
    return {
        "method typo": (["run", "--method", "dnio", "--task", "knn", "--data", str(folder)], "did you mean 'dino'?"),
        "variant typo": (
            ["run", "--method", "dino:vits61", "--task", "knn", "--data", str(folder)],
            "unknown variant 'vits61' of method 'dino' (did you mean 'vits16'?)",
        ),
        "random without smoke": ([*run, "--weights", "random"], "--weights random: random weights give a smoke"),
        "unknown --set key": (
            [*run, "--smoke", "--set", "batch=5"],
            "not a field of protocol dino-knn; fields: ks (tuple[int, ...], default (10, 20, 100, 200)), headline_k",
        ),
        "bad --set type": ([*run, "--smoke", "--set", "temperature=warm"], "--set temperature='warm': expected float"),
        "--out is a file": ([*run, "--smoke", "--out", str(out_file)], f"--out {out_file}: is a file; pass a folder"),
        "--out under a file": (
            [*run, "--smoke", "--out", str(out_file / "sub")],
            f"cannot be created: {out_file} is a file",
        ),
        "missing checkpoint": ([*run, "--weights", str(tmp / "nope.pth")], "nope.pth: no such checkpoint file"),
        "no train folder": (
            ["run", "--method", "dino", "--task", "knn", "--data", str(tmp), "--smoke"],
            "train: missing split folder",
        ),
        "head-less variant": (
            ["run", "--method", "dino", "--task", "imagenet-supervised", "--data", str(folder), "--smoke"],
            "dino:vits16 has no released classification head",
        ),
    }[name]


@pytest.mark.parametrize(
    "name",
    [
        "method typo",
        "variant typo",
        "random without smoke",
        "unknown --set key",
        "bad --set type",
        "--out is a file",
        "--out under a file",
        "missing checkpoint",
        "no train folder",
        "head-less variant",
    ],
)
def test_refused_in_one_line_without_torch(name: str, folder: Path, tmp_path: Path) -> None:
    argv, needle = _case(name, folder, tmp_path)
    rc, err, heavy, wall = _cli(*argv)
    assert rc == 1, err
    assert len(err) == 1 and needle in err[0] and err[0].startswith("vitbench: error: "), err
    assert heavy == [], f"imported {heavy} before refusing"
    assert wall < 3.0, f"took {wall:.2f} s"


def test_the_same_request_passes_the_preflight(folder: Path, tmp_path: Path) -> None:
    """The control: a well-formed smoke request passes every check (so the refusals above are about their flag)."""
    checked = check_request(
        RunRequest(method="dino", task="knn", data=folder, weights="random", smoke=True, out=tmp_path / "new" / "out")
    )
    assert checked.method == "dino" and checked.variant == "vits16" and checked.protocol.NAME == "dino-knn"
    assert checked.protocol.config()["resolution"] == 64  # the smoke setting


def test_writable_dir_checks(tmp_path: Path) -> None:
    check_writable_dir(tmp_path / "a" / "b", "--out")  # creatable: fine, and nothing is created
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(VitbenchError, match="is a file"):
        check_writable_dir(tmp_path / "f", "--out")


def test_layout_checks(tmp_path: Path) -> None:
    from benchmarks.catalog import get_task
    from benchmarks.preflight import check_layout

    spec = get_task("knn")
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(VitbenchError, match="1 class folder"):
        check_layout(spec, tmp_path)
    (tmp_path / "train" / "b").mkdir()
    with pytest.raises(VitbenchError, match="val: missing split folder"):
        check_layout(spec, tmp_path)
    (tmp_path / "val").mkdir()
    with pytest.raises(VitbenchError, match="val: no class folders"):
        check_layout(spec, tmp_path)
    (tmp_path / "val" / "a").mkdir()
    check_layout(spec, tmp_path)  # the layout is right; images are the scanner's business


# task -> an entry of its synthesized layout that the preflight must miss, and the words of its one-line error
_FIXED_LAYOUTS = {
    "coco-maskrcnn-fpn-1x": ("annotations/instances_val2017.json", "instances_val2017.json: missing file"),
    "ade20k-semfpn-40k": ("annotations/validation", "annotations/validation: missing folder"),
    "davis2017-vos": ("ImageSets/2017/val.txt", "val.txt: missing file"),
    "copydays-copy-detection": ("strong", "strong: missing folder"),
    "voc-partial": ("ImageSets/Main", "Main: missing folder"),
}


@pytest.mark.parametrize("task", list(_FIXED_LAYOUTS))
def test_fixed_layouts_are_checked_from_listings(task: str, tmp_path: Path) -> None:
    """The synthesized set passes; without one required entry the preflight names it (before any scanner runs)."""
    import shutil

    from benchmarks.catalog import get_task
    from benchmarks.preflight import check_layout
    from benchmarks.synth import synth

    spec = get_task(task)
    assert spec.synth_kind is not None
    root = synth(spec.synth_kind, tmp_path / "data")
    protocol = spec.protocol_for(True, {})
    check_layout(spec, root, protocol)
    missing, words = _FIXED_LAYOUTS[task]
    found = [p for p in root.rglob(Path(missing).name) if p.as_posix().endswith(missing)]
    assert found, f"the synthesizer of {task} writes no {missing}"
    target = found[0]
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(VitbenchError, match=words):
        check_layout(spec, root, protocol)
    with pytest.raises(VitbenchError, match="not a folder"):
        check_layout(spec, tmp_path / "absent", protocol)


def test_a_wrong_extraction_precision_is_refused_before_torch(folder: Path, tmp_path: Path) -> None:
    import os

    argv = ["run", "--method", "dino", "--task", "knn", "--data", str(folder), "--out", str(tmp_path)]
    env = {**os.environ, "VITBENCH_AMP": "fp16"}  # fp16 autocast is CUDA's; this run is on the CPU
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True, cwd=ROOT, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "VITBENCH_AMP=fp16 needs a CUDA device" in lines[0]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []  # neither torch nor timm imported
