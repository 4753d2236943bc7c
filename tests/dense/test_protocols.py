"""The COCO protocols: flat (no protocol derives from another) and hash-stable (no torch, no mm* needed).

The literal hashes are those of the protocols before they were flattened (an inheritance chain
CocoDetProtocol <- CocoMaskRcnn3xProtocol <- CocoCascade3xProtocol): records written then must keep matching.
"""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.catalog import get_task
from benchmarks.dense.protocols import (
    COCO_SMOKE,
    Ade20kSemFpnProtocol,
    Ade20kUperNetProtocol,
    CocoCascade1xProtocol,
    CocoCascade3xProtocol,
    CocoDetProtocol,
    CocoMaskRcnn3xProtocol,
)
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


# ------------------------------------------------------------------------------------------------ added protocols
# (name, paper hash, smoke hash) of the protocols added after the flattening: a change that moves them needs a
# VERSION bump (and a new pin).
NEW = {
    CocoCascade1xProtocol: ("ibot-coco-cascade-1x", "d06349241f98893c", "184b3dc7ddb01776"),
    Ade20kSemFpnProtocol: ("selfpatch-ade20k-semfpn-40k", "3ba0312c42fabc55", "83ec232fcd88904f"),
    Ade20kUperNetProtocol: ("xcit-ade20k-upernet-160k", "8b1785bd1e41ecce", "1b242d64f8215d36"),
}


@pytest.mark.parametrize("cls", list(NEW), ids=lambda c: c.__name__)
def test_new_protocols_are_flat_and_pinned(cls):
    name, paper, smoke = NEW[cls]
    assert (cls.NAME, cls.VERSION) == (name, 1) and cls.__bases__ == (Protocol,)
    assert set(cls.__annotations__) >= {f.name for f in dataclasses.fields(cls)}
    assert cls().hash() == paper and cls.smoke().hash() == smoke


def test_ade20k_protocols_hold_the_papers_values():
    """SelfPatch's semfpn config and XCiT's UperNet config, field by field (protocols_wave2.md § ADE20K)."""
    sem, up = Ade20kSemFpnProtocol(), Ade20kUperNetProtocol()
    assert (sem.head, sem.pyramid, sem.vit_indices, sem.neck_channels, sem.head_channels) == (
        "semfpn",
        False,
        (2, 5, 8, 11),
        256,
        128,
    )
    assert (sem.iters, sem.lr, sem.weight_decay, sem.warmup_iters, sem.warmup_ratio, sem.poly_power) == (
        40_000,
        6e-5,
        0.01,
        1500,
        1e-6,
        1.0,
    )
    assert sem.base_batch_size == 16 and sem.batch_per_gpu * 4 == 16 and sem.drop_path_rate == 0.1
    assert (sem.crop_size, sem.train_scale, sem.ratio_range, sem.cat_max_ratio) == (
        (512, 512),
        (2048, 512),
        (0.5, 2.0),
        0.75,
    )
    assert (sem.test_scale, sem.test_mode, sem.ms_ratios, sem.layer_decay) == ((2048, 512), "whole", (), 1.0)
    assert (up.head, up.pyramid, up.vit_indices, up.head_channels, up.aux_channels, up.aux_loss_weight) == (
        "upernet",
        True,
        (3, 5, 7, 11),
        512,
        256,
        0.4,
    )
    assert (up.iters, up.base_batch_size, up.batch_per_gpu * 8, up.lr, up.weight_decay) == (160_000, 16, 16, 6e-5, 0.01)
    assert up.ms_ratios == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) and up.test_mode == "whole"
    assert up.drop_path_rate == 0.05  # upernet_xcit_small_12_p16_160k_ade20k.py (Semantic FPN's is 0.1)
    # the smoke setting changes only sizes, length and widths, never the recipe's structure
    assert Ade20kUperNetProtocol.smoke().ms_ratios and Ade20kSemFpnProtocol.smoke().pyramid is False
    cascade = CocoCascade1xProtocol()
    assert (cascade.epochs, cascade.lr_steps, cascade.layer_decay, cascade.drop_path_rate) == (12, (8, 11), 0.75, 0.2)


@pytest.mark.parametrize(
    ("task", "cls", "harness"),
    [
        ("coco-cascade-1x", CocoCascade1xProtocol, "benchmarks.dense.coco:CocoDetHarness"),
        ("ade20k-semfpn-40k", Ade20kSemFpnProtocol, "benchmarks.dense.ade20k:Ade20kHarness"),
        ("ade20k-upernet-160k", Ade20kUperNetProtocol, "benchmarks.dense.ade20k:Ade20kHarness"),
    ],
)
def test_new_catalogue_entries(task, cls, harness):
    spec = get_task(task)
    assert spec.protocol is cls and spec.harness == harness and spec.runnable
    assert type(spec.protocol_for(smoke=True)) is cls
    if task.startswith("ade20k"):
        assert spec.synth_kind == spec.dataset_kind == "ade20k" and spec.headline == "mIoU"
        assert spec.data is not None and dict(spec.data.splits) == {"training": 20_210, "validation": 2_000}
        assert spec.data.n_classes == 150 and {"mIoU", "mIoU_ms", "aAcc", "mAcc"} <= set(spec.metrics)
