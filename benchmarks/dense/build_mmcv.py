"""Build mmcv's compiled ops for the installed torch, cache the wheel, and install the mm* stack.

Run it as ``python -m benchmarks.dense.build_mmcv`` (or as a plain script). It uses the standard library only, so
it runs before anything else in the project is importable; torch's version and CUDA flavour are read in a child
interpreter.

Why this script exists (DESIGN.md § Dense tasks): mmdet 3.3 / mmseg 1.2 need ``mmcv>=2.0.0rc4,<2.2.0``, PyPI has
only mmcv's source for current torch, and mmcv 2.1.0's ``setup.py`` hard-codes ``-std=c++14``/``-std=c++17``
while torch 2.14's headers need C++20. So: download the sdist, rewrite the standard to C++20, build a wheel
with ``MMCV_WITH_OPS=1`` (29-39 min on 2 cores; CUDA kernels are built too when torch sees a GPU or
``FORCE_CUDA=1`` is set, which needs ``nvcc``), and cache it *outside the clone* under a key that names
everything the binary depends on::

    ${VITBENCH_WHEEL_CACHE:-~/.cache/vitbench/wheels}/mmcv-2.1.0+torch<ver>.<cpuops|cuXXXops>-cp311-<platform>/*.whl

A second run with a warm cache only installs. The build tools mmcv's ``setup.py`` needs (``setuptools<70``, which
still ships ``pkg_resources``, ``wheel`` for its ``bdist_wheel``, and ``ninja``) go into a private folder on
``PYTHONPATH`` for the build only, so the environment's own setuptools is left alone.

Usage::

    python -m benchmarks.dense.build_mmcv             # build (or reuse) + install
    python -m benchmarks.dense.build_mmcv --check     # exit 0 if mmcv.ops/mmdet/mmseg import and run, else 1
    python -m benchmarks.dense.build_mmcv --cache-dir DIR --jobs 8
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

MMCV_VERSION = "2.1.0"
# What installs from PyPI as is on top of the built mmcv. mmseg imports ftfy and regex at import time.
STACK = ["mmengine>=0.10,<0.11", "mmdet==3.3.0", "mmsegmentation==1.2.2", "ftfy", "regex"]
# setuptools < 70.1 has no bdist_wheel of its own: it comes from `wheel`. Without it `pip wheel` fails with "invalid
# command 'bdist_wheel'" wherever the environment does not happen to hold wheel (a bare venv does not). wheel marks
# that command deprecated (it moved into setuptools 70.1): the bound keeps the releases checked here (0.45, 0.48).
BUILD_TOOLS = ["setuptools<70", "wheel>=0.40,<0.49", "ninja"]
_STD_RE = re.compile(r"-std=c\+\+1[47]")

# Imports the stack and runs two compiled ops on CPU: an import that succeeds with a missing `_ext` would only
# fail later, deep inside a training run.
_CHECK_CODE = """
import torch, mmcv, mmengine, mmdet, mmseg
from mmcv.ops import RoIAlign, nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)[1]
assert keep.tolist() == [0, 2], keep
feat = torch.arange(64.).reshape(1, 1, 8, 8)
out = RoIAlign((2, 2), 1.0, 0)(feat, torch.tensor([[0., 0., 0., 4., 4.]]))
assert out.shape == (1, 1, 2, 2), out.shape
if torch.cuda.is_available():  # a wheel built without a GPU imports fine but has no CUDA kernels
    assert nms(boxes.cuda(), torch.tensor([0.9, 0.8, 0.7]).cuda(), 0.5)[1].tolist() == [0, 2]
print(f"mm* stack ok: mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, "
      f"mmseg {mmseg.__version__}, torch {torch.__version__}")
"""


def _log(msg: str) -> None:
    print(f"[build_mmcv {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def default_cache_dir() -> Path:
    """``$VITBENCH_WHEEL_CACHE`` or ``~/.cache/vitbench/wheels``."""
    env = os.environ.get("VITBENCH_WHEEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vitbench" / "wheels"


_TORCH_PROBE = (
    "import json, os, torch; print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, "
    "'gpu': torch.cuda.is_available() or os.environ.get('FORCE_CUDA') == '1'}))"
)


def torch_build() -> dict:
    """The installed torch's full version (with its local tag), CUDA version and whether mmcv will build CUDA ops.

    Asked in a child interpreter: this script itself stays stdlib-only. mmcv compiles its CUDA kernels only when
    torch sees a GPU (or ``FORCE_CUDA=1``), so the same torch can yield a CPU-only or a CUDA wheel.
    """
    proc = subprocess.run([sys.executable, "-c", _TORCH_PROBE], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            "build_mmcv: cannot import torch in this interpreter; install vitbench first\n" + proc.stderr.strip()[-500:]
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cache_key(mmcv_version: str = MMCV_VERSION, build: dict | None = None) -> str:
    """The cache folder name: mmcv version + torch's full version + ops flavour + Python tag + platform, e.g.
    ``mmcv-2.1.0+torch2.14.1_cu130.cpuops-cp311-linux_x86_64``: a binary links against exactly that torch build,
    and a wheel built without a GPU has no CUDA kernels.
    """
    build = build or torch_build()
    torch_tag = re.sub(r"[^A-Za-z0-9.]+", "_", build["version"])
    ops = f"cu{str(build['cuda']).replace('.', '')}ops" if build["cuda"] and build["gpu"] else "cpuops"
    py_tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = re.sub(r"[^A-Za-z0-9]+", "_", sysconfig.get_platform())
    return f"mmcv-{mmcv_version}+torch{torch_tag}.{ops}-{py_tag}-{platform}"


def cached_wheel(cache_dir: Path, key: str) -> Path | None:
    """The wheel cached under ``key``, or None."""
    wheels = sorted((cache_dir / key).glob("mmcv-*.whl"))
    return wheels[-1] if wheels else None


def _run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    _log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"build_mmcv: command failed with exit code {proc.returncode}: {' '.join(cmd)}")


def patch_cxx_standard(setup_py: Path) -> int:
    """Rewrite every ``-std=c++14``/``-std=c++17`` in mmcv's setup.py to ``-std=c++20``; returns the count.

    torch 2.14's headers use C++20 features, so the stock flags fail to compile. Zero replacements means the
    sdist changed under us, which is an error rather than a silent no-op.
    """
    text = setup_py.read_text()
    new, count = _STD_RE.subn("-std=c++20", text)
    if count == 0 and "-std=c++20" not in text:
        raise SystemExit(f"build_mmcv: no -std=c++14/17 flag found in {setup_py}; the sdist layout changed")
    setup_py.write_text(new)
    return count


def build_wheel(mmcv_version: str, dest: Path, jobs: int, work: Path) -> Path:
    """Download the mmcv sdist, patch it, build a wheel with compiled ops into ``dest``; returns the wheel."""
    pip = [sys.executable, "-m", "pip"]
    tools = work / "buildtools"
    _run([*pip, "install", "--quiet", "--target", str(tools), *BUILD_TOOLS])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tools), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(tools / "bin"), env.get("PATH", "")])
    env["MMCV_WITH_OPS"] = "1"
    env["MAX_JOBS"] = str(jobs)

    sdist_dir = work / "sdist"
    # pip prepares an sdist's metadata even for `download`, which runs mmcv's setup.py (it imports torch and
    # pkg_resources): hence no build isolation and the private build tools here as well.
    _run(
        [
            *pip,
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-build-isolation",
            f"mmcv=={mmcv_version}",
            "-d",
            str(sdist_dir),
        ],
        env=env,
    )
    archives = sorted(sdist_dir.glob("mmcv-*.tar.gz"))
    if not archives:
        raise SystemExit(f"build_mmcv: pip download left no mmcv-*.tar.gz in {sdist_dir}")
    with tarfile.open(archives[0]) as tar:
        tar.extractall(work / "src", filter="data")
    (src,) = [p for p in (work / "src").iterdir() if p.is_dir()]
    n = patch_cxx_standard(src / "setup.py")
    _log(f"patched {n} C++ standard flag(s) to -std=c++20 in {src / 'setup.py'}")

    out = work / "wheel"
    t0 = time.time()
    _log(f"building mmcv {mmcv_version} with ops (MAX_JOBS={jobs}); this takes ~30-40 min on 2 cores")
    _run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-v", "-w", str(out), str(src)], env=env)
    _log(f"build finished in {(time.time() - t0) / 60:.1f} min")
    (wheel,) = out.glob("mmcv-*.whl")
    dest.mkdir(parents=True, exist_ok=True)
    # Copy then rename, so a concurrent reader never sees a half-written wheel in the cache.
    tmp = dest / (wheel.name + ".part")
    shutil.copy2(wheel, tmp)
    os.replace(tmp, dest / wheel.name)
    return dest / wheel.name


def check() -> bool:
    """True if the mm* stack imports and its compiled ops run, in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", _CHECK_CODE], capture_output=True, text=True)
    if proc.returncode == 0:
        _log(proc.stdout.strip())
        return True
    _log("mm* stack check failed:\n" + (proc.stderr.strip().splitlines() or ["(no output)"])[-1])
    return False


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dense.build_mmcv", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the installed stack (exit 0 ok, 1 not)")
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="wheel cache (default: $VITBENCH_WHEEL_CACHE or ~/.cache/vitbench/wheels)",
    )
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("MAX_JOBS", os.cpu_count() or 2)))
    ap.add_argument("--rebuild", action="store_true", help="ignore a cached wheel and build again")
    ap.add_argument("--no-install", action="store_true", help="build/cache the wheel only")
    ap.add_argument("--mmcv-version", default=MMCV_VERSION, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.check:
        return 0 if check() else 1

    cache_dir = (args.cache_dir or default_cache_dir()).expanduser().resolve()
    key = cache_key(args.mmcv_version)
    wheel = None if args.rebuild else cached_wheel(cache_dir, key)
    if wheel is not None:
        _log(f"using cached wheel {wheel}")
    else:
        _log(f"no cached wheel for {key} in {cache_dir}; building")
        with tempfile.TemporaryDirectory(prefix="vitbench-mmcv-") as work:
            wheel = build_wheel(args.mmcv_version, cache_dir / key, args.jobs, Path(work))
        _log(f"cached {wheel}")
    if args.no_install:
        return 0
    _run([sys.executable, "-m", "pip", "install", str(wheel), *STACK])
    if check():
        return 0
    # pip keeps an installed mmcv 2.1.0 built elsewhere (e.g. without CUDA ops): put the cached wheel in its place.
    _run([sys.executable, "-m", "pip", "install", "--force-reinstall", "--no-deps", str(wheel)])
    return 0 if check() else 1


if __name__ == "__main__":
    sys.exit(main())
