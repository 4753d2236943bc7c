"""The result record: one JSON file per (task, method, variant, seed) run.

Layout on disk (DESIGN.md § Result record)::

    <results>/runs/<task>/<method>/<variant>__seed<n>.json

Records are written atomically (temp file in the same folder + ``os.replace``), so a crash never leaves a
half-written file, and an existing record is never overwritten unless asked to. The pydantic model below is
the single definition of the schema: the writer, ``vitbench validate`` and the leaderboard all use it.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from methods._names import NAME_RE
from methods.errors import RecordError

SCHEMA_VERSION: Literal[1] = 1
_SHA256_CHARS = frozenset("0123456789abcdef")
_GIT_SHA = re.compile(r"[0-9a-f]{7,64}")
MAX_SEED = 2**32 - 1  # numpy's seed range; torch's is wider, but no run needs more
MAX_DEPTH = 32  # JSON nesting a record may have (a real one has 5); deeper is refused before anything walks it


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"{what} {value!r} must match {NAME_RE.pattern} (letters, digits, '._+-'; no markup)")
    return value


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def has_control_chars(value: str) -> bool:
    """Control characters (other than tab and newline) corrupt terminals and logs."""
    return _CONTROL.search(value) is not None


def _check_text(value: str) -> str:
    """Free text may hold anything printable, but no control characters."""
    if has_control_chars(value):
        raise ValueError("contains control characters")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadReport(_Model):
    """What happened to every key of the checkpoint on its way into the model."""

    checkpoint_key: str | None = None  # e.g. "teacher", "state_dict", "model"; None = flat state dict
    stripped_prefixes: list[str] = Field(default_factory=list)
    matched: int = 0  # keys copied one-to-one
    dropped: list[str] = Field(default_factory=list)  # in the file, deliberately not loaded (allow-listed)
    converted: list[str] = Field(default_factory=list)  # "old -> new (how)" lines
    missing_allowed: list[str] = Field(default_factory=list)  # model keys left at init (allow-listed)
    non_finite: int = 0  # tensors with NaN/inf: the loader refuses any, so a record's is always 0
    resample_pos_embed: bool = False  # --resample-pos-embed was given: a position table of any grid was resampled
    integrity: str | None = None  # how the file was identified: "sha256 pinned, verified", "unpinned", ...

    @field_validator("non_finite")
    @classmethod
    def _finite(cls, v: int) -> int:
        if v != 0:
            raise ValueError(f"{v} tensors with NaN/inf: weights like that are refused at load, so no record has them")
        return v

    @field_validator("integrity")
    @classmethod
    def _integrity(cls, v: str | None) -> str | None:
        return v if v is None else _check_text(v)


class Weights(_Model):
    source: str  # "random", a local path, a URL or an "hf-hub:" id
    sha256: str | None = None
    file_name: str | None = None
    load_report: LoadReport | None = None

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or not set(v) <= _SHA256_CHARS):
            raise ValueError("must be 64 lowercase hex characters")
        return v

    @field_validator("source")
    @classmethod
    def _src(cls, v: str) -> str:
        return _check_text(v)


class ProtocolInfo(_Model):
    name: str
    version: int = Field(ge=1)
    hash: str = Field(min_length=12, max_length=64)
    config: dict[str, Any]


class DatasetInfo(_Model):
    name: str
    split: str
    fingerprint: str = Field(min_length=8)
    n_samples: int = Field(ge=0)
    root: str | None = None
    skipped: dict[str, int] = Field(default_factory=dict)  # documented skips, e.g. {"degenerate_boxes": 3}
    # The dataset's identity, compared with the task's declared ``DataIdentity`` for paper-track records (optional in
    # the schema so older and smoke records stay valid; a paper record without them is refused by the gate):
    splits: dict[str, int] | None = None  # samples per split read, e.g. {"train": 1281167, "val": 50000}
    n_classes: int | None = Field(default=None, ge=0)
    classes_sha256: str | None = None  # sha256 of the newline-joined class list in label order
    annotations: dict[str, str] = Field(default_factory=dict)  # annotation file name -> sha256

    @field_validator("name", "split")
    @classmethod
    def _txt(cls, v: str) -> str:
        return _check_text(v)

    @field_validator("classes_sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or not set(v) <= _SHA256_CHARS):
            raise ValueError("must be 64 lowercase hex characters")
        return v

    @field_validator("splits")
    @classmethod
    def _sizes(cls, v: dict[str, int] | None) -> dict[str, int] | None:
        if v is not None and any(n < 0 for n in v.values()):
            raise ValueError("split sizes must be >= 0")
        return v


class MetricMeta(_Model):
    higher_is_better: bool = True
    unit: str = "%"
    lo: float | None = 0.0  # inclusive range the value must fall in (None = unbounded)
    hi: float | None = 100.0


class Provenance(_Model):
    vitbench_version: str
    git_sha: str | None = None
    git_dirty: bool | None = None
    versions: dict[str, str]
    device: str
    started_at: datetime
    wall_s: float = Field(ge=0)
    command: str
    host: str | None = None
    world_size: int = Field(default=1, ge=1)  # processes the run ran on (torchrun / srun); 1 without a launcher

    @field_validator("command", "device")
    @classmethod
    def _txt(cls, v: str) -> str:
        return _check_text(v)

    @field_validator("git_sha")
    @classmethod
    def _git_sha(cls, v: str | None) -> str | None:
        if v is not None and not _GIT_SHA.fullmatch(v):
            raise ValueError("must be a git commit id: 7 to 64 lowercase hex characters")
        return v


class Record(_Model):
    """One run of one task on one encoder. See the module docstring for where it lives on disk."""

    schema_version: Literal[1] = SCHEMA_VERSION
    method: str
    variant: str
    arch: str
    weights: Weights
    task: str
    protocol: ProtocolInfo
    dataset: DatasetInfo
    metrics: dict[str, float]
    metric_meta: dict[str, MetricMeta]
    seed: int = Field(ge=0, le=MAX_SEED)
    track: Literal["smoke", "paper"]
    provenance: Provenance
    # The probe card: what the harness fed the head (layers, pooling, resolution, normalisation, neck...).
    probe: dict[str, Any] = Field(default_factory=dict)
    # Anything else worth keeping: the full hyper-parameter grid, log and config paths.
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method", "variant", "task")
    @classmethod
    def _names(cls, v: str, info: Any) -> str:
        return _check_name(v, info.field_name)

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        return _check_name(v, "arch")

    @model_validator(mode="after")
    def _consistency(self) -> Record:
        if not self.metrics:
            raise ValueError("metrics: at least one metric is required")
        for name, value in self.metrics.items():
            _check_name(name, "metric name")
            if not math.isfinite(value):
                raise ValueError(f"metrics.{name}: value {value} is not finite")
            meta = self.metric_meta.get(name)
            if meta is None:
                raise ValueError(f"metric_meta.{name}: missing (every metric needs its meta)")
            if (meta.lo is not None and value < meta.lo) or (meta.hi is not None and value > meta.hi):
                raise ValueError(f"metrics.{name}: value {value} outside [{meta.lo}, {meta.hi}]")
        if self.track == "paper":
            if self.weights.source == "random":
                raise ValueError("weights.source: random weights cannot be a paper-track result")
            if self.weights.sha256 is None:
                raise ValueError("weights.sha256: required for paper-track results")
        return self

    # ---------------------------------------------------------------------------------------------- paths
    def relpath(self) -> Path:
        return record_relpath(self.task, self.method, self.variant, self.seed)


def record_relpath(task: str, method: str, variant: str, seed: int) -> Path:
    """``runs/<task>/<method>/<variant>__seed<n>.json`` relative to the results root."""
    return Path("runs") / task / method / f"{variant}__seed{seed}.json"


def format_validation_error(path: Path | str, err: ValidationError) -> str:
    """``"<path>: <field.path>: <message> (+N more)"``: one line naming the file and the first bad field."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<file>"
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{path}: {loc}: {msg}{more}"


def parse_record(data: dict[str, Any], path: Path | str = "<record>") -> Record:
    """Validate a decoded JSON object; raise :class:`RecordError` naming the file and the first bad field."""
    try:
        return Record.model_validate(data)
    except ValidationError as err:
        raise RecordError(format_validation_error(path, err)) from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # a key came twice: name the first one that did
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _too_deep(data: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers nest deeper than ``limit`` (the root is level 1). Iterative, level by level (a hostile file
    must not exhaust the stack), and only containers are kept for the next level: scalars, most of a record, are
    looked at once (10,000 records: 2.3x faster than a stack of every value)."""
    level = [data] if isinstance(data, dict | list) else []
    for _ in range(limit):
        if not level:
            return False
        level = [v for c in level for v in (c.values() if isinstance(c, dict) else c) if isinstance(v, dict | list)]
    return bool(level)


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)  # reusable: what json.loads builds per call


def decode_record_json(raw: bytes | str, path: Path | str = "<record>") -> dict[str, Any]:
    """Decode a record file's text into a JSON object, refusing what ``json.loads`` would silently accept or
    crash on: duplicate keys (the last would win) and nesting deeper than :data:`MAX_DEPTH` (``RecursionError``).
    (``NaN`` literals decode; the schema refuses a non-finite metric naming its field.) Raises :class:`RecordError`
    with one line naming the file."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError(f"{path}: not UTF-8 text") from None

    try:
        data = _DECODER.decode(raw)  # json.loads(raw, object_pairs_hook=...) without a decoder per call
    except _DuplicateKey as err:
        raise RecordError(f"{path}: duplicate key '{err.args[0]}' (a record names each field once)") from None
    except RecursionError:
        raise RecordError(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except ValueError as err:  # e.g. an integer literal longer than Python's int-string limit
        raise RecordError(f"{path}: not valid JSON ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a JSON object, got {type(data).__name__}")
    # Nesting depth is at most the number of '{' and '[' in the text (strings may only add some): a short record
    # needs no walk. The walk decides otherwise.
    if raw.count("{") + raw.count("[") > MAX_DEPTH and _too_deep(data):
        raise RecordError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    return data


def load_record(path: Path | str) -> Record:
    """Read and validate one record file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except OSError as err:
        raise RecordError(f"{path}: cannot read ({err.strerror})") from None
    return parse_record(decode_record_json(raw, path), path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old file or the whole new one. A full disk
    (ENOSPC) is one line naming the folder and the bytes needed; the temp file is removed."""
    import errno

    from methods.errors import VitbenchError

    data = text.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise VitbenchError(
                f"{path.parent}: no space left on device to write {path.name} (needs {len(data)} bytes)"
            ) from None
        raise
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise VitbenchError(
                f"{path.parent}: no space left on device to write {path.name} (needs {len(data)} bytes); "
                "free space there or write elsewhere"
            ) from None
        raise


def write_record(record: Record, results_root: Path | str, *, force: bool = False) -> Path:
    """Write ``record`` under ``results_root`` atomically and return its path.

    Raises :class:`RecordError` if a valid record exists and ``force`` is false (callers check
    :func:`existing_record` first to skip work; this guards against races). An invalid file there is replaced.
    """
    path = Path(results_root) / record.relpath()
    if not force and existing_record(
        results_root,
        record.task,
        record.method,
        record.variant,
        record.seed,
        track=record.track,
        protocol_hash=record.protocol.hash,
    ):
        raise RecordError(f"{path}: exists (pass --force to overwrite)")
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")
    return path


def existing_record(
    results_root: Path | str,
    task: str,
    method: str,
    variant: str,
    seed: int,
    *,
    track: str | None = None,
    protocol_hash: str | None = None,
) -> Path | None:
    """The path of a finished run's record, or None when the run must (still) be done.

    A file that does not validate as a record (``{}``, a truncated or hand-edited file) is not a finished run:
    None is returned, a one-line note names the file and the problem, and the new run replaces it.

    With ``track`` (and ``protocol_hash``) the record there must be the run asked for: a smoke record never blocks a
    paper-track run (None, with a note: the paper record replaces it); a paper record is never replaced by a smoke
    run (its path is returned: the smoke run is skipped, with a note); a record of the same track under another
    protocol hash is not silently kept or replaced: :class:`RecordError` asks for ``--force``.
    """
    path = Path(results_root) / record_relpath(task, method, variant, seed)
    if not path.exists():
        return None
    try:
        rec = load_record(path)
    except RecordError as err:
        print(f"vitbench: note: {err}; running again, the new record will replace it", file=sys.stderr)
        return None
    if track is None or (rec.track == track and protocol_hash in (None, rec.protocol.hash)):
        return path
    if rec.track == "smoke":  # smoke records are cheap to remake: another track or protocol replaces them
        print(
            f"vitbench: note: {path} holds a smoke record of another run; this {track} run will replace it",
            file=sys.stderr,
        )
        return None
    if rec.track == "paper" and track == "smoke":
        print(
            f"vitbench: note: {path} holds a paper-track record; a smoke run does not replace it "
            f"(pass --force to overwrite)",
            file=sys.stderr,
        )
        return path
    raise RecordError(
        f"{path}: holds a {rec.track} record of protocol hash {rec.protocol.hash}, not this run's {protocol_hash} "
        f"(pass --force to overwrite)"
    )


def iter_record_files(results_root: Path | str) -> list[Path]:
    """All ``*.json`` files under ``<results_root>/runs``, sorted."""
    runs = Path(results_root) / "runs"
    return sorted(runs.rglob("*.json")) if runs.is_dir() else []
