"""``python tests/benchmarks/_tiny_clip_cli.py run ...``: the CLI with DualCoOp's CLIP configs replaced by the tiny
random CLIP the clip tests use in-process (``tests/methods/test_image_text.py``), for subprocess runs (torchrun)."""

from __future__ import annotations

import sys

from benchmarks.cli import main
from methods import get_adapter
from tests.methods.test_image_text import TINY

if __name__ == "__main__":
    type(get_adapter("dualcoop")).clip_configs = {"rn50": TINY, "rn101": TINY}  # type: ignore[attr-defined]
    sys.exit(main(sys.argv[1:]))
