"""Status text renders its inline Markdown (escaped first), and reported-only rows without an adapter say so."""

from __future__ import annotations

from leaderboard.build import _adapter_variants
from leaderboard.views import inline_md, no_adapter


def test_inline_markdown_forms() -> None:
    got = inline_md("Adapter `methods/dino.py`; **seed** system, *see* [the README](https://github.com/x/y#z).")
    assert str(got) == (
        "Adapter <code>methods/dino.py</code>; <strong>seed</strong> system, <em>see</em> "
        '<a href="https://github.com/x/y#z" rel="noopener noreferrer">the README</a>.'
    )


def test_inline_markdown_escapes_everything_else() -> None:
    got = str(inline_md('<script>alert(1)</script> `<b>` [x](javascript:alert(1)) a * b * c "q"'))
    assert "<script>" not in got and "&lt;script&gt;" in got and "<code>&lt;b&gt;</code>" in got
    assert "<a " not in got and "javascript:alert(1)" in got  # not a link: only http(s) URLs become links
    assert "&#x27;" not in got and "&quot;q&quot;" in got


def test_no_adapter_reasons() -> None:
    adapters = {"dino": {"vits16", "vitb16"}, "new": None}
    assert no_adapter("mae", "vitb16", adapters) == "reported only: no adapter"
    assert no_adapter("dino", "xcit_s12", adapters) == "reported only: no adapter for this variant"
    assert no_adapter("dino", "vits16", adapters) == ""
    assert no_adapter("new", "anything", adapters) == ""  # registered, variants unknown: say nothing false
    assert no_adapter("mae", "vitb16", None) == ""


def test_adapter_variants_come_from_the_snapshot() -> None:
    got = _adapter_variants({"dino", "unregistered-x"})
    assert got["dino"] is not None and {"vits16", "vitb8"} <= got["dino"] and got["unregistered-x"] is None
