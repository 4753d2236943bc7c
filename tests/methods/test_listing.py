"""``methods/described.json`` (what ``vitbench methods`` and the run preflight read without torch) matches the
adapters; regenerate it with ``python -m methods.listing --write``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from methods import listing
from methods.errors import UnknownNameError
from methods.registry import list_methods


def test_snapshot_matches_the_adapters() -> None:
    snap = listing.snapshot()
    live = {d["name"]: d for d in listing.live()}
    missing = sorted(set(live) - set(snap))
    assert not missing, f"{listing.SNAPSHOT.name} lacks {missing}: run `{listing.REGENERATE}`"
    stale = sorted(m for m in live if snap[m] != live[m])
    assert not stale, f"{listing.SNAPSHOT.name} is stale for {stale}: run `{listing.REGENERATE}`"
    assert sorted(snap) == list_methods()  # and no method that is no longer registered


def test_variant_check_without_adapters() -> None:
    assert listing.check_variant("dino", None) == "vits16"
    assert listing.check_variant("mae", "vitl16") == "vitl16"
    with pytest.raises(UnknownNameError, match=r"unknown variant 'vitl61' of method 'mae' \(did you mean 'vitl16'\?\)"):
        listing.check_variant("mae", "vitl61")
    with pytest.raises(UnknownNameError, match="did you mean 'dino'"):
        listing.check_variant("dinno", None)


def test_methods_listing_imports_no_torch() -> None:
    code = (
        "import json, sys\nfrom benchmarks.cli import main\nrc = main(['methods', '--json'])\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'torch imported'\nsys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-500:]
    names = [d["name"] for d in json.loads(proc.stdout)]
    assert names == list_methods()


def test_write_is_atomic_and_deterministic(tmp_path: Path) -> None:
    target = tmp_path / "described.json"
    listing.write(target)
    assert target.read_text() == listing.SNAPSHOT.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["described.json"]  # no temp file left behind
