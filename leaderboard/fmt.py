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
    """``"74.50 ± 0.50 (n=3)"``: the mean and the half-width of its 95 % interval (Student t, n - 1 dof), the same
    everywhere a reproduced number is printed; a single seed has no interval to show."""
    if s is None:
        return ""
    if s.ci95 is None:
        return f"{s.mean:.2f} (n={s.n})"
    return f"{s.mean:.2f} ± {s.ci95:.2f} (n={s.n})"


def stat_title(s: Stat | None) -> str:
    """The tooltip of a reproduced number: what the ± means, the interval's ends and the sample std."""
    if s is None:
        return ""
    if s.ci95 is None or s.std is None:
        return f"single seed: no interval (n={s.n})"
    return (
        f"95 % interval {s.mean - s.ci95:.2f} to {s.mean + s.ci95:.2f} (mean ± t·std/√n, Student t, "
        f"{s.n - 1} dof); std {s.std:.2f}, n={s.n}"
    )


def rank(r: int | None, shared: bool) -> str:
    """``"1"``, or ``"=1"`` for a rank another row shares (their 95 % intervals overlap)."""
    if r is None:
        return ""
    return f"={r}" if shared else str(r)


def delta(d: float | None) -> str:
    """Signed, 2 decimals; a delta that rounds to zero prints as +0.00, never -0.00."""
    if d is None:
        return ""
    d = round(d, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{d:+.2f}"
