"""One helper for the ``kill -9`` tests: start the real CLI in a subprocess and SIGKILL it at a chosen moment."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def kill_when(
    cmd: list[str], env: dict[str, str], ready: Callable[[], T | None], timeout: float = 300, poll: float = 0.02
) -> T:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` returns a state (not None), and return that state.

    Fails the test if the run ends on its own first, or never gets there within ``timeout`` seconds."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        while (state := ready()) is None:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(
                    f"the run ended (rc {proc.returncode}) before it could be killed: {out[-2000:]}{err[-3000:]}"
                )
            assert time.monotonic() - t0 < timeout, "the run never reached the point to kill it at"
            time.sleep(poll)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return state
