"""``vitbench validate FILE...``: the checks a submitted result record must pass before it is merged.

On top of the schema (:func:`benchmarks.records.load_record`: names, finite in-range metrics, sha256 for paper-track
weights) this checks what only the task catalogue knows: the task exists, the protocol is exactly the registered one for
the record's track (name, version, and a hash that both matches the record's own config and the registered
config), every metric is one the task declares, and the provenance says which code produced the numbers.
Each problem comes back as one line naming the file and the field. It reads the torch-free catalogue only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.catalog import TaskSpec, get_task
from benchmarks.protocol import protocol_hash
from benchmarks.records import Record, has_control_chars, load_record
from methods.errors import UnknownNameError, VitbenchError

TaskLookup = Callable[[str], TaskSpec | None]


def _surely_clean(rec: Record) -> bool:
    """True when no string (key or value) of ``rec`` can hold a control character, from one pydantic-core
    ``model_dump_json`` (the same fields and strings as ``model_dump(mode="json")``, serialised in Rust): it writes
    each of \\x00-\\x1f as an escape (``\\u00XX``, ``\\b``, ``\\f``, ``\\r``, ``\\n``, ``\\t``) and DEL as is.
    False only means the path-naming walk (:func:`_control_chars`) runs; it is the one that decides (10,000 records:
    the walk alone took ~40 % of ``vitbench leaderboard``; ``model_dump`` + ``json.dumps`` ~15 %)."""
    try:
        text = rec.model_dump_json()
    except (TypeError, ValueError):  # PydanticSerializationError is a ValueError
        return False
    return not any(m in text for m in ("\\u00", "\\b", "\\f", "\\r", "\x7f"))


def _raw_clean(raw: bytes) -> bool:
    """True when no string decoded from the JSON text ``raw`` can hold a control character (\\x00-\\x08,
    \\x0b-\\x1f, DEL): JSON strings may not hold raw \\x00-\\x1f (``json.loads`` refuses them), so such a character
    can only come from an escape (``\\u00XX``, ``\\b``, ``\\f``, ``\\r``) or be a raw DEL byte (in UTF-8, byte 0x7f
    is only ever DEL). A record's other strings are our constants (defaults, enum values, ISO dates): the schema's
    validators return their input. False (e.g. any ``\\u00e9``, or an escaped backslash before ``b``) only means the
    dump-based checks run."""
    return not any(m in raw for m in (b"\\u00", b"\\b", b"\\f", b"\\r", b"\x7f"))


def _control_chars(value: Any, where: str) -> str | None:
    """The first string (key or value) under ``value`` holding a control character, as a field path."""
    if isinstance(value, str):
        if has_control_chars(value):
            return where
    elif isinstance(value, dict):
        for k, v in value.items():
            bad = _control_chars(k, f"{where}.<key>") or _control_chars(v, f"{where}.{k}")
            if bad:
                return bad
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            bad = _control_chars(v, f"{where}.{i}")
            if bad:
                return bad
    return None


def _check_protocol_hash(rec: Record) -> str | None:
    p = rec.protocol
    if protocol_hash(p.name, p.version, p.config) != p.hash:
        return f"protocol.hash: {p.hash} does not match the record's own protocol.config (edited after the run?)"
    return None


def check_dataset(rec: Record, spec: TaskSpec) -> str | None:
    """A paper-track record must be computed on the data its task declares (``TaskSpec.data``): every pinned part
    of that identity (split sizes, number of classes, class-list sha256, annotation sha256s) must be in the record's
    ``dataset`` and equal. Smoke records and tasks that declare no data are not checked."""
    want = spec.data
    if rec.track != "paper" or want is None:
        return None
    have = rec.dataset
    where = f"task {rec.task} is defined on {want.name}"
    for split, n in want.splits.items():
        got = (have.splits or {}).get(split)
        if got != n:
            shown = "missing" if got is None else f"{got}"
            return f"dataset.splits.{split}: {shown}, but {where} with {n} samples in {split} (other data)"
    if want.n_classes is not None and have.n_classes != want.n_classes:
        shown = "missing" if have.n_classes is None else f"{have.n_classes}"
        return f"dataset.n_classes: {shown}, but {where} with {want.n_classes} classes (other data)"
    if want.classes_sha256 is not None and have.classes_sha256 != want.classes_sha256:
        return f"dataset.classes_sha256: {have.classes_sha256}, but {where} with {want.classes_sha256} (other data)"
    for name, sha in want.annotations.items():
        got_sha = have.annotations.get(name)
        if got_sha != sha:
            return f"dataset.annotations.{name}: {got_sha or 'missing'}, but {where} with sha256 {sha} (other data)"
    return None


def _check_protocol(rec: Record, spec: TaskSpec) -> str | None:
    p = rec.protocol
    if spec.protocol is None:
        return f"task: {rec.task} has reported numbers only; no harness of this version runs it"
    expected = spec.protocol_for(smoke=rec.track == "smoke")
    if p.name != expected.NAME:
        return f"protocol.name: '{p.name}', but task {rec.task} runs protocol '{expected.NAME}'"
    if p.version != expected.VERSION:
        return (
            f"protocol.version: {p.version}, but {expected.NAME} is at version {expected.VERSION} "
            f"(re-run with the current protocol)"
        )
    if p.hash != expected.hash():
        want = expected.config()
        diff = sorted(k for k in set(want) | set(p.config) if want.get(k, object()) != p.config.get(k, object()))
        return (
            f"protocol.hash: {p.hash} is not the registered {rec.track} protocol's {expected.hash()} "
            f"(config differs in: {', '.join(diff)})"
        )
    return None


def _check_metrics(rec: Record, spec: TaskSpec) -> str | None:
    for name, value in rec.metrics.items():
        meta = spec.metric_meta(name)
        if meta is None:
            return f"metrics.{name}: not a metric of task {rec.task} (it declares: {', '.join(spec.metrics)})"
        if (meta.lo is not None and value < meta.lo) or (meta.hi is not None and value > meta.hi):
            return f"metrics.{name}: value {value} outside the task's range [{meta.lo}, {meta.hi}]"
        if rec.metric_meta[name].higher_is_better != meta.higher_is_better:
            return f"metric_meta.{name}.higher_is_better: disagrees with task {rec.task}"
    return None


def _check_provenance(rec: Record) -> str | None:
    prov = rec.provenance
    for field_name in ("vitbench_version", "command", "device"):
        if not getattr(prov, field_name).strip():
            return f"provenance.{field_name}: empty"
    if not prov.versions:
        return "provenance.versions: empty (which torch/timm produced this?)"
    if rec.track == "paper" and not prov.git_sha:
        return "provenance.git_sha: required for paper-track results (which vitbench code produced them?)"
    return None


def _check_path(path: Path, rec: Record) -> str | None:
    """Inside a ``runs/`` tree the file must sit where the writer would put it, or it could shadow another run."""
    parts = path.parts
    if "runs" not in parts:
        return None
    tail = parts[len(parts) - 1 - parts[::-1].index("runs") :]
    if tail == ("runs", rec.task, rec.method, f"{rec.variant}__seed{rec.seed}.json"):
        return None  # rec.relpath()'s parts (names hold no '/'): equal parts are equal paths, and no Path is built
    if Path(*tail) == rec.relpath():
        return None
    return f"path: this record belongs at {rec.relpath()}, not {Path(*tail)}"


def validate_record(
    rec: Record,
    path: Path | str,
    task_lookup: TaskLookup = get_task,
    *,
    current: bool = True,
    raw: bytes | None = None,
) -> str | None:
    """The checks beyond the schema, on a parsed record: None if it passes, else ``"<path>: <field>: <problem>"``.

    This is the one gate: ``vitbench validate`` and the leaderboard both call it. Integrity checks apply always:
    control characters, a protocol hash that matches the record's own config, metrics the task declares and in its
    range, provenance (``git_sha`` on the paper track), the file's path, and, for the paper track, the task's
    declared dataset identity. ``current=True`` (a submission) also requires a catalogued task with a harness and
    exactly the registered protocol of the record's track; the leaderboard passes ``current=False`` because it
    shows records of another protocol version, or of a task it does not know, apart instead of refusing them
    (then a task ``task_lookup`` does not know is checked against the record's own metric_meta only).

    ``raw``: the bytes ``rec`` was decoded from, if the caller has them: when they hold no escape that decodes to a
    control character and no DEL (:func:`_raw_clean`), no string of ``rec`` can hold one and nothing is dumped."""
    path = Path(path)
    clean = (raw is not None and _raw_clean(raw)) or _surely_clean(rec)
    bad = None if clean else _control_chars(rec.model_dump(mode="json"), "record")
    if bad:
        return f"{path}: {bad.removeprefix('record.')}: contains control characters"
    spec: TaskSpec | None
    try:
        spec = task_lookup(rec.task)
    except UnknownNameError as err:
        if current:
            return f"{path}: task: {err}"
        spec = None
    if spec is None and current:
        return f"{path}: task: unknown task '{rec.task}'"
    checks = [_check_protocol_hash(rec)]
    if spec is not None:
        if current:
            checks.append(_check_protocol(rec, spec))
        checks += [_check_metrics(rec, spec), check_dataset(rec, spec)]
    checks += [_check_provenance(rec), _check_path(path, rec)]
    for check in checks:
        if check is not None:
            return f"{path}: {check}"
    return None


def validate_file(path: Path | str, task_lookup: TaskLookup = get_task) -> str | None:
    """None if ``path`` is a valid submission, else ``"<path>: <field>: <problem>"``."""
    path = Path(path)
    try:
        rec = load_record(path)
    except VitbenchError as err:
        return str(err)
    return validate_record(rec, path, task_lookup)


def validate_files(paths: Iterable[Path | str], task_lookup: TaskLookup = get_task) -> list[tuple[Path, str | None]]:
    """Validate each file; ``(path, None)`` when it passes, ``(path, one-line message)`` when it does not."""
    return [(Path(p), validate_file(p, task_lookup)) for p in paths]
