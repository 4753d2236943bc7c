"""Reported numbers: the schema of ``results/reported/<paper>.yaml`` and its loader.

One YAML file per paper. ``paper`` describes the paper and its release; ``rows`` hold numbers mapped onto
vitbench names (task id, method key, variant, metric); ``claims`` hold confirmed statements that are not a number
of one model on one task (deltas quoted in an abstract, a prompt-set size, a qualitative ranking). Every row and
claim carries its ``source`` and ``verified`` text, and only numbers whose ``verified`` starts with "yes" (read in a
primary source) may be committed: the loader refuses anything else.

A row without ``setting`` is *the* reported number for (task, method, variant, metric): the one reproduced runs are
compared against. Other rows (older weight releases, another resolution, a paper's ablation) carry a ``setting``
and are shown, never compared. Files whose name starts with ``_`` are configuration, not papers
(``_tolerances.yaml``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmarks.records import format_validation_error
from methods._names import NAME_RE
from methods.errors import VitbenchError

DEFAULT_TOLERANCE = 1.0
# libyaml's safe loader when PyYAML was built with it (about 10x faster); the pure-Python safe loader otherwise.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ARXIV_RE = re.compile(r"^\d{4}\.\d{4,5}(v\d+)?$")


def _no_control(value: str) -> str:
    if any((ord(c) < 32 and c not in "\t\n") or ord(c) == 127 for c in value):
        raise ValueError("contains control characters")
    return value


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"{value!r} must match {NAME_RE.pattern}")
    return value


def _url(value: str | None) -> str | None:
    # Only web links: a `javascript:` or `data:` URL in a source field would run in the reader's browser.
    if value is not None and not value.startswith(("https://", "http://")):
        raise ValueError(f"{value!r} must be an http(s) URL")
    return value


def _check_verified(v: str) -> str:
    if not v.startswith("yes"):
        raise ValueError(
            f"only numbers confirmed in a primary source go in (verified must start with 'yes', got {v!r})"
        )
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if isinstance(v, str):
            return _no_control(v)
        if isinstance(v, list):
            for item in v:
                if isinstance(item, str):
                    _no_control(item)
        return v


class PaperInfo(_Model):
    title: str = Field(min_length=1)
    short: str = Field(min_length=1)  # display name: "SelfPatch", "GC ViT"
    authors: str = ""
    venue: str = ""
    arxiv: str | None = None
    code_url: str | None = None
    license: str = ""
    methods: list[str] = Field(default_factory=list)  # vitbench method keys this paper introduces
    weights_released: bool = False
    weights: str = ""
    status: str = ""
    notes: list[str] = Field(default_factory=list)

    @field_validator("code_url")
    @classmethod
    def _code_url(cls, v: str | None) -> str | None:
        return _url(v)

    @field_validator("arxiv")
    @classmethod
    def _arxiv(cls, v: str | None) -> str | None:
        if v is not None and not _ARXIV_RE.match(v):
            raise ValueError(f"{v!r} is not an arXiv id like 2206.07990")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return [_name(m) for m in v]


class ReportedRow(_Model):
    csv_file: str = "reported_numbers.csv"  # the results/reported/reference/ CSV that csv_rows index
    csv_rows: list[int] = Field(default_factory=list)  # 0-based data rows of csv_file
    method: str
    variant: str
    setting: str | None = None
    label: str = ""  # the paper's own name for the model ("DINO + SelfPatch")
    backbone: str = ""
    task: str
    metric: str
    value: float
    paper_metric: str = ""  # the paper's metric name ("AP^bb")
    pretrain_epochs: str | None = None
    dataset: str = ""
    protocol: str = ""  # the paper's protocol, as it states it
    weights_version: str | None = None  # which release of the weights the number belongs to
    caveat: str | None = None  # shown next to the number: why it may not be comparable
    source: str = Field(min_length=1)
    source_url: str | None = None
    # What the source is: the paper's (or README's) text, or an image of the typeset table (a scan or screenshot,
    # read by eye: the site says so next to the source).
    source_kind: Literal["text", "table-image"] = "text"
    verified: str
    tolerance: float | None = Field(default=None, gt=0)

    @field_validator("method", "variant", "task", "metric", "setting", "csv_file")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        return None if v is None else _name(v)

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    @field_validator("verified")
    @classmethod
    def _verified(cls, v: str) -> str:
        return _check_verified(v)

    @field_validator("source_url")
    @classmethod
    def _source_url(cls, v: str | None) -> str | None:
        return _url(v)

    @property
    def key(self) -> tuple[str, str, str, str | None, str]:
        return (self.task, self.method, self.variant, self.setting, self.metric)


class Claim(_Model):
    csv_rows: list[int] = Field(default_factory=list)
    label: str
    text: str
    protocol: str = ""
    source: str = Field(min_length=1)
    source_url: str | None = None
    verified: str

    @field_validator("verified")
    @classmethod
    def _verified(cls, v: str) -> str:
        return _check_verified(v)

    @field_validator("source_url")
    @classmethod
    def _source_url(cls, v: str | None) -> str | None:
        return _url(v)


class PaperFile(_Model):
    paper: PaperInfo
    rows: list[ReportedRow] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> PaperFile:
        seen: set[tuple[Any, ...]] = set()
        for i, row in enumerate(self.rows):
            if row.key in seen:
                raise ValueError(f"rows.{i}: duplicate (task, method, variant, setting, metric) {row.key}")
            seen.add(row.key)
        return self


@dataclass
class Paper:
    id: str  # the file stem
    path: Path
    info: PaperInfo
    rows: list[ReportedRow]
    claims: list[Claim]


@dataclass
class Tolerances:
    """Absolute tolerance (in the metric's unit) within which a reproduced mean matches the reported number.

    Most specific wins: a row's own ``tolerance``, then ``tasks[task][metric]``, then ``metrics[metric]``, then
    ``default``.
    """

    default: float = DEFAULT_TOLERANCE
    metrics: dict[str, float] = field(default_factory=dict)
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)

    def get(self, task: str, metric: str, row: ReportedRow | None = None) -> float:
        if row is not None and row.tolerance is not None:
            return row.tolerance
        if metric in self.tasks.get(task, {}):
            return self.tasks[task][metric]
        return self.metrics.get(metric, self.default)


@dataclass
class Reported:
    papers: list[Paper]

    @property
    def rows(self) -> list[tuple[Paper, ReportedRow]]:
        return [(p, r) for p in self.papers for r in p.rows]

    def default_rows(self) -> dict[tuple[str, str, str, str], tuple[Paper, ReportedRow]]:
        """(task, method, variant, metric) -> the row reproduced runs are compared against."""
        return {(r.task, r.method, r.variant, r.metric): (p, r) for p, r in self.rows if r.setting is None}


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError) as err:
        raise VitbenchError(f"{path}: cannot read ({err})") from None
    except yaml.YAMLError as err:
        raise VitbenchError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def load_paper(path: Path | str) -> Paper:
    """Read and validate one paper file; a :class:`VitbenchError` names the file and the first bad field."""
    path = Path(path)
    if not NAME_RE.match(path.stem):
        raise VitbenchError(f"{path}: file name must match {NAME_RE.pattern} (it is the paper's id)")
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise VitbenchError(f"{path}: expected a mapping with 'paper' and 'rows'")
    try:
        pf = PaperFile.model_validate(data)
    except ValidationError as err:
        raise VitbenchError(format_validation_error(path, err)) from None
    return Paper(id=path.stem, path=path, info=pf.paper, rows=list(pf.rows), claims=list(pf.claims))


def paper_files(reported_dir: Path | str) -> list[Path]:
    d = Path(reported_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("_"))


def load_reported(reported_dir: Path | str) -> Reported:
    """All paper files under ``reported_dir`` (usually ``results/reported``). A (task, method, variant, metric)
    may have one default row (no ``setting``) across all files: two would make the comparison ambiguous."""
    papers = [load_paper(p) for p in paper_files(reported_dir)]
    owner: dict[tuple[Any, ...], Path] = {}
    for paper in papers:
        for row in paper.rows:
            if row.key in owner and owner[row.key] != paper.path:
                raise VitbenchError(
                    f"{paper.path}: row {row.key} is also reported in {owner[row.key]}; give one of them a `setting`"
                )
            owner[row.key] = paper.path
    return Reported(papers)


def load_tolerances(reported_dir: Path | str) -> Tolerances:
    """``<reported_dir>/_tolerances.yaml`` if present, else the defaults."""
    path = Path(reported_dir) / "_tolerances.yaml"
    if not path.exists():
        return Tolerances()
    data = _read_yaml(path) or {}
    if not isinstance(data, dict) or set(data) - {"default", "metrics", "tasks"}:
        raise VitbenchError(f"{path}: expected keys default, metrics, tasks")
    try:
        tol = Tolerances(
            default=float(data.get("default", DEFAULT_TOLERANCE)),
            metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
            tasks={
                str(t): {str(k): float(v) for k, v in (m or {}).items()} for t, m in (data.get("tasks") or {}).items()
            },
        )
    except (TypeError, ValueError, AttributeError) as err:
        raise VitbenchError(f"{path}: tolerances must be numbers ({err})") from None
    values = [tol.default, *tol.metrics.values(), *(v for m in tol.tasks.values() for v in m.values())]
    if any(not (math.isfinite(v) and v > 0) for v in values):
        raise VitbenchError(f"{path}: tolerances must be finite and > 0")
    return tol
