"""The precision feature extraction runs at, from ``$VITBENCH_AMP`` (torch-free: the preflight checks it too).

``auto`` (the default) is fp16 autocast on CUDA, as timm's ``validate.py --amp`` evaluates, and plain fp32 on the
CPU; ``bf16`` (CPU or CUDA), ``fp16`` (CUDA only) and ``fp32`` (no autocast) choose one. The precision is part of the
feature-cache key, so features computed at one precision are never reused as another's.
"""

from __future__ import annotations

import os

CHOICES = ("auto", "fp16", "bf16", "fp32")


def extraction_precision(device: str) -> str:
    """``fp16``, ``bf16`` or ``fp32`` for extraction on ``device``; ValueError naming the variable if it is wrong."""
    choice = os.environ.get("VITBENCH_AMP", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"VITBENCH_AMP={choice!r}: expected one of {', '.join(CHOICES)}")
    cuda = device.startswith("cuda")
    if choice == "auto":
        return "fp16" if cuda else "fp32"
    if choice == "fp16" and not cuda:
        raise ValueError(f"VITBENCH_AMP=fp16 needs a CUDA device (this run is on {device!r}); use bf16 or fp32")
    return choice
