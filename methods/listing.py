"""What ``vitbench methods`` lists, readable without torch: a committed snapshot of every adapter's ``describe()``.

The adapters are data, but their modules import torch and timm (conversions, official layouts built from tensors),
so a light install (leaderboard, ``validate``, ``tasks``, ``methods``) cannot import them. ``methods/described.json``
holds their descriptions; ``tests/methods/test_listing.py`` fails when it differs from the live adapters, and

    python -m methods.listing --write

regenerates it (after adding or changing an adapter). The run preflight reads variant names from it too, so a typo'd
``METHOD:VARIANT`` is refused before torch is imported. A registered method missing from the snapshot (a new
adapter before ``--write``) is described live, which imports its module.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from methods._names import did_you_mean
from methods.errors import UnknownNameError, VitbenchError
from methods.registry import METHODS, list_methods

SNAPSHOT = Path(__file__).with_name("described.json")
REGENERATE = "python -m methods.listing --write"


@cache
def snapshot() -> dict[str, dict[str, Any]]:
    """``{method: describe()}`` as committed; {} when the file is absent. A malformed file is an error naming it."""
    if not SNAPSHOT.exists():
        return {}
    try:
        items = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
        return {d["name"]: d for d in items}
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise VitbenchError(f"{SNAPSHOT}: not a method snapshot ({err}); regenerate it with `{REGENERATE}`") from None


def describe(name: str) -> dict[str, Any]:
    """``describe()`` of the registered method ``name``: from the snapshot, else from the adapter (imports it)."""
    METHODS.get(name)  # unknown name: did-you-mean error
    snap = snapshot()
    if name in snap:
        return snap[name]
    from methods.registry import get_adapter

    return get_adapter(name).describe()


def describe_all() -> list[dict[str, Any]]:
    return [describe(m) for m in list_methods()]


def check_variant(name: str, variant: str | None) -> str | None:
    """The variant that ``name[:variant]`` selects (the first one by default), checked against the snapshot without
    importing the adapter; None when the snapshot does not know ``name`` (the adapter checks it when built)."""
    METHODS.get(name)
    d = snapshot().get(name)
    if d is None:
        return variant
    names = [v["name"] for v in d["variants"]]
    if variant is None:
        return names[0]
    if variant not in names:
        raise UnknownNameError(f"unknown variant '{variant}' of method '{name}'{did_you_mean(variant, names)}")
    return variant


def live() -> list[dict[str, Any]]:
    """Every registered adapter's ``describe()``, from the adapters themselves (imports torch)."""
    from methods.registry import get_adapter

    return [json.loads(json.dumps(get_adapter(m).describe())) for m in list_methods()]


def write(path: Path = SNAPSHOT) -> Path:
    """Write the snapshot atomically (temp file + rename)."""
    text = json.dumps(live(), indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    snapshot.cache_clear()
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {REGENERATE}")
    print(f"wrote {write()}")
