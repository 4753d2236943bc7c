"""Progress for long work (extraction, head training) that fits where it goes.

- stderr is a terminal: a tqdm bar (plain ASCII when ``NO_COLOR`` is set);
- stderr is a file or a pipe (logs, CI, Slurm): one plain line every ``VITBENCH_PROGRESS_INTERVAL`` seconds
  (default 30) and one when the work is done — ``desc: done/total unit (pct), rate, ETA`` — so bars never fill a
  log file with carriage returns or wrap an error line;
- ``--no-progress`` (``enabled=False``) or ``VITBENCH_NO_PROGRESS=1``: nothing.

Imports neither torch nor tqdm at module level (tqdm loads only for a terminal).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class Progress:
    """What a caller of :func:`progress_bar` may use: ``update(n)`` and ``set_postfix(**values)``."""

    def update(self, n: int = 1) -> None:
        """``n`` more units are done."""

    def set_postfix(self, **values: Any) -> None:
        """Extra ``key=value`` pairs to show with the count (the last loss, the iteration)."""

    def close(self) -> None:
        """The work ended (or failed)."""


class PlainProgress(Progress):
    """Periodic plain lines: ``extract: 320/1000 img (32%), 41.2 img/s, ETA 0:16``."""

    def __init__(self, total: int, desc: str, initial: int, unit: str, stream: TextIO, interval: float) -> None:
        self.total, self.desc, self.unit, self.stream, self.interval = total, desc, unit, stream, interval
        self.n = self.start_n = initial
        self.t0 = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False
        self.last_n: int | None = None
        self._emit()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self.total or time.monotonic() - self.last >= self.interval:
            self._emit()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed and self.last_n != self.n:
            self._emit(force=True)
        self.closed = True

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        done = self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if self.n >= self.total:
            parts.append(f"done in {_clock(elapsed)}")
        elif rate > 0:
            parts.append(f"{rate:.3g} {self.unit}/s, ETA {_clock((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _emit(self, force: bool = False) -> None:
        if self.last_n == self.n and not force:
            return
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self.last, self.last_n = time.monotonic(), self.n


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _interval() -> float:
    raw = os.environ.get("VITBENCH_PROGRESS_INTERVAL", "30")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 30.0


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or exotic streams
        return False


@contextmanager
def progress_bar(
    total: int, desc: str, enabled: bool = True, initial: int = 0, unit: str = "img", stream: TextIO | None = None
) -> Iterator[Any]:
    """Progress for ``total`` units of work on ``stream`` (default: stderr at call time); see the module docstring.

    Yields an object with ``update(n)`` and ``set_postfix(**values)`` (a tqdm bar on a terminal)."""
    out = sys.stderr if stream is None else stream
    if not enabled or os.environ.get("VITBENCH_NO_PROGRESS") == "1":
        yield Progress()
        return
    if _is_tty(out):
        from tqdm.auto import tqdm

        plain = "NO_COLOR" in os.environ  # no-color.org: any value, even empty
        with tqdm(
            total=total,
            desc=desc,
            initial=initial,
            unit=unit,
            dynamic_ncols=True,
            file=out,
            leave=False,
            ascii=True if plain else None,
            colour=None,
        ) as bar:
            yield bar
        return
    bar = PlainProgress(total, desc, initial, unit, out, _interval())
    try:
        yield bar
    except BaseException:
        bar.closed = True  # the error's own line says what happened: no progress line after it
        raise
    bar.close()
