"""Submitted text is untrusted: markup in any free-text field of a record or a reported file renders as inert text,
and markup in a name is refused by the schema (so by `vitbench validate` and by the site's loader)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchmarks.protocol import protocol_hash
from benchmarks.records import parse_record
from leaderboard.build import build_site
from leaderboard.reported import load_paper
from methods.errors import RecordError, VitbenchError
from tests.leaderboard.factory import (
    make_record,
    reported_row,
    small_tasks,
    toy_protocol,
    write_paper,
    write_records,
)

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "</script><script>alert(1)</script>",
    "<!-- unterminated comment",
    "]]><script>alert(1)</script>",
    '<a href="javascript:alert(1)">click</a>',
    '<iframe src="https://evil.example/"></iframe>',
    "<style>body{display:none}</style>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    "<body onload=alert(1)>",
    '" onmouseover="alert(1)',
    "' onfocus='alert(1)' autofocus '",
    "<details open ontoggle=alert(1)>",
    "</textarea><script>alert(1)</script>",
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<base href="https://evil.example/">',
    '<object data="https://evil.example/x.swf"></object>',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "{{ 7*1117 }} {% if true %}jinja{% endif %}",
    "| a | b | [x](javascript:alert(1)) **bold** `code` # head",
    "\u2028\u2029</script>",
    '\\"; alert(1); //',
    "<form action=https://evil.example/><button>go</button></form>",
]
assert len(PAYLOADS) >= 20

ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "link",
    "script",
    "body",
    "header",
    "nav",
    "a",
    "main",
    "h1",
    "h2",
    "h3",
    "p",
    "span",
    "code",
    "strong",
    "em",
    "div",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "button",
    "label",
    "select",
    "option",
    "input",
    "figure",
    "figcaption",
    "svg",
    "line",
    "text",
    "circle",
    "rect",
    "ul",
    "li",
    "dl",
    "dt",
    "dd",
    "abbr",
    "details",
    "summary",
    "pre",
    "section",
    "footer",
}


class _Page(HTMLParser):
    """Collects every tag, attribute, text node and script body of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.text += [v for _, v in attrs if v]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)


def _hostile_record(i: int, payload: str) -> dict:
    rec = make_record("toy-task", f"m{i}", "vits16", 0, {"top1": 70.0 + i / 10}, protocol=toy_protocol(version=2))
    rec["weights"].update(source=payload, file_name=payload)
    rec["weights"]["load_report"].update(
        checkpoint_key=payload,
        stripped_prefixes=[payload],
        dropped=[payload],
        converted=[payload],
        missing_allowed=[payload],
    )
    rec["dataset"].update(name=payload, split=payload, fingerprint=payload + "-fingerprint", skipped={payload: 1})
    rec["provenance"].update(command=payload, device=payload, vitbench_version=payload, versions={payload: payload})
    rec["probe"].update(layers=payload, pooling=payload, neck={payload: [payload]}, head=payload)
    # A protocol config carrying the payload, with its hash recomputed (a forged hash is refused by the one gate,
    # tests/trust): the record is shown apart as another protocol, and must still render inertly.
    rec["protocol"]["config"] = {**rec["protocol"]["config"], "note": payload}
    p = rec["protocol"]
    p["hash"] = protocol_hash(p["name"], p["version"], p["config"])
    rec["extra"] = {payload: payload}
    return rec


def _hostile_paper(root: Path, i: int, payload: str) -> None:
    text = {
        k: payload
        for k in (
            "label",
            "backbone",
            "dataset",
            "protocol",
            "weights_version",
            "caveat",
            "source",
            "pretrain_epochs",
            "paper_metric",
        )
    }
    row = reported_row(
        "toy-task",
        f"m{i}",
        "vits16",
        "top1",
        70.0,
        **text,
        source_url="https://example.org/" + payload.replace(" ", "%20"),
    )
    claim = {"label": payload, "text": payload, "protocol": payload, "source": payload, "verified": "yes (test)"}
    write_paper(
        root,
        f"p{i}",
        [row],
        claims=[claim],
        short=payload,
        authors=payload,
        venue=payload,
        license=payload,
        weights=payload,
        status=payload,
        notes=[payload],
        code_url="https://example.org/?q=" + payload,
        methods=[f"m{i}"],
    )


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "results"
    write_records(root, [_hostile_record(i, p) for i, p in enumerate(PAYLOADS)])
    for i, p in enumerate(PAYLOADS):
        _hostile_paper(root, i, p)
    report = build_site(root, root.parent / "site", task_lookup=small_tasks().get, registered=set())
    assert not report.rejected
    return report.out


def _pages(site: Path) -> dict[Path, _Page]:
    out = {}
    for path in site.rglob("*.html"):
        page = _Page()
        page.feed(path.read_text(encoding="utf-8"))
        page.close()
        out[path] = page
    return out


def test_no_payload_becomes_markup(hostile_site: Path) -> None:
    for path, page in _pages(hostile_site).items():
        for tag, attrs in page.tags:
            assert tag in ALLOWED_TAGS, f"{path}: <{tag}> from a payload"
            assert not [a for a in attrs if a.startswith("on")], f"{path}: event handler on <{tag}>"
            for a in ("href", "src", "action", "xlink:href"):
                value = (attrs.get(a) or "").strip().lower()
                assert not value.startswith(("javascript:", "data:", "vbscript:")), f"{path}: {a}={value}"
            if tag == "script":
                assert attrs.get("type") == "application/json" or (attrs.get("src") or "").endswith("vitbench.js")
            if tag == "meta":
                assert set(attrs) <= {"charset", "name", "content", "http-equiv"}
                assert attrs.get("http-equiv") in (None, "Content-Security-Policy"), f"{path}: meta from a payload"


def test_payloads_render_as_visible_text(hostile_site: Path) -> None:
    pages = _pages(hostile_site)
    shown = "\n".join(t for p in pages.values() for t in p.text)
    for payload in PAYLOADS:
        assert payload.strip() in shown, f"payload not rendered as text: {payload!r}"
    assert "7819" not in "".join(t for p in pages.values() for t in p.text)  # {{ 7*1117 }} stays literal


def test_embedded_json_cannot_close_its_script(hostile_site: Path) -> None:
    for path, page in _pages(hostile_site).items():
        for body in page.scripts:
            assert "<" not in body and ">" not in body, path
            if body.strip():
                json.loads(body)
    raw = (hostile_site / "tasks" / "toy-task.html").read_text()
    assert raw.count("<script") == 2  # the vendored script and the JSON blob, nothing from the data


def test_markdown_and_csv_carry_no_markup(hostile_site: Path) -> None:
    md = (hostile_site / "leaderboard.md").read_text()
    assert "<" not in md and ">" not in md.replace("&gt;", "")
    for line in md.splitlines():
        if line.startswith("| method"):
            width = line.count(" | ")
        elif line.startswith("| "):
            assert line.replace("\\|", "").count(" | ") == width, line  # no payload adds a column
    assert "javascript:" not in (hostile_site / "compare.csv").read_text()


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("field", ["method", "variant", "task", "arch"])
def test_markup_in_names_is_refused(payload: str, field: str) -> None:
    rec = make_record()
    rec[field] = payload
    with pytest.raises(RecordError, match=f"{field}: .*must match"):
        parse_record(rec, "sub.json")


@pytest.mark.parametrize("payload", PAYLOADS[:6])
def test_markup_in_metric_and_reported_names_is_refused(payload: str, tmp_path: Path) -> None:
    rec = make_record(metrics={payload: 1.0})
    with pytest.raises(RecordError, match="metric name"):
        parse_record(rec, "sub.json")
    path = write_paper(tmp_path, "p", [reported_row("knn", "dino", "vits16", payload, 1.0)])
    with pytest.raises(VitbenchError, match=r"rows\.0\.metric"):
        load_paper(path)
