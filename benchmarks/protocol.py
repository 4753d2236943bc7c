"""Protocols: flat frozen dataclasses with a version. Their resolved config and its hash go into every record.

Protocol modules import neither torch nor timm, so the task catalogue, ``vitbench tasks``, ``validate`` and the
leaderboard can read them on a machine without either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError

from benchmarks.records import ProtocolInfo
from methods._names import did_you_mean
from methods.errors import VitbenchError


def protocol_hash(name: str, version: int, config: dict[str, Any]) -> str:
    """The hash stored in records: of the protocol's name, version and resolved (JSON) config."""
    blob = json.dumps({"name": name, "version": version, "config": config}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Base of every protocol. Subclasses set ``NAME``/``VERSION`` and declare their fields with defaults that
    are the *paper* setting; :meth:`smoke` returns the tiny CPU setting used by ``--smoke`` and the tests.

    Bump ``VERSION`` whenever a change would move the numbers: the leaderboard never ranks across versions.
    A harness runs exactly the protocol it is given: encoder-dependent choices (which blocks exist, which
    recipes collapse) are rules stated in the protocol's docstring and shown in the record's probe card.
    """

    NAME: ClassVar[str] = "protocol"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict[str, Any]] = {}  # field overrides for the smoke setting

    def config(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, as stored in JSON

    def hash(self) -> str:
        return protocol_hash(self.NAME, self.VERSION, self.config())

    def info(self) -> ProtocolInfo:
        return ProtocolInfo(name=self.NAME, version=self.VERSION, hash=self.hash(), config=self.config())

    @classmethod
    def smoke(cls, **overrides: Any) -> Protocol:
        return cls(**{**cls.SMOKE, **cls.coerce(overrides)})

    @classmethod
    def paper(cls, **overrides: Any) -> Protocol:
        return cls(**cls.coerce(overrides))

    @classmethod
    def build(cls, smoke: bool, overrides: Mapping[str, Any] | None = None) -> Protocol:
        return cls.smoke(**dict(overrides or {})) if smoke else cls.paper(**dict(overrides or {}))

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name -> resolved type annotation."""
        return _field_types(cls)

    @classmethod
    def coerce(cls, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``overrides`` against the fields' types and convert them (``"0.1"`` -> 0.1, ``[1, 2]`` -> (1, 2)).

        Raises :class:`VitbenchError` with one line naming the field, the bad value and the expected type, or
        listing the valid fields for an unknown one: nothing is computed with a value the protocol cannot hold.
        """
        types = cls.field_types()
        out: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in types:
                defaults = {f.name: _default(f) for f in dataclasses.fields(cls)}
                fields = ", ".join(f"{k} ({_type_name(t)}, default {defaults[k]!r})" for k, t in types.items())
                hint = did_you_mean(key, list(types))
                hint = hint if hint.startswith(" (did you mean") else ""  # the field list follows anyway
                raise VitbenchError(f"--set {key}: not a field of protocol {cls.NAME}{hint}; fields: {fields}")
            try:
                out[key] = _adapter(types[key]).validate_python(value, strict=False)
            except ValidationError as err:
                msg = err.errors()[0]["msg"]
                raise VitbenchError(
                    f"--set {key}={value!r}: expected {_type_name(types[key])} for protocol {cls.NAME} ({msg})"
                ) from None
        return out

    def replace(self, **changes: Any) -> Protocol:
        return dataclasses.replace(self, **type(self).coerce(changes))


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type[Protocol]) -> dict[str, Any]:
    if cls not in _FIELD_TYPES:
        hints = typing.get_type_hints(cls)
        _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _FIELD_TYPES[cls]


@cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "required"


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__
