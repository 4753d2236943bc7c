"""The leaderboard's fast paths refuse exactly what the slow checks refuse (issue 17: 10,000 records in <= 2 s).

- :func:`benchmarks.validate._raw_clean`: the file's bytes clear a record of control characters without a dump;
  every control character, however ``json.dumps`` writes it, still gets the record rejected with the field named.
- :func:`benchmarks.records._too_deep` (level by level, containers only) against a plain recursive depth.
- :func:`benchmarks.records._no_duplicates` (one ``dict(pairs)``) still names the repeated key.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks.records import MAX_DEPTH, RecordError, _too_deep, decode_record_json
from benchmarks.validate import _raw_clean, validate_file
from leaderboard.collect import load_records
from tests.trust._records import knn_record, write

CONTROL = [*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F]  # what has_control_chars refuses (tab, newline pass)


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("code", CONTROL)
def test_every_control_character_is_still_refused_by_the_leaderboard(
    code: int, ensure_ascii: bool, tmp_path: Path
) -> None:
    rec = knn_record()
    rec["provenance"]["command"] = f"vitbench run{chr(code)}x"
    raw = json.dumps(rec, ensure_ascii=ensure_ascii)
    assert not _raw_clean(raw.encode()), hex(code)
    write(tmp_path / "results", rec, raw)
    recs = load_records(tmp_path / "results")
    assert recs.records == [] and len(recs.rejected) == 1
    assert "provenance.command: contains control characters" in recs.rejected[0][1]


@pytest.mark.parametrize("text", ["tab\there", "two\nlines", "caf\u00e9", "back\\slash b\\b", "x\u2028y"])
def test_allowed_characters_keep_the_record(text: str, tmp_path: Path) -> None:
    rec = knn_record()
    rec["provenance"]["command"] = text
    path = write(tmp_path / "results", rec, json.dumps(rec, ensure_ascii=False))
    assert validate_file(path) is None
    recs = load_records(tmp_path / "results")
    assert len(recs.records) == 1 and not recs.rejected
    # an escaped backslash before "b" reads as a possible \b escape: a false "dirty" only costs the dump
    assert _raw_clean(path.read_bytes()) == ("\\" not in text)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _nest(depth: int, rng: random.Random) -> Any:
    """A tree of dicts and lists about ``depth`` levels deep, with shallow siblings (its depth: :func:`_depth`)."""
    value: Any = rng.choice([1, "s", None, [], {}]) if depth else 1
    for level in range(depth - (1 if isinstance(value, list | dict) else 0)):
        sibling = [1, {"x": [2]}] if level % 3 == 0 else 3
        value = {"a": value, "b": sibling} if rng.random() < 0.5 else [sibling, value]
    return value


def test_depth_check_agrees_with_a_recursive_depth_around_the_limit() -> None:
    rng = random.Random(0)
    for depth in [0, 1, 2, *range(MAX_DEPTH - 3, MAX_DEPTH + 4)]:
        for _ in range(20):
            tree = _nest(depth, rng)
            assert _too_deep(tree) == (_depth(tree) > MAX_DEPTH), (depth, _depth(tree))
    assert not _too_deep({"a": [[[]]]}, limit=4) and _too_deep({"a": [[[]]]}, limit=3)


def test_too_deep_record_text_is_refused_and_the_limit_itself_passes() -> None:
    def chain(levels: int) -> str:  # {"a": {"a": [[... 1 ...]]}}: exactly ``levels`` containers deep
        half = levels // 2
        return '{"a": ' * half + "[" * (levels - half) + "1" + "]" * (levels - half) + "}" * half

    assert _depth(json.loads(chain(MAX_DEPTH))) == MAX_DEPTH
    assert decode_record_json(chain(MAX_DEPTH))
    with pytest.raises(RecordError, match=f"x.json: nested deeper than {MAX_DEPTH} levels"):
        decode_record_json(chain(MAX_DEPTH + 1), "x.json")


def test_duplicate_keys_name_the_first_repeated_key() -> None:
    with pytest.raises(RecordError, match="x.json: duplicate key 'b'"):
        decode_record_json('{"a": {"b": 1, "c": 2, "b": 3}, "d": 4}', "x.json")
    with pytest.raises(RecordError, match="duplicate key 'a'"):
        decode_record_json('{"a": 1, "b": 2, "a": 1, "b": 2}')
    text = '{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}'
    assert decode_record_json(text) == json.loads(text)  # the same key in different objects is no duplicate


def test_a_record_with_few_brackets_skips_the_walk_and_one_with_many_is_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.records as records

    walked: list[Any] = []
    real = records._too_deep

    def spy(data: Any, limit: int = MAX_DEPTH) -> bool:
        walked.append(data)
        return real(data, limit)

    monkeypatch.setattr(records, "_too_deep", spy)
    decode_record_json('{"a": [[1], {"b": "[[[[["}]}')
    assert walked == []  # 4 containers (and 5 brackets in a string): depth <= 9 <= 32 without looking
    text = '{"a": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}"
    with pytest.raises(RecordError, match="nested deeper"):
        decode_record_json(text)
    assert len(walked) == 1
