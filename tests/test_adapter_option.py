"""``pytest --adapter NAME`` keeps only NAME's cases of the tests parametrised over methods (the contract test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from methods.errors import UnknownNameError
from tests.conftest import pytest_collection_modifyitems

ROOT = Path(__file__).resolve().parents[1]


def _collect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def test_adapter_option_selects_one_methods_contract_cases() -> None:
    proc = _collect("tests/methods/test_contract.py", "--adapter", "dino")
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    ids = [ln for ln in proc.stdout.splitlines() if "::" in ln]
    parametrised = [i for i in ids if "[" in i]
    assert parametrised and all("[dino:" in i for i in parametrised), [i for i in parametrised if "[dino:" not in i]
    assert not any("[dino-mm:" in i for i in ids)  # a name, not a substring as with -k dino
    assert len(ids) < 60  # of ~270


def test_adapter_option_refuses_a_typo() -> None:
    class Config:
        def getoption(self, name: str) -> list[str]:
            return ["dnio"]

    with pytest.raises(UnknownNameError, match="did you mean 'dino'"):
        pytest_collection_modifyitems(Config(), [])  # type: ignore[arg-type]
