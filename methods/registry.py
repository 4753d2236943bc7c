"""The method registry: a static name -> "module:Class" map, so listing methods imports no model code."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from methods._names import NAME_RE, did_you_mean
from methods.errors import UnknownNameError

if TYPE_CHECKING:
    from methods.base import MethodAdapter

_REGISTRY: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Add ``name -> "module:Class"``. Re-registering a name is an error (two adapters would shadow each other)."""
    if not NAME_RE.match(name):
        raise ValueError(f"method name {name!r} must match {NAME_RE.pattern}")
    if name in _REGISTRY:
        raise ValueError(f"method '{name}' is already registered (by {_REGISTRY[name]})")
    _REGISTRY[name] = target


# One line per method. `vitbench new-method NAME` appends here.
for _name, _target in {
    "dino": "methods.dino:Dino",
    "selfpatch": "methods.selfpatch:SelfPatch",
    "mae": "methods.mae:MAE",
    "mocov3": "methods.mocov3:MoCoV3",
    "ibot": "methods.ibot:IBOT",
    "deit": "methods.deit:DeiT",
    "mfm": "methods.mfm:MFM",
    "semmae": "methods.semmae:SemMAE",
    "dino-mm": "methods.dino_mm:DinoMM",
    "sdssl": "methods.sdssl:SDSSL",
    "pacmac": "methods.pacmac:PACMAC",
    "gcvit": "methods.gcvit:GCViT",
    "dualcoop": "methods.dualcoop:DualCoOp",
    "spvit": "methods.spvit:SPViT",
    "sgt": "methods.sgt:SGT",
    "vit-vqgan": "methods.vit_vqgan:ViTVQGAN",
}.items():
    register(_name, _target)


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


@cache
def get_adapter(name: str) -> MethodAdapter:
    """Import and instantiate the adapter registered as ``name`` (did-you-mean error if unknown)."""
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown method '{name}'{did_you_mean(name, list(_REGISTRY))}")
    module, _, attr = _REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if cls.name != name:
        raise ValueError(f"{_REGISTRY[name]} declares name '{cls.name}' but is registered as '{name}'")
    return cls()
