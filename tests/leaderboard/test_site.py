"""The static site: golden files of a small site, what each page must show, and how the output folder is treated."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from leaderboard.build import MARKER, build_site, main_job
from methods.errors import VitbenchError

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_PAGES = [
    "index.html",
    "tasks/toy-task.html",
    "tasks/toy-task/dino.html",
    "tasks/toy-gen.html",
    "papers/selfpatch.html",
    "leaderboard.md",
    "compare.csv",
]
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page", GOLDEN_PAGES)
def test_golden_pages(small_site, page: str) -> None:
    """Regenerate with VITBENCH_UPDATE_GOLDEN=1 after an intended change, and review the diff."""
    got = (small_site.out / page).read_text(encoding="utf-8")
    golden = GOLDEN / page.replace("/", "__")
    if os.environ.get("VITBENCH_UPDATE_GOLDEN"):
        golden.write_text(got, encoding="utf-8")
    assert golden.exists(), f"no golden file for {page}: run with VITBENCH_UPDATE_GOLDEN=1"
    assert got == golden.read_text(encoding="utf-8")


def test_site_is_deterministic(small: Path, lookup) -> None:
    a = build_site(small, small.parent / "a", task_lookup=lookup).out
    b = build_site(small, small.parent / "b", task_lookup=lookup).out
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_task_page_sections(small_site) -> None:
    html = (small_site.out / "tasks" / "toy-task.html").read_text()
    main_table = html.split('id="main"')[1].split("</table>")[0]
    assert "74.50 ± 0.50 (n=3)" in main_table and 'class="num delta within"' in main_table
    assert 'class="num delta outside worse"' in main_table and "-2.00" in main_table
    assert "reported only: no adapter" in main_table  # mae:vitb16 is reported only, and mae has no adapter here
    assert "ibot" not in main_table  # older protocol and smoke groups stay out of the compared table
    other = html.split("Other protocol:")[1]
    assert "toy-knn v1" in other.split("</h2>")[0] and "70.00 (n=1)" in other
    assert "12.50 (n=1)" in html.split('id="smoke"')[1]
    data = json.loads(html.split('id="vb-data">')[1].split("</script>")[0])
    assert {(d["method"], d["verdict"]) for d in data} == {
        ("dino", "within"),
        ("dino", "no reported"),
        ("selfpatch", "outside"),
        ("mae", "not reproduced"),
    }
    assert "<svg" in html and 'class="pt out worse"' in html  # the scatter marks the point outside tolerance


def test_detail_page_has_probe_card_and_provenance(small_site) -> None:
    html = (small_site.out / "tasks" / "toy-task" / "dino.html").read_text()
    for needle in (
        "Probe card",
        "layers",
        "pooling",
        "resolution",
        "normalisation",
        "checkpoint key",
        "teacher",
        "keys matched",
        "runs/toy-task/dino/vits16__seed2.json",
        "vitbench run --method dino:vits16",
        "0123456789abcdef",
        "toy-knn v2",
    ):
        assert needle in html, needle
    assert html.count('<td class="num" data-v="0">0</td>') == 1  # one row per seed


def test_index_lists_tasks_papers_and_rejected_records(small_site) -> None:
    html = (small_site.out / "index.html").read_text()
    assert 'href="tasks/toy-task.html"' in html and 'href="papers/selfpatch.html"' in html
    assert "Rejected records (1)" in html and "runs/toy-task/deit/wrong-name.json" in html
    assert (small_site.out / "static" / "vitbench.js").exists() and (small_site.out / MARKER).exists()


def test_pages_are_offline(small_site) -> None:
    """No CDN, no remote script, style or font: every src/href to a resource is relative."""
    for page in small_site.out.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', text), page
        assert "@import" not in text


def test_refuses_to_replace_a_folder_it_did_not_make(small: Path, lookup, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(VitbenchError, match="was not made by"):
        build_site(small, precious, task_lookup=lookup)
    assert (precious / "thesis.tex").read_text() == "keep me"
    out = build_site(small, tmp_path / "site", task_lookup=lookup).out
    (out / "stale.html").write_text("old")
    build_site(small, out, task_lookup=lookup)
    assert not (out / "stale.html").exists()  # a rebuild replaces the whole folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]  # no temp folder left behind


def test_committed_results_show_confirmed_numbers_on_the_right_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first command: build from the committed results, print the summary and where the site is."""
    report = main_job(REPO / "results", tmp_path / "site")
    out = capsys.readouterr().out
    assert f"Site: {(tmp_path / 'site' / 'index.html').resolve()}" in out
    assert "coco-maskrcnn-fpn-1x" in out and "ade20k-semfpn-40k" in out
    coco = (report.out / "tasks" / "coco-maskrcnn-fpn-1x.html").read_text()
    for value in ("42.1", "38.5", "40.8", "37.3"):
        assert f">{value}</a>" in coco, value
    ade = (report.out / "tasks" / "ade20k-semfpn-40k.html").read_text()
    assert ">41.2</a>" in ade and ">38.3</a>" in ade and ">42.1</a>" not in ade
    sp = (report.out / "papers" / "selfpatch.html").read_text()
    assert "42.1" in sp and ("not yet reproduced" in sp or "Δ" in sp)
    for pid in ("parti", "sgt", "gcvit", "dino-mm"):
        assert (report.out / "papers" / f"{pid}.html").exists()


def test_a_source_read_from_an_image_of_the_table_says_so(tmp_path: Path, lookup) -> None:  # noqa: ANN001
    from tests.leaderboard.factory import reported_row, write_paper

    results = tmp_path / "results"
    image = reported_row("toy-task", "dino", "vits16", "top1", 74.5, source_kind="table-image")
    text = reported_row("toy-task", "mae", "vitb16", "top1", 68.7)
    write_paper(results, "dino", [image, text])
    out = build_site(results, tmp_path / "site", task_lookup=lookup).out
    note = "read from an image of the typeset table, not from the paper's text"
    for page in ("papers/dino.html", "tasks/toy-task.html"):
        html = (out / page).read_text(encoding="utf-8")
        assert html.count(note) == 1, page  # the image-sourced row only, not the text-sourced one


def test_committed_dualcoop_table_1_is_on_its_task_and_paper_pages(tmp_path: Path) -> None:
    """DualCoOp's partial-label Table 1 (results/reported/dualcoop.yaml): each dataset's ten rows (10-90 % and the
    average) on its task page, every one flagged as read from an image of the table; no zero-shot page (unconfirmed)."""
    out = build_site(REPO / "results", tmp_path / "site").out
    note = "read from an image of the typeset table, not from the paper's text"
    for task, values in (
        ("voc-partial", ("90.3", "93.2")),  # VOC 10 % and the average
        ("coco-partial", ("78.7", "83.1", "81.9")),  # COCO 10 %, 90 % and the average
    ):
        html = (out / "tasks" / f"{task}.html").read_text(encoding="utf-8")
        for value in values:
            assert f">{value}</a>" in html, (task, value)
        assert html.count(note) == 10, task
    paper = (out / "papers" / "dualcoop.html").read_text(encoding="utf-8")
    assert paper.count(note) == 20  # the 20 numbers of Table 1
    assert not [p for p in (out / "tasks").glob("*-zsl.html")]
