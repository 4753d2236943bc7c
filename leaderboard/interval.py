"""95 % confidence intervals of a mean over seeds (Student t, n - 1 degrees of freedom) and ranks that are shared
when intervals overlap. Plain Python (no scipy): ``vitbench leaderboard`` stays light.

The two-sided quantile comes from the exact t distribution for integer degrees of freedom (Abramowitz & Stegun
26.7.3/26.7.4: a finite series in ``cos θ``, ``θ = atan(t / √ν)``), inverted by bisection to float precision.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95


def _abs_t_cdf(t: float, dof: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``dof`` degrees of freedom (A&S 26.7.3 and 26.7.4), ``t >= 0``."""
    theta = math.atan(t / math.sqrt(dof))
    c2 = math.cos(theta) ** 2
    if dof % 2 == 1:
        if dof == 1:
            return 2.0 * theta / math.pi
        term = total = 1.0
        for k in range(1, (dof - 3) // 2 + 1):  # 1 + 2/3 c² + (2·4)/(3·5) c⁴ + … + (2·4…(ν-3))/(3·5…(ν-2)) c^(ν-3)
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2.0 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term = total = 1.0
    for k in range(1, (dof - 2) // 2 + 1):  # 1 + 1/2 c² + (1·3)/(2·4) c⁴ + … + (1·3…(ν-3))/(2·4…(ν-2)) c^(ν-2)
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


@functools.cache
def t_quantile(dof: int, level: float = LEVEL) -> float:
    """The two-sided Student t critical value: ``t`` with ``P(|T| <= t) = level`` (``1 - (1 - level)/2``
    quantile), e.g. 4.3027 for 2 degrees of freedom at 95 %."""
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"degrees of freedom must be a positive integer, got {dof!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    lo, hi = 0.0, 1.0
    while _abs_t_cdf(hi, dof) < level:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _abs_t_cdf(mid, dof) < level:
            lo = mid
        else:
            hi = mid
    return hi


def half_width(std: float | None, n: int, level: float = LEVEL) -> float | None:
    """Half-width of the ``level`` interval of a mean of ``n`` values with sample std ``std``: ``t · std / √n``
    (t with ``n - 1`` degrees of freedom). None for a single value: it has no interval."""
    if std is None or n < 2:
        return None
    return t_quantile(n - 1, level) * std / math.sqrt(n)


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the closed intervals ``[mean ± half]`` of ``a = (mean, half)`` and ``b`` overlap (touching counts)."""
    return abs(a[0] - b[0]) <= a[1] + b[1] + 1e-12  # 1e-12: intervals that touch must not split on float noise


@dataclass(frozen=True)
class Ranked:
    rank: int
    shared: bool  # True when another row holds the same rank


def shared_ranks(entries: Sequence[tuple[float, float | None]], higher_is_better: bool) -> list[Ranked]:
    """Ranks of ``(mean, half_width)`` entries, returned in input order. Sort by mean, best first (stable: equal
    means keep their input order); the best is rank 1. Each next entry shares the rank of the entry just above it
    when both have an interval (``half_width`` not None, i.e. ≥ 2 seeds) and the two intervals overlap, or when
    the two means are equal; otherwise its rank is its position (1 + the number of entries above it). Sharing
    chains: A overlapping B and B overlapping C put all three on A's rank even if A and C do not overlap.
    An entry without an interval (a single seed) is ranked by its value alone."""
    order = sorted(range(len(entries)), key=lambda i: -entries[i][0] if higher_is_better else entries[i][0])
    ranks = [0] * len(entries)
    prev = None
    for pos, i in enumerate(order):
        mean, half = entries[i]
        if prev is not None:
            p_mean, p_half = entries[prev]
            if mean == p_mean or (half is not None and p_half is not None and overlap((mean, half), (p_mean, p_half))):
                ranks[i] = ranks[prev]
                prev = i
                continue
        ranks[i] = pos + 1
        prev = i
    counts: dict[int, int] = {}
    for r in ranks:
        counts[r] = counts.get(r, 0) + 1
    return [Ranked(r, counts[r] > 1) for r in ranks]
