"""Name checks and the one lazy registry used for methods, tasks and synthetic-data makers.

A :class:`Registry` maps a name to a value, usually a ``"module:attr"`` string that is imported only when
:meth:`Registry.load` asks for it, so listing names imports no model code (lm-evaluation-harness does the same).
Registering a name twice is an error; an unknown name gets a did-you-mean hint.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from methods.errors import UnknownNameError

# Names end up in file paths and in the rendered site: keep them to a safe, boring alphabet.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

V = TypeVar("V")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or a list of choices when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(sorted(choices))})"


def import_target(target: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"target {target!r} must read 'module:attr'")
    return getattr(importlib.import_module(module), attr)


class Registry(Generic[V]):
    """An ordered ``name -> value`` map with duplicate checks and did-you-mean errors.

    ``kind`` names what is registered ("method", "task", "synthetic dataset kind") in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, V] = {}

    def register(self, name: str, value: V) -> V:
        if not NAME_RE.match(name):
            raise ValueError(f"{self.kind} name {name!r} must match {NAME_RE.pattern}")
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is already registered (by {self._items[name]!r})")
        self._items[name] = value
        return value

    def get(self, name: str) -> V:
        """The registered value; :class:`UnknownNameError` with a did-you-mean hint for an unknown name."""
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.kind} '{name}'{did_you_mean(name, list(self._items))}")
        return self._items[name]

    def load(self, name: str) -> Any:
        """Import the ``"module:attr"`` registered as ``name``."""
        target = self.get(name)
        if not isinstance(target, str):
            raise TypeError(f"{self.kind} '{name}' is registered as {target!r}, not a 'module:attr' string")
        return import_target(target)

    def names(self) -> list[str]:
        """Names in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, V]]:
        return list(self._items.items())
