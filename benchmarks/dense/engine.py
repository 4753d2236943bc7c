"""What the dense harnesses (COCO, ADE20K) share before they reach the mm* engines: the launcher check and the
guarded import of :mod:`benchmarks.dense.mm_glue`.

It sits above ``mm_glue`` (which imports :mod:`~benchmarks.dense.backbone`, so the check cannot live there) and
imports it only when called: importing this module needs no mm*.
"""

from __future__ import annotations

from types import ModuleType

from methods.errors import VitbenchError


def load_mm_glue(task: str, launcher: str, device: str) -> ModuleType:
    """The mm* glue module for a dense harness, after the checks both engines share: a multi-process launcher needs
    CUDA (mmengine's launchers bind one GPU per process), and the mm* stack must be installed (one line naming the
    command that builds it)."""
    if launcher != "none" and not device.startswith("cuda"):
        raise VitbenchError(
            f"launcher '{launcher}' needs --device cuda: mmengine's launchers bind one GPU per "
            "process (CPU runs are single-process)"
        )
    try:
        from benchmarks.dense import mm_glue
    except ImportError as err:
        raise VitbenchError(
            f"task {task} needs the mm* stack ({err}); install it with: python -m benchmarks.dense.build_mmcv"
        ) from None
    return mm_glue
