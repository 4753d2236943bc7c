"""J and F against values computed by hand on small masks (the official davis2017-evaluation definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.transfer.davis_metrics import (
    boundary_f,
    boundary_map,
    boundary_radius,
    disk_dilate,
    region_iou,
    score_sequence,
    summarise,
)


def mask(shape: tuple[int, int], *pixels: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for y, x in pixels:
        m[y, x] = True
    return m


def test_region_iou_by_hand() -> None:
    gt = np.zeros((4, 4), bool)
    gt[1:3, 1:3] = True  # 4 pixels
    pred = np.zeros((4, 4), bool)
    pred[1:3, 2:4] = True  # 4 pixels, 2 shared
    assert region_iou(gt, pred) == pytest.approx(2 / 6)
    assert region_iou(gt, np.zeros_like(gt)) == 0.0  # an empty prediction of a present object
    assert region_iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # an absent object, correctly not predicted
    assert region_iou(np.zeros_like(gt), pred) == 0.0  # an absent object, predicted anyway


def test_boundary_map_by_hand() -> None:
    """A 2 x 2 square at rows/cols 1-2 of a 5 x 5 image: each pixel is compared with its east, south and south-east
    neighbours, so the boundary is the ring shifted half a pixel towards the origin (worked out cell by cell)."""
    seg = np.zeros((5, 5), bool)
    seg[1:3, 1:3] = True
    want = np.array(
        [
            [1, 1, 1, 0, 0],
            [1, 0, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(boundary_map(seg), want)
    # A mask touching the last row/column: the last row compares east only, the last column south only.
    edge = np.zeros((3, 3), bool)
    edge[2, 2] = True
    np.testing.assert_array_equal(boundary_map(edge), mask((3, 3), (1, 1), (1, 2), (2, 1)))


def test_disk_dilation_by_hand_and_against_brute_force() -> None:
    one = mask((7, 7), (3, 3))
    assert disk_dilate(one, 1).sum() == 5  # the plus: dy^2 + dx^2 <= 1
    assert disk_dilate(one, 2).sum() == 13  # skimage's disk(2)
    assert disk_dilate(mask((7, 7), (0, 0)), 2).sum() == 6  # clipped at the corner: offsets (>=0, >=0) of disk(2)
    rng = np.random.default_rng(0)
    for r in (0, 1, 3, 8):
        m = rng.random((23, 31)) < 0.05
        want = np.zeros_like(m)
        for y, x in zip(*np.nonzero(m)):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if dy * dy + dx * dx <= r * r and 0 <= y + dy < 23 and 0 <= x + dx < 31:
                        want[y + dy, x + dx] = True
        np.testing.assert_array_equal(disk_dilate(m, r), want)


def test_boundary_radius() -> None:
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 * 979.66)
    assert boundary_radius((20, 20)) == 1  # ceil(0.226)
    assert boundary_radius((20, 20), 3) == 3  # >= 1: a pixel count


def test_boundary_f_by_hand() -> None:
    """Single pixels at (2, 2) and (2, 5): boundaries {(1,1), (1,2), (2,1), (2,2)} and {(1,4), (1,5), (2,4), (2,5)}.
    Within 1 px nothing matches (F 0); within 2 px the facing columns match (P = R = 1/2, F 1/2); within 3 all do."""
    gt, pred = mask((10, 10), (2, 2)), mask((10, 10), (2, 5))
    assert boundary_f(gt, pred, bound_th=1) == 0.0
    assert boundary_f(gt, pred, bound_th=2) == pytest.approx(0.5)
    assert boundary_f(gt, pred, bound_th=3) == pytest.approx(1.0)
    # Empty boundaries: empty prediction of a present object -> P 1, R 0 -> F 0; an absent object predicted ->
    # P 0, R 1 -> F 0; absent and not predicted -> F 1.
    empty = np.zeros((10, 10), bool)
    assert boundary_f(gt, empty) == 0.0
    assert boundary_f(empty, pred) == 0.0
    assert boundary_f(empty, empty) == 1.0
    # A 1-px shift of a square is within the 1-px tolerance of a 20 x 20 frame.
    sq = np.zeros((20, 20), bool)
    sq[5:12, 5:12] = True
    assert boundary_f(sq, np.roll(sq, 1, axis=1)) == pytest.approx(1.0)


def test_sequence_scores_by_hand() -> None:
    """Two objects over two scored frames. Object 1: J 2/6 then 1 (perfect); object 2 is absent from frame 1 and
    not predicted there (J 1, F 1), then present but predicted empty in frame 2 (J 0, F 0)."""
    f1_gt = np.zeros((20, 20), np.uint8)
    f1_gt[2:4, 2:4] = 1
    f1_pred = np.zeros((20, 20), np.uint8)
    f1_pred[2:4, 3:5] = 1  # 2 of 4 pixels shared, 1-px shift (within 1 px): F 1
    f2_gt = np.zeros((20, 20), np.uint8)
    f2_gt[10:14, 10:14] = 1
    f2_gt[0:3, 15:18] = 2
    f2_gt[19, 19] = 255  # void: background
    f2_pred = np.where(f2_gt == 1, 1, 0).astype(np.uint8)
    scores = score_sequence("seq", [f1_gt, f2_gt], [f1_pred, f2_pred], n_objects=2)
    assert [s.key for s in scores] == ["seq_1", "seq_2"]
    assert scores[0].j == pytest.approx((2 / 6, 1.0)) and scores[0].f == pytest.approx((1.0, 1.0))
    assert scores[1].j == (1.0, 0.0) and scores[1].f == (1.0, 0.0)
    got = summarise(scores)
    j = ((2 / 6 + 1) / 2 + 0.5) / 2
    f = (1.0 + 0.5) / 2
    assert got["J_mean"] == pytest.approx(100 * j)
    assert got["F_mean"] == pytest.approx(100 * f)
    assert got["JF_mean"] == pytest.approx(100 * (j + f) / 2)
