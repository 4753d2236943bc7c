"""The blocking defense against hand computations: gradient-weighted rollout, Grad-CAM, the peak box, the blackout."""

from __future__ import annotations

import pytest
import torch

from benchmarks.backdoor.defense import black_out, gradcam, gradient_rollout, peak_boxes


def _heads(head0: list[list[float]], grad0: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[1, 2, 3, 3]`` attention and gradient: head 0 as given, head 1 with attention 1/3 and gradient 0 (so
    ``mean_heads(A * grad) = head0 * grad0 / 2``)."""
    a = torch.stack([torch.tensor(head0), torch.full((3, 3), 1 / 3)])[None]
    g = torch.stack([torch.tensor(grad0), torch.zeros(3, 3)])[None]
    return a, g


def test_rollout_of_two_hand_built_layers() -> None:
    """CLS + 2 patches, 2 layers, 2 heads, discard_ratio 1/3 (3 of 9 entries), worked through by hand.

    Layer 1: head 0's gradient is 2 everywhere but -2 at (1, 2), so the fused map is head 0 with (1, 2) clipped to 0
    ``[[.5, .3, .2], [.1, .6, 0], [.25, .15, .6]]``; its 3 lowest entries (0, .1, .15) go;
    ``(A + I) / 2 = [[.75, .15, .1], [0, .8, 0], [.125, 0, .8]]``, rows / (1, .8, .925).
    Layer 2: fused = ``[[.2, .5, .3], [.35, .25, .4], [.1, .05, .85]]``; .05, .1, .2 go;
    ``(B + I) / 2 = [[.5, .25, .15], [.175, .625, .2], [0, 0, .925]]``, rows / (.9, 1, .925).
    CLS row of ``B' A'``: patch 1 = 5/9 * .15 + 2.5/9 * 1 = 13/36; patch 2 = 5/9 * .1 + 1.5/9 * (.8 / .925) = 133/666.
    """
    twos = [[2.0] * 3 for _ in range(3)]
    neg = [row[:] for row in twos]
    neg[1][2] = -2.0
    a1, g1 = _heads([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.15, 0.6]], neg)
    a2, g2 = _heads([[0.2, 0.5, 0.3], [0.35, 0.25, 0.4], [0.1, 0.05, 0.85]], twos)
    rel = gradient_rollout([a1, a2], [g1, g2], discard_ratio=1 / 3 + 1e-9, num_prefix_tokens=1)
    torch.testing.assert_close(rel, torch.tensor([[13 / 36, 133 / 666]]), atol=1e-6, rtol=0)
    # Each block is weighted by its own gradient (not the reversed list [BT]'s backward hooks produce).
    swapped = gradient_rollout([a1, a2], [g2, g1], discard_ratio=1 / 3 + 1e-9, num_prefix_tokens=1)
    assert not torch.allclose(swapped, rel)


def test_rollout_clips_negatives_and_normalises_rows() -> None:
    """One layer, nothing discarded: fused ``[[.5, .3, .2], [.1, .6, -.3 -> 0], [.25, .15, .6]]``;
    ``(A + I) / 2 = [[.75, .15, .1], [.05, .8, 0], [.125, .075, .8]]`` with row sums (1, .85, 1). With a CLS token
    the output is its row's patches (.15, .1); without a prefix token (all 3 tokens are patches) it is the mean of
    the normalised rows; with a CLS token that the embedding does not use, the mean of the patch rows."""
    neg = [[2.0] * 3 for _ in range(3)]
    neg[1][2] = -2.0
    a, g = _heads([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.15, 0.6]], neg)
    torch.testing.assert_close(gradient_rollout([a], [g], 0.0, 1), torch.tensor([[0.15, 0.1]]), atol=1e-6, rtol=0)
    mean = gradient_rollout([a], [g], 0.0, 0)
    rows = torch.tensor([[0.75, 0.15, 0.1], [0.05 / 0.85, 0.8 / 0.85, 0.0], [0.125, 0.075, 0.8]])
    torch.testing.assert_close(mean, rows.mean(0, keepdim=True), atol=1e-6, rtol=0)
    # A CLS token whose embedding is not the output (avg-pooled patches, MFM): the mean of the patch rows.
    pooled = gradient_rollout([a], [g], 0.0, 1, cls_output=False)
    torch.testing.assert_close(pooled, rows[1:, 1:].mean(0, keepdim=True), atol=1e-6, rtol=0)


def test_rollout_places_a_patch_only_block_under_the_prefix() -> None:
    """A first block without the CLS token (SP-ViT) acts on the patches; the CLS row passes through it: with a
    uniform 2x2 patch block (normalised ``(A + I) / 2`` = [[.75, .25], [.25, .75]] after fusing 1/2 * 1) and
    then a layer whose CLS row is (.5, .5, 0) after normalisation, CLS -> patches = .5 * (.75, .25)."""
    patch = torch.full((1, 1, 2, 2), 0.5)
    ones = torch.ones(1, 1, 2, 2)
    cls = torch.zeros(1, 1, 3, 3)
    cls[0, 0, 0, 1] = 1.0  # fused CLS row (0, 1, 0): (A + I) / 2 -> (.5, .5, 0)
    grad = torch.ones(1, 1, 3, 3)
    rel = gradient_rollout([patch, cls], [ones, grad], 0.0, 1)
    torch.testing.assert_close(rel, torch.tensor([[0.375, 0.125]]), atol=1e-6, rtol=0)


def test_gradcam_by_hand() -> None:
    """Channel weights = mean gradient (1 and -1); relu(1 * [1, 2] - 1 * [3, -1]) = relu([-2, 3]) = [0, 3]."""
    fmap = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # [1, 2, 1, 2]
    grad = torch.tensor([[[[1.0, 1.0]], [[-2.0, 0.0]]]])
    torch.testing.assert_close(gradcam(fmap, grad), torch.tensor([[[0.0, 3.0]]]))


def _spike(h: int, w: int, y: int, x: int) -> torch.Tensor:
    s = torch.zeros(1, h, w)
    s[0, y, x] = 1.0
    return s


@pytest.mark.parametrize(
    ("peak", "border", "box"),
    [
        ((5, 5), "clip", (3, 7, 3, 7)),  # block 4 starts 4 // 2 before the peak
        ((1, 8), "clip", (0, 3, 6, 10)),  # cut at the top and right borders
        ((9, 0), "clip", (7, 10, 0, 2)),
        ((1, 8), "shift", (0, 4, 6, 10)),  # [BT]: moved inside, always 4 x 4
        ((9, 0), "shift", (6, 10, 0, 4)),
    ],
)
def test_blocking_zeroes_exactly_the_box(peak: tuple[int, int], border: str, box: tuple[int, int, int, int]) -> None:
    boxes = peak_boxes(_spike(10, 10, *peak), filter_size=1, block_size=4, border=border)
    assert boxes.tolist() == [list(box)]
    img = torch.rand(1, 3, 10, 10) + 0.1  # no pixel is 0 before blocking
    out = black_out(img, boxes)
    y0, y1, x0, x1 = box
    inside = torch.zeros(10, 10, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert (out[0][:, inside] == 0).all()
    assert torch.equal(out[0][:, ~inside], img[0][:, ~inside])
    assert img.min() > 0  # the input is untouched


def test_box_filter_prefers_the_broad_region() -> None:
    """A lone spike of 1 vs a 3x3 plateau of 0.5 around (6, 3): the 3x3 box filter's sums are 1 vs 4.5. The [BT]
    geometry (31x31 filter at padding 15, 30x30 box) keeps a 224 map's size: a 31x31 hot square centred at
    (100, 40) has its unique filter maximum there, and the box is y - 15 .. y + 15."""
    sal = _spike(10, 10, 1, 8)
    sal[0, 5:8, 2:5] = 0.5
    assert peak_boxes(sal, 3, 2, "clip").tolist() == [[5, 7, 2, 4]]
    big = torch.zeros(1, 224, 224)
    big[0, 85:116, 25:56] = 1.0
    assert peak_boxes(big, 31, 30, "shift").tolist() == [[85, 115, 25, 55]]
