"""A detail page's group section is rendered in Python (:func:`leaderboard.views.group_section_html`, issue 17: a
10,000-record site in <= 2 s): it gives the same bytes as the Jinja template it replaced, on every branch and with
markup in every field."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import jinja2
import pytest
from markupsafe import Markup

from leaderboard.views import group_section_html

# The template's group loop as it was (leaderboard/templates/detail.html.jinja before the change), verbatim.
OLD_SECTION = (Path(__file__).parent / "golden" / "detail_group_section.jinja").read_text(encoding="utf-8")

PAYLOAD = "<b a='1' c=\"2\">&amp;</b>"


def _env() -> jinja2.Environment:  # the site's settings (leaderboard.build._env)
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _group(i: int, text: str, varies: bool, status: str) -> dict[str, Any]:
    return {
        "anchor": f"g-{text}-{i}",
        "method": f"m{text}",
        "variant": f"v{text}",
        "arch": text,
        "track": "paper" if i % 2 else text,
        "status": status,
        "protocol": f"toy v1 {text}",
        "seeds": [0, 1, 2][: 1 + i % 3],
        "summary": [
            {
                "metric": f"top{j}{text}",
                "stat": f"7{j}.0 ± 0.{j}",
                "stat_title": text if j % 2 else "",
                "reported": "" if j == 2 else text,
                "delta": f"-{j}",
                "verdict": ["", "within", text][j % 3],
                "cls": ["", "within", f"outside {text}"][j % 3],
            }
            for j in range(i % 4)
        ],
        "probe": [(f"layers{text}", text), ("pooling", "cls")][: i % 3],
        "probe_varies": varies,
        "probe_json": '{"a": "' + text + '"}',
        "weights": [(f"https://x/{text}", "" if j else "ab" * 32, "" if j % 2 else text) for j in range(1 + varies)],
        "load_report": [] if i % 2 else [("checkpoint key", text), ("dropped", ""), ("keys matched", "150")],
        "dataset": [("name", text), ("split", ""), ("fingerprint", "0123"), ("samples", "5"), ("skipped", "")],
        "dataset_varies": not varies,
        "config": "{" + text + "}",
        "metrics": [f"top1{text}", "top5"][: i % 3],
        "runs": Markup("<tr><td>already escaped &amp; inserted as is</td></tr>"),
    }


CASES = [
    _group(i, text, varies, status)
    for i, (text, varies, status) in enumerate(
        itertools.product(["plain", PAYLOAD, ""], [False, True], ["current", "other", "smoke"])
    )
]


@pytest.mark.parametrize("groups", [CASES[:1], CASES, []], ids=["one", "all", "none"])
def test_python_section_is_the_templates_bytes(groups: list[dict[str, Any]]) -> None:
    want = _env().from_string(OLD_SECTION).render(groups=groups)
    got = "".join(group_section_html(g) for g in groups)
    assert got == want
    if groups is CASES:
        assert "<b a=" not in got and "&lt;b a=&#39;1&#39; c=&#34;2&#34;&gt;&amp;amp;&lt;/b&gt;" in got
