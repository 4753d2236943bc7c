"""Progress bars for long work (extraction, head training): tqdm, silent when disabled or not a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0, unit: str = "img") -> Iterator[tqdm]:
    disable = not enabled or os.environ.get("VITBENCH_NO_PROGRESS") == "1"
    with tqdm(
        total=total,
        desc=desc,
        initial=initial,
        unit=unit,
        disable=disable,
        dynamic_ncols=True,
        file=sys.stderr,
        leave=False,
    ) as bar:
        yield bar
