"""The COCO protocols: flat (no protocol derives from another) and hash-stable (no torch, no mm* needed).

The literal hashes are those of the protocols before they were flattened (an inheritance chain
CocoDetProtocol <- CocoMaskRcnn3xProtocol <- CocoCascade3xProtocol): records written then must keep matching.
"""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.catalog import get_task
from benchmarks.dense.protocols import COCO_SMOKE, CocoCascade3xProtocol, CocoDetProtocol, CocoMaskRcnn3xProtocol
from benchmarks.protocol import Protocol

PROTOCOLS = (CocoDetProtocol, CocoMaskRcnn3xProtocol, CocoCascade3xProtocol)

# (name, paper hash, smoke hash), computed with the pre-flattening classes.
PINNED = {
    CocoDetProtocol: ("selfpatch-coco-maskrcnn-fpn-1x", "c01510c84155d425", "b87d2128927ab35a"),
    CocoMaskRcnn3xProtocol: ("gcvit-coco-maskrcnn-3x", "8a7b37b8896b6724", "5335ad4ac2aff6b8"),
    CocoCascade3xProtocol: ("gcvit-coco-cascade-3x", "ddf4b77f4e333eb2", "7242f11f2297044d"),
}


@pytest.mark.parametrize("cls", PROTOCOLS, ids=lambda c: c.__name__)
def test_protocol_hashes_are_unchanged(cls):
    name, paper, smoke = PINNED[cls]
    assert (cls.NAME, cls.VERSION) == (name, 1)
    assert cls().hash() == cls.paper().hash() == paper
    assert cls.smoke().hash() == smoke


@pytest.mark.parametrize("cls", PROTOCOLS, ids=lambda c: c.__name__)
def test_protocols_are_flat(cls):
    """Each derives from Protocol only and declares every field itself."""
    assert cls.__bases__ == (Protocol,)
    assert set(cls.__annotations__) >= {f.name for f in dataclasses.fields(cls)}


def test_the_coco_protocols_share_fields_and_smoke_setting_only():
    fields = [[f.name for f in dataclasses.fields(cls)] for cls in PROTOCOLS]
    assert fields[0] == fields[1] == fields[2]
    assert all(cls.SMOKE is COCO_SMOKE for cls in PROTOCOLS)
    # what differs is the recipe: 3x schedule and GC ViT's optimiser; the cascade adds its detector and box heads
    one, three, cascade = (cls().config() for cls in PROTOCOLS)
    schedule = {"epochs", "lr_steps", "warmup_iters", "lr", "base_batch_size", "batch_per_gpu"}
    assert {k for k in one if one[k] != three[k]} == schedule | {"no_decay_keys", "drop_path_rate"}
    assert {k for k in three if three[k] != cascade[k]} == {"detector", "bbox_head"}


@pytest.mark.parametrize(
    ("task", "cls"),
    [
        ("coco-maskrcnn-fpn-1x", CocoDetProtocol),
        ("coco-maskrcnn-3x", CocoMaskRcnn3xProtocol),
        ("coco-cascade-3x", CocoCascade3xProtocol),
    ],
)
def test_catalogue_entries_run_their_protocol(task, cls):
    spec = get_task(task)
    assert spec.protocol is cls and spec.harness == "benchmarks.dense.coco:CocoDetHarness"
    assert type(spec.protocol_for(smoke=True)) is cls
    assert spec.protocol_for(smoke=False, overrides={"epochs": "3"}).epochs == 3
