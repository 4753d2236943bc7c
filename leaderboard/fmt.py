"""Number formatting shared by every output, so the site, the Markdown and the CSV print the same digits."""

from __future__ import annotations

from leaderboard.collect import Stat


def value(v: float | None) -> str:
    """A reported number as the paper printed it, at most 3 decimals: 42.1, 84.444, 3.22."""
    if v is None:
        return ""
    text = f"{v:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def mean(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def stat(s: Stat | None) -> str:
    """``"74.31 ± 0.12 (n=3)"``; a single seed has no spread to show."""
    if s is None:
        return ""
    if s.std is None:
        return f"{s.mean:.2f} (n={s.n})"
    return f"{s.mean:.2f} ± {s.std:.2f} (n={s.n})"


def delta(d: float | None) -> str:
    """Signed, 2 decimals; a delta that rounds to zero prints as +0.00, never -0.00."""
    if d is None:
        return ""
    d = round(d, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{d:+.2f}"
