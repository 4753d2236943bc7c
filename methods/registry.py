"""The method registry: a static name -> "module:Class" map, so listing methods imports no model code."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from methods._names import Registry

if TYPE_CHECKING:
    from methods.base import MethodAdapter

METHODS: Registry[str] = Registry("method")


def register(name: str, target: str) -> None:
    """Add ``name -> "module:Class"``. Re-registering a name is an error (two adapters would shadow each other)."""
    METHODS.register(name, target)


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
    return sorted(METHODS)


@cache
def get_adapter(name: str) -> MethodAdapter:
    """Import and instantiate the adapter registered as ``name`` (did-you-mean error if unknown)."""
    cls = METHODS.load(name)
    if cls.name != name:
        raise ValueError(f"{METHODS.get(name)} declares name '{cls.name}' but is registered as '{name}'")
    return cls()
