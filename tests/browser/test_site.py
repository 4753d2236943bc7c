"""The built site in headless Chromium (Debian's `chromium`, driven by playwright): tables render, sorting and
filters work, and no page logs a console error (a Content-Security-Policy violation would be one).

Run: ``pytest -m browser tests/browser``. Needs ``apt-get install chromium`` and ``pip install playwright``
(``playwright install`` is not needed: the system browser is used).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leaderboard.build import build_site
from tests.leaderboard.factory import small_results, small_tasks

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Browser tests run only when asked for (-m browser): a missing browser is then a failure, not a skip.
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install it with apt-get install chromium (as .ci/run does)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = small_results(tmp_path_factory.mktemp("browser") / "results")
    return build_site(root, root.parent / "site", task_lookup=small_tasks().get).out


def _open(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems


def _column(page: Any, header: str) -> list[str]:
    idx = page.eval_on_selector_all(
        "#main thead th", "(ths, h) => ths.findIndex(th => th.textContent.trim() === h)", header
    )  # DOM text: no arrow
    assert idx >= 0, header
    return page.eval_on_selector_all(
        "#main tbody tr:not([hidden])", "(rows, i) => rows.map(r => r.cells[i].getAttribute('data-v'))", idx
    )


def _sort(page: Any, header: str) -> None:
    # The sort arrow (CSS ::after) becomes part of the accessible name once a column is sorted.
    page.locator("#main thead").get_by_role("button", name=re.compile(rf"^{re.escape(header)}( [▲▼])?$")).click()


def test_every_page_loads_without_console_errors(browser: Any, site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 8
    for path in pages:
        page, problems = _open(browser, path)
        assert page.locator("table").count() >= 1 or "papers" in path.parts, path
        page.close()
        assert problems == [], f"{path.relative_to(site)}: {problems}"


def test_task_table_renders_sorts_and_filters(browser: Any, site: Path) -> None:
    page, problems = _open(browser, site / "tasks" / "toy-task.html")
    assert page.locator("#main tbody tr").count() == 4
    assert page.locator(".filters .count").inner_text() == "4 of 4 rows"  # the script ran
    assert page.locator("#main td.delta.outside.worse").count() == 1
    assert page.locator("#main td.delta.within").count() == 1
    assert page.locator("svg.plot").count() == 2

    _sort(page, "top1 reported")
    assert _column(page, "top1 reported") == ["68.0", "69.3", "74.5", "76.0"]
    _sort(page, "top1 reported")
    assert _column(page, "top1 reported") == ["76.0", "74.5", "69.3", "68.0"]
    _sort(page, "top1 reproduced")
    assert _column(page, "top1 reproduced")[:2] == ["74.0", "74.5"]  # empty cells sort last either way
    assert _column(page, "top1 reproduced")[2:] == ["", ""]
    _sort(page, "method")
    assert _column(page, "method") == ["dino", "dino", "mae", "selfpatch"]
    # dino 74.50 ± 0.50 and selfpatch 74.00 ± 1.27 (95 % intervals) overlap: both rank 1, shown "=1".
    _sort(page, "rank")
    assert _column(page, "rank") == ["1", "1", "", ""] and _column(page, "method")[:2] == ["dino", "selfpatch"]
    assert page.locator("#main td.rank").all_inner_texts()[:2] == ["=1", "=1"]
    assert "95 % interval 74.00 to 75.00" in (page.locator("#main td.ours").first.get_attribute("title") or "")

    page.select_option("select[data-key=method]", "dino")
    assert _column(page, "method") == ["dino", "dino"]
    page.check("input[data-key=reproduced]")
    assert _column(page, "variant") == ["vits16"] and _column(page, "setting") == [""]
    page.select_option("select[data-key=method]", "")
    page.uncheck("input[data-key=reproduced]")
    page.fill("input[data-key=backbone]", "vit-s")
    assert len(_column(page, "method")) == 4
    page.fill("input[data-key=backbone]", "resnet")
    assert _column(page, "method") == [] and page.locator(".filters .count").inner_text() == "0 of 4 rows"
    assert problems == []


def test_index_links_reach_task_and_paper_pages(browser: Any, site: Path) -> None:
    page, problems = _open(browser, site / "index.html")
    page.get_by_role("link", name="toy-task").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/tasks/toy-task.html")
    page.get_by_role("link", name="3 seeds").click()
    page.wait_for_load_state("load")
    assert "/tasks/toy-task/dino.html#g-vits16-v2-" in page.url
    assert page.locator("section.group").first.locator("table.runs tbody tr").count() == 3
    assert problems == []


def test_chromium_is_the_debian_one() -> None:
    """The CI installs the browser from Debian; a downloaded playwright build would not be allowed there."""
    assert shutil.which("chromium") is not None and Path(CHROMIUM).exists()


@pytest.fixture(scope="module")
def real_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site of the committed results (long names, many tasks): what a phone reader actually gets."""
    repo = Path(__file__).resolve().parents[2]
    return build_site(repo / "results", tmp_path_factory.mktemp("real") / "site").out


_LAYOUT = """() => {
  const doc = document.documentElement;
  const unwrapped = [...document.querySelectorAll('table')].filter(t => !t.parentElement.classList.contains('scroll'));
  const clipped = [...document.querySelectorAll('svg.plot text')].filter(t => {
    const b = t.getBBox(), vb = t.ownerSVGElement.viewBox.baseVal;
    if (t.hasAttribute('transform')) return false;  // the rotated axis title, centred on its axis by construction
    return b.x < -0.5 || b.x + b.width > vb.width + 0.5 || b.y < -0.5 || b.y + b.height > vb.height + 0.5;
  }).map(t => t.textContent);
  return {page: doc.scrollWidth, view: window.innerWidth, unwrapped: unwrapped.length, clipped: clipped};
}"""


@pytest.mark.parametrize("width", [1400, 400])
@pytest.mark.parametrize("which", ["small", "real"])
def test_no_horizontal_page_overflow(
    browser: Any, site: Path, real_site: Path, width: int, which: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """At 1400 and 400 px every page fits the window: tables scroll inside their own wrapper, plots shrink, bar
    labels stay inside their SVG. A screenshot of each page is kept (``VITBENCH_SCREENSHOTS`` to choose where)."""
    import os

    root = site if which == "small" else real_site
    shots = Path(os.environ.get("VITBENCH_SCREENSHOTS") or tmp_path_factory.mktemp("shots")) / f"{which}-{width}"
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(root.rglob("*.html"))
    assert len(pages) >= 8
    context = browser.new_context(viewport={"width": width, "height": 900})
    bad = []
    for path in pages:
        page = context.new_page()
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        got = page.evaluate(_LAYOUT)
        rel = str(path.relative_to(root))
        if got["page"] > got["view"] or got["unwrapped"] or got["clipped"]:
            bad.append(f"{rel}: {got}")
        if path.name == "index.html" or "tasks" in path.parts[-2:-1] or path.parent.name == "papers":
            shot = shots / (rel.replace("/", "__") + ".png")
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        page.close()
    context.close()
    assert bad == [], "\n".join(bad)
