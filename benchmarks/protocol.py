"""Protocols: flat frozen dataclasses with a version. Their resolved config and its hash go into every record."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar

from benchmarks.records import ProtocolInfo


def protocol_hash(name: str, version: int, config: dict[str, Any]) -> str:
    """The hash stored in records: of the protocol's name, version and resolved (JSON) config."""
    blob = json.dumps({"name": name, "version": version, "config": config}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Base of every protocol. Subclasses set ``NAME``/``VERSION`` and declare their fields with defaults that
    are the *paper* setting; :meth:`smoke` returns the tiny CPU setting used by ``--smoke`` and the tests.

    Bump ``VERSION`` whenever a change would move the numbers: the leaderboard never ranks across versions.
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
        return cls(**{**cls.SMOKE, **overrides})

    @classmethod
    def paper(cls, **overrides: Any) -> Protocol:
        return cls(**overrides)

    def replace(self, **changes: Any) -> Protocol:
        return dataclasses.replace(self, **changes)
