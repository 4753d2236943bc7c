"""The committed reported numbers (results/reported/*.yaml) and the loader's refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from leaderboard.reported import Tolerances, load_paper, load_reported, load_tolerances
from methods.errors import VitbenchError
from methods.registry import get_adapter, list_methods
from tests.leaderboard.factory import reported_row, write_paper

REPO = Path(__file__).resolve().parents[2]
REPORTED = REPO / "results" / "reported"
# The reference tables the reported numbers were taken from, committed beside them (their upstream is the project's
# shared/reference folder; test_reference_copies_match_upstream checks the copies where that folder is present).
REFERENCE = REPO / "results" / "reported" / "reference" / "reported_numbers.csv"
UPSTREAM = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="module")
def committed():
    return load_reported(REPORTED)


def _value(committed, task: str, method: str, variant: str, metric: str, setting: str | None = None) -> float:
    hits = [
        r.value
        for _, r in committed.rows
        if (r.task, r.method, r.variant, r.metric, r.setting) == (task, method, variant, metric, setting)
    ]
    assert len(hits) == 1, (task, method, variant, metric, setting, hits)
    return hits[0]


def test_selfpatch_and_dino_confirmed_numbers_on_their_tasks(committed) -> None:
    assert _value(committed, "coco-maskrcnn-fpn-1x", "selfpatch", "vits16", "bbox_AP") == 42.1
    assert _value(committed, "coco-maskrcnn-fpn-1x", "selfpatch", "vits16", "segm_AP") == 38.5
    assert _value(committed, "coco-maskrcnn-fpn-1x", "dino", "vits16", "bbox_AP") == 40.8
    assert _value(committed, "coco-maskrcnn-fpn-1x", "dino", "vits16", "segm_AP") == 37.3
    assert _value(committed, "ade20k-semfpn-40k", "selfpatch", "vits16", "mIoU") == 41.2
    assert _value(committed, "ade20k-semfpn-40k", "dino", "vits16", "mIoU") == 38.3
    assert _value(committed, "knn", "dino", "vits16", "top1") == 74.5


def test_gcvit_numbers_name_their_weights_release(committed) -> None:
    tiny = {
        r.setting: r
        for _, r in committed.rows
        if (r.task, r.method, r.variant, r.metric) == ("imagenet-supervised", "gcvit", "tiny", "top1")
    }
    assert {k: v.value for k, v in tiny.items()} == {None: 83.5, "weights-2022-06": 83.2, "weights-2022-07": 83.37}
    assert all(r.weights_version for r in tiny.values())
    assert "2023-05" in tiny[None].weights_version


def test_every_row_cites_a_confirmed_source(committed) -> None:
    for paper, row in committed.rows:
        assert row.verified.startswith("yes"), (paper.id, row.key)
        assert row.source and row.source_url and row.source_url.startswith("https://"), (paper.id, row.key)
    for paper in committed.papers:
        for claim in paper.claims:
            assert claim.verified.startswith("yes")


def test_systems_without_weights_keep_their_reported_rows(committed) -> None:
    papers = {p.id: p for p in committed.papers}
    assert (
        not papers["parti"].info.weights_released
        and _value(committed, "coco-t2i-zeroshot", "parti", "20b", "FID") == 7.23
    )
    assert not papers["vit-vqgan"].info.weights_released and papers["vit-vqgan"].rows
    assert "sgt" in papers  # no confirmed number yet, but it has its page and status


# Released models the adapters do not cover (yet): their rows are reported only.
REPORTED_ONLY_VARIANTS = {("dino", v) for v in ("xcits12p16", "xcits12p8", "xcitm24p16", "xcitm24p8")}


def test_registered_methods_use_registered_variants(committed) -> None:
    """A reported row is compared with runs of the same (method, variant): a misspelt variant would never match."""
    registered = set(list_methods())
    for _, row in committed.rows:
        if row.method in registered and (row.method, row.variant) not in REPORTED_ONLY_VARIANTS:
            names = {v.name for v in get_adapter(row.method).variants}
            assert row.variant in names, f"{row.method}:{row.variant} is not a registered variant ({sorted(names)})"


def test_exactly_the_confirmed_reference_rows_are_in(committed) -> None:
    """Every confirmed row of reported_numbers.csv is in, and every row of another reference file (csv_file) is its
    row, value for value: reported_dualcoop.csv (read from an image of DualCoOp's Table 1) entirely."""
    tables: dict[str, list[dict[str, str]]] = {}
    for name in {r.csv_file for _, r in committed.rows} | {REFERENCE.name}:
        with (REFERENCE.parent / name).open(encoding="utf-8") as fh:
            tables[name] = list(csv.DictReader(fh))
    rows = tables[REFERENCE.name]
    yes = {i for i, r in enumerate(rows) if r["verified"].startswith("yes")}
    cited = {
        i
        for p in committed.papers
        for r in [*p.rows, *p.claims]
        for i in r.csv_rows
        if getattr(r, "csv_file", REFERENCE.name) == REFERENCE.name
    }
    assert cited == yes, f"missing {sorted(yes - cited)}, not confirmed {sorted(cited - yes)}"
    for p in committed.papers:
        for r in p.rows:
            ref = tables[r.csv_file][r.csv_rows[0]]
            if "/" not in ref["value"]:  # rows that list several values are split across tasks
                assert float(ref["value"]) == r.value, (p.id, r.key)
    dualcoop = [r for _, r in committed.rows if r.csv_file == "reported_dualcoop.csv"]
    assert (
        sorted(i for r in dualcoop for i in r.csv_rows)
        == list(range(len(tables["reported_dualcoop.csv"])))
        == list(range(20))
    )
    assert all(r.source_kind == "table-image" for r in dualcoop)


def test_dualcoop_table_1_rows(committed) -> None:
    assert _value(committed, "voc-partial", "dualcoop", "rn101", "mAP_p10") == 90.3
    assert _value(committed, "voc-partial", "dualcoop", "rn101", "mAP") == 93.2
    assert _value(committed, "coco-partial", "dualcoop", "rn101", "mAP_p90") == 83.1
    assert _value(committed, "coco-partial", "dualcoop", "rn101", "mAP") == 81.9
    assert not [r for _, r in committed.rows if r.task.endswith("-zsl")]  # zero-shot numbers: not confirmed yet


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"verified": "unverified"}, "rows.0.verified"),
        ({"verified": "secondary (aggregator)"}, "rows.0.verified"),
        ({"value": float("nan")}, "rows.0.value"),
        ({"source_url": "javascript:alert(1)"}, "rows.0.source_url"),
        ({"method": "<b>x</b>"}, "rows.0.method"),
        ({"source_kind": "<b>scan</b>"}, "rows.0.source_kind"),
        ({"source": ""}, "rows.0.source"),
        ({"protocol": "bell\x07"}, "rows.0.protocol"),
        ({"unknown_field": 1}, "rows.0.unknown_field"),
    ],
)
def test_loader_refuses_a_bad_row_naming_the_field(tmp_path: Path, change: dict, field: str) -> None:
    path = write_paper(tmp_path, "bad", [reported_row("knn", "dino", "vits16", "top1", 74.5) | change])
    with pytest.raises(VitbenchError, match=rf"bad\.yaml: {field.replace('.', '[.]')}"):
        load_paper(path)


def test_two_default_rows_for_one_number_are_ambiguous(tmp_path: Path) -> None:
    write_paper(tmp_path, "a", [reported_row("knn", "dino", "vits16", "top1", 74.5)])
    write_paper(tmp_path, "b", [reported_row("knn", "dino", "vits16", "top1", 74.0)])
    with pytest.raises(VitbenchError, match="also reported in"):
        load_reported(tmp_path / "reported")
    write_paper(tmp_path, "b", [reported_row("knn", "dino", "vits16", "top1", 74.0, setting="other-weights")])
    assert len(load_reported(tmp_path / "reported").default_rows()) == 1


def test_tolerances_most_specific_wins(tmp_path: Path) -> None:
    (tmp_path / "_tolerances.yaml").write_text(
        yaml.safe_dump({"default": 0.8, "metrics": {"FID": 0.5}, "tasks": {"knn": {"top1": 0.3}}})
    )
    tol = load_tolerances(tmp_path)
    assert tol.get("linear", "top1") == 0.8
    assert tol.get("gen", "FID") == 0.5
    assert tol.get("knn", "top1") == 0.3
    assert load_tolerances(tmp_path / "missing") == Tolerances()
    (tmp_path / "_tolerances.yaml").write_text("default: -1\n")
    with pytest.raises(VitbenchError, match="> 0"):
        load_tolerances(tmp_path)


def test_committed_tolerances_default_to_one_point() -> None:
    assert load_tolerances(REPORTED).default == 1.0


def test_reported_metrics_are_the_harness_metrics(committed) -> None:
    """A reported number meets reproduced ones only under the same metric name, so every reported metric of a
    catalogued task must be one the task declares (for a runnable task: one its harness writes). The catalogue is
    torch- and mm*-free, so every catalogued task is checked, dense ones included."""
    from benchmarks.catalog import TASKS, get_task

    checked = 0
    for paper, row in committed.rows:
        if row.task not in TASKS:
            continue
        spec = get_task(row.task)
        assert spec.metric_meta(row.metric) is not None, (
            f"{paper.id}: {row.task} reports '{row.metric}', the task declares {list(spec.metrics)}"
        )
        checked += 1
    assert checked >= 30  # knn, linear and the COCO rows at least


@pytest.mark.parametrize(
    ("info", "field"),
    [
        ({"arxiv": '2206.1"><script>'}, "paper.arxiv"),
        ({"code_url": "javascript:alert(1)"}, "paper.code_url"),
        ({"methods": ["<b>"]}, "paper.methods"),
        ({"title": ""}, "paper.title"),
    ],
)
def test_loader_refuses_bad_paper_info(tmp_path: Path, info: dict, field: str) -> None:
    path = write_paper(tmp_path, "bad", [], **info)
    with pytest.raises(VitbenchError, match=rf"bad\.yaml: {field.replace('.', '[.]')}"):
        load_paper(path)


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="no shared/reference beside this checkout to compare the copies with")
def test_reference_copies_match_upstream() -> None:
    for copy in sorted(REFERENCE.parent.glob("*.csv")):
        assert copy.read_bytes() == (UPSTREAM / copy.name).read_bytes(), f"{copy} differs from {UPSTREAM / copy.name}"
