"""``vitbench new-method NAME``: scaffold an adapter, its test, its registry line and its results folder.

The adapter and test come from ``method_adapter.py.tmpl`` / ``method_test.py.tmpl`` beside this file. The registry
is a dict literal of ``"name": "module:Class"`` lines in ``methods/registry.py``; one line is inserted before the
literal's closing ``}.items():`` so the file stays hand-editable. Nothing existing is overwritten.
"""

from __future__ import annotations

import re
from pathlib import Path

from methods._names import NAME_RE
from methods.errors import VitbenchError

_HERE = Path(__file__).resolve().parent
# Stricter than NAME_RE: the name also becomes a module (dashes -> underscores) and a class name.
_METHOD_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_REGISTRY_END = "}.items():"


def module_name(name: str) -> str:
    return name.replace("-", "_")


def class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def _insert_registry_line(registry: Path, name: str) -> str:
    text = registry.read_text(encoding="utf-8")
    if re.search(rf'^\s*"{re.escape(name)}"\s*:', text, flags=re.M):
        raise VitbenchError(f"{registry}: method '{name}' is already registered")
    end = text.find(_REGISTRY_END)
    if end < 0:
        raise VitbenchError(f"{registry}: cannot find the registry literal's end ('{_REGISTRY_END}')")
    line = f'    "{name}": "methods.{module_name(name)}:{class_name(name)}",\n'
    return text[:end] + line + text[end:]


def scaffold_method(name: str, root: Path | str = Path(".")) -> list[Path]:
    """Write ``methods/<module>.py``, ``tests/methods/test_<module>.py``, the registry line and
    ``results/runs/_methods/<name>/README.md`` under ``root``; return the paths written."""
    root = Path(root)
    if not (_METHOD_RE.match(name) and NAME_RE.match(name)):
        raise VitbenchError(
            f"method name {name!r}: use lower-case letters and digits, words joined by '-' "
            f"(it becomes the module methods/{module_name(name)}.py)"
        )
    registry = root / "methods" / "registry.py"
    if not registry.exists():
        raise VitbenchError(f"{root}: no methods/registry.py here; run from the repository root or pass --root")
    adapter = root / "methods" / f"{module_name(name)}.py"
    test = root / "tests" / "methods" / f"test_{module_name(name)}.py"
    readme = root / "results" / "runs" / "_methods" / name / "README.md"
    for path in (adapter, test):
        if path.exists():
            raise VitbenchError(f"{path}: exists; not overwriting")
    new_registry = _insert_registry_line(registry, name)  # checked before anything is written

    fields = {"name": name, "cls": class_name(name), "title": name}
    adapter.write_text(
        (_HERE / "method_adapter.py.tmpl").read_text(encoding="utf-8").format(**fields), encoding="utf-8"
    )
    test.parent.mkdir(parents=True, exist_ok=True)
    test.write_text((_HERE / "method_test.py.tmpl").read_text(encoding="utf-8").format(**fields), encoding="utf-8")
    registry.write_text(new_registry, encoding="utf-8")
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(
        f"# Results of `{name}`\n\n"
        f"Records are written by `vitbench run --method {name}:VARIANT --task TASK` to "
        f"`results/runs/<task>/{name}/<variant>__seed<n>.json` (task first). Check each with `vitbench validate` "
        f"before the results PR, and add the paper's confirmed numbers as `results/reported/{name}.yaml` "
        f"(see CONTRIBUTING.md). This folder only marks the method as pending; delete it with the first records.\n",
        encoding="utf-8",
    )
    return [adapter, test, registry, readme]
