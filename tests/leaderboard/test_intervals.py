"""The 95 % interval of a mean over seeds (Student t, n - 1 dof) and the ranks shared when intervals overlap: the
arithmetic against hand computations, the ranking rule on a hand-built set of records (a lower-is-better headline),
and what the built page and the Markdown show."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from leaderboard import fmt
from leaderboard.build import build_site
from leaderboard.collect import group_records, load_records
from leaderboard.compare import assemble, comparison_rows
from leaderboard.interval import half_width, overlap, shared_ranks, t_quantile
from tests.leaderboard.factory import make_record, toy_protocol, toy_task, write_records

# Two-sided 95 % critical values as printed in every t table (3 decimals).
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 20: 2.086, 29: 2.045, 30: 2.042}


def test_t_quantile_matches_the_closed_forms_and_the_printed_table() -> None:
    # dof 1 is the Cauchy distribution: t = tan(π (p - 1/2)) at p = 0.975.
    assert t_quantile(1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)
    # dof 2 has F(t) = 1/2 + t / (2 √(2 + t²)), hence t = (2p - 1) / √(2 p (1 - p)).
    p = 0.975
    assert t_quantile(2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)
    for dof, printed in T_TABLE.items():
        assert round(t_quantile(dof), 3) == printed, dof
    assert 1.959 < t_quantile(10_000) < 1.961  # tends to the normal 1.95996…
    assert t_quantile(4, 0.90) == pytest.approx(2.132, abs=5e-4)  # another level: the 95 % one-sided value
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="degrees of freedom"):
            t_quantile(bad)  # type: ignore[arg-type]


def test_interval_of_three_seeds_by_hand(tmp_path: Path) -> None:
    """n = 3 seeds 10, 12, 14: mean 12, sample std 2, t(0.975, 2 dof) = 0.95 / √(2 · 0.975 · 0.025) = 4.30265,
    half-width 4.30265 · 2 / √3 = 4.96827; a single seed has no interval."""
    hand = 0.95 / math.sqrt(2 * 0.975 * 0.025) * 2.0 / math.sqrt(3)
    assert hand == pytest.approx(4.96827, abs=1e-5)
    assert half_width(2.0, 3) == pytest.approx(hand, rel=1e-12)
    assert half_width(None, 1) is None and half_width(0.0, 1) is None

    recs = [
        make_record("toy-task", "dino", "vits16", s, {"top1": v}, protocol=toy_protocol(2))
        for s, v in enumerate([10.0, 12.0, 14.0])
    ]
    recs.append(make_record("toy-task", "mae", "vitb16", 0, {"top1": 11.0}, protocol=toy_protocol(2)))
    results = tmp_path / "results"
    write_records(results, recs)
    specs = {"toy-task": toy_task("toy-task", version=2)}
    groups = {g.method: g for g in group_records(load_records(results, specs.get), specs)}
    stat = groups["dino"].stats["top1"]
    assert (stat.mean, stat.std, stat.n) == (12.0, 2.0, 3)
    assert stat.ci95 == pytest.approx(hand, rel=1e-12)
    assert stat.interval == pytest.approx((12.0 - hand, 12.0 + hand))
    assert fmt.stat(stat) == "12.00 ± 4.97 (n=3)"
    assert fmt.stat_title(stat) == ("95 % interval 7.03 to 16.97 (mean ± t·std/√n, Student t, 2 dof); std 2.00, n=3")
    single = groups["mae"].stats["top1"]
    assert single.ci95 is None and single.interval is None and fmt.stat(single) == "11.00 (n=1)"
    row = next(r for r in comparison_rows(assemble(results, task_lookup=specs.get).tables) if r["method"] == "dino")
    assert row["ci95"] == pytest.approx(round(hand, 4)) and row["std"] == pytest.approx(2.0)


def test_overlap_and_shared_ranks_rule() -> None:
    assert overlap((10.0, 1.0), (8.0, 1.0))  # touching closed intervals overlap
    assert not overlap((10.0, 1.0), (7.9, 1.0))
    # Higher is better: 10 ± 1 and 8.5 ± 1 overlap, 8.5 ± 1 and 7 ± 1 overlap: sharing chains (10 and 7 do not).
    got = shared_ranks([(7.0, 1.0), (10.0, 1.0), (8.5, 1.0)], higher_is_better=True)
    assert [(r.rank, r.shared) for r in got] == [(1, True)] * 3
    # Lower is better: the smallest mean is rank 1; a gap restarts at the position (competition ranking).
    got = shared_ranks([(5.0, 0.5), (5.8, 0.5), (8.0, 0.2), (8.1, None), (8.1, None), (9.0, None)], False)
    assert [(r.rank, r.shared) for r in got] == [(1, True), (1, True), (3, False), (4, True), (4, True), (6, False)]
    # The same numbers, higher is better: the order (and with it the ranks) reverses.
    got = shared_ranks([(5.0, 0.5), (5.8, 0.5), (8.0, 0.2)], True)
    assert [(r.rank, r.shared) for r in got] == [(2, True), (2, True), (1, False)]
    assert shared_ranks([], True) == []


FID_TASK = "toy-fid"


def _fid_results(root: Path) -> Path:
    """A lower-is-better headline (FID). Means and 95 % half-widths:

    - aa 5.2 ± 0.50 (3 seeds) and bb 5.8 ± 0.50 (3 seeds) overlap: both rank =1;
    - cc 8.1 ± 0.25 (3 seeds), no overlap with bb: rank 3;
    - dd 8.2 (1 seed) lies inside cc's interval, but has none itself: ranked by value, rank 4;
    - ee 9.6 ± 1.27 (2 seeds) would overlap dd's value, but dd has no interval: rank 5;
    - an older-protocol group and a smoke group with a better FID never get a rank.
    """
    v2 = toy_protocol(version=2)
    seeds = {"aa": [5.0, 5.2, 5.4], "bb": [5.6, 5.8, 6.0], "cc": [8.0, 8.1, 8.2], "dd": [8.2], "ee": [9.5, 9.7]}
    recs = [
        make_record(FID_TASK, m, "vits16", s, {"FID": v}, protocol=v2)
        for m, values in seeds.items()
        for s, v in enumerate(values)
    ]
    recs.append(make_record(FID_TASK, "old", "vits16", 0, {"FID": 1.0}, protocol=toy_protocol(version=1)))
    recs.append(
        make_record(FID_TASK, "smk", "vits16", 0, {"FID": 0.5}, track="smoke", protocol=toy_protocol(2, smoke=True))
    )
    write_records(root, recs)
    return root


EXPECTED = [("aa", "=1"), ("bb", "=1"), ("cc", "3"), ("dd", "4"), ("ee", "5")]


@pytest.fixture
def fid_lookup():  # noqa: ANN201
    return {FID_TASK: toy_task(FID_TASK, version=2, headline="FID")}.get


def test_shared_ranks_on_records_lower_is_better(tmp_path: Path, fid_lookup) -> None:  # noqa: ANN001
    lb = assemble(_fid_results(tmp_path / "results"), task_lookup=fid_lookup)
    t = lb.tables[FID_TASK]
    assert t.headline == "FID"
    got = [(r.method, fmt.rank(r.rank, r.rank_shared)) for r in t.rows]
    assert got == EXPECTED  # "old" (another protocol) and "smk" (smoke) are not rows, so never ranked
    assert [g.method for g in t.other] == ["old"] and [g.method for g in t.smoke] == ["smk"]
    half = {r.method: r.group.stats["FID"].ci95 for r in t.rows if r.group}
    assert half["aa"] == pytest.approx(4.302652729749464 * 0.2 / math.sqrt(3))
    assert half["dd"] is None and half["ee"] == pytest.approx(12.706204736174707 * math.sqrt(0.02) / math.sqrt(2))


def test_page_and_markdown_show_intervals_and_shared_ranks(tmp_path: Path, fid_lookup) -> None:  # noqa: ANN001
    results = _fid_results(tmp_path / "results")
    out = build_site(results, tmp_path / "site", task_lookup=fid_lookup, registered=set()).out
    html = (out / "tasks" / f"{FID_TASK}.html").read_text(encoding="utf-8")
    main = html.split('id="main"')[1].split("</table>")[0]
    assert '<button type="button">rank</button>' in main.split("</thead>")[0]
    ranks = re.findall(r'<td class="num rank" data-v="(\d*)"(?: title="([^"]*)")?>([^<]*)</td>', main)
    methods = re.findall(r'<td data-v="([a-z]+)"><code>', main)
    assert list(zip(methods, [shown for _, _, shown in ranks])) == EXPECTED
    assert [v for v, _, _ in ranks] == ["1", "1", "3", "4", "5"]  # the sort key is the number
    assert "shared: the 95 % intervals overlap" in ranks[0][1] and "shared" not in ranks[2][1]
    assert "5.20 ± 0.50 (n=3)" in main and "8.20 (n=1)" in main and "9.60 ± 1.27 (n=2)" in main
    assert 'title="95 % interval 4.70 to 5.70 (mean ± t·std/√n, Student t, 2 dof); std 0.20, n=3"' in main
    assert 'title="single seed: no interval (n=1)"' in main
    legend = html.split('id="legend">')[1].split("</p>")[0]
    assert "95 % interval (Student t with n − 1 degrees of freedom" in legend
    assert "(lower is better)" in legend and "single-seed row has no interval and is ranked by its value" in legend
    assert "0.50 (n=1)" in html.split('id="smoke"')[1]  # smoke and other protocol shown apart, never ranked

    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    section = md.split(f"### {FID_TASK}")[1]
    assert "ranked by FID (lower is better)" in section
    lines = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| rank")]
    assert [(ln.split(" | ")[0][2:], ln.split(" | ")[1]) for ln in lines] == [(r, m) for m, r in EXPECTED]
    assert "| =1 | aa | vits16 |  |  | 5.20 ± 0.50 (n=3) |" in section
    assert "half-width of its 95 % interval (Student t, n - 1 degrees of freedom)" in md
    assert "ranked by its value" in md


def test_a_table_without_reproduced_rows_has_no_rank_column(tmp_path: Path, fid_lookup) -> None:  # noqa: ANN001
    from tests.leaderboard.factory import reported_row, write_paper

    results = tmp_path / "results"
    write_paper(results, "aa", [reported_row(FID_TASK, "aa", "vits16", "FID", 5.0)])
    out = build_site(results, tmp_path / "site", task_lookup=fid_lookup, registered=set()).out
    html = (out / "tasks" / f"{FID_TASK}.html").read_text(encoding="utf-8")
    assert '<button type="button">rank</button>' not in html and 'class="num rank"' not in html
    assert "| rank |" not in (out / "leaderboard.md").read_text(encoding="utf-8")
