"""The victim's head is [BT]'s optimiser exactly: plain SGD with momentum at the lr as given, no schedule."""

from __future__ import annotations

import torch

from benchmarks.probe.heads import train_head_grid


def test_constant_unscaled_head_equals_plain_sgd() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    torch.manual_seed(1)
    (head,) = train_head_grid(
        {"f": x},
        y,
        3,
        (0.05,),
        3,
        16,
        0.9,
        0.0,
        seed=0,
        device="cpu",
        progress=False,
        schedule="constant",
        scale_lr=False,
    ).values()
    torch.manual_seed(1)  # the grid's initial weights
    ref = torch.nn.Linear(6, 3)
    torch.nn.init.normal_(ref.weight, std=0.01)
    torch.nn.init.zeros_(ref.bias)
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        perm = torch.randperm(40, generator=gen)
        for s in range(0, 40, 16):
            idx = perm[s : s + 16]
            loss = torch.nn.functional.cross_entropy(ref(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.testing.assert_close(head.weight, ref.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(head.bias, ref.bias, atol=1e-6, rtol=1e-5)
