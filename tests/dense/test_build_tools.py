"""build_mmcv's private build environment can make a wheel: ``bdist_wheel`` exists for its setuptools.

Marked ``network``: it installs :data:`BUILD_TOOLS` from the package index into a temporary folder, as the build
does (``pytest -m network tests/dense/test_build_tools.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.dense.build_mmcv import BUILD_TOOLS

pytestmark = pytest.mark.network

_PROBE = (
    "import setuptools, sys; from setuptools.dist import Distribution; "
    "cls = Distribution().get_command_class('bdist_wheel'); print(setuptools.__version__, cls.__module__)"
)


def _probe(tools: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tools)}
    # -S: no site-packages, so only what the build's PYTHONPATH holds counts (the test venv has its own wheel)
    return subprocess.run([sys.executable, "-S", "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120)


def test_private_build_tools_provide_bdist_wheel(tmp_path: Path) -> None:
    tools = tmp_path / "buildtools"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tools)]
    subprocess.run([*pip, *BUILD_TOOLS], check=True, capture_output=True, timeout=600)
    proc = _probe(tools)
    assert proc.returncode == 0, proc.stderr[-800:]
    version, module = proc.stdout.split()
    assert int(version.split(".")[0]) < 70 and module.startswith("wheel")  # the old setuptools, wheel's command


def test_without_wheel_the_old_setuptools_has_no_bdist_wheel(tmp_path: Path) -> None:
    """The control: the failure the entry prevents (setuptools < 70 alone, as before ``wheel`` was added)."""
    tools = tmp_path / "setuptools-only"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tools)]
    subprocess.run([*pip, "setuptools<70"], check=True, capture_output=True, timeout=600)
    proc = _probe(tools)
    assert proc.returncode != 0 and "bdist_wheel" in proc.stderr
