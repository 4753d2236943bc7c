"""Reading checkpoint files safely and matching their keys to a model by allow-list.

Checkpoints are untrusted input. ``.safetensors`` files load natively; everything else goes through
``torch.load`` with :mod:`methods.safe_pickle` as its pickle module, which admits an explicit list of globals
and refuses the rest. Key matching is strict: after the adapter's declared prefix stripping, drops and
conversion, a missing or unexpected key outside the variant's allow-list is an error that names the keys.

What loads must also be what a trained network holds: a tensor with NaN/inf is refused (the error names the first key,
the load report counts them), so is an integer tensor that would be cast into a float parameter (or the reverse), a
position table of a grid the method does not declare (:func:`check_pos_grid`), and a file whose pickle or zip records
would make the loader allocate more than the file holds (:mod:`methods.safe_pickle`). Downloads come over https only;
each one's sha256 is stored beside it (``<file>.sha256``) and checked on every reuse, and the load report says how the
file's identity was checked (:func:`pin_status`: a pinned sha256, a published hash prefix, or "unpinned").
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import os
import re
import sys
import tarfile
import urllib.parse
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from methods import safe_pickle
from methods.errors import CheckpointError, UnsafeCheckpointError

_SHA_CACHE: dict[tuple[str, int, int, int, str], str] = {}


@dataclass
class LoadReport:
    """What happened to the checkpoint's keys. Serialised into every result record (``weights.load_report``)."""

    checkpoint_key: str | None = None
    stripped_prefixes: list[str] = field(default_factory=list)
    matched: int = 0
    dropped: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    missing_allowed: list[str] = field(default_factory=list)
    non_finite: int = 0  # loaded tensors holding NaN/inf (a load with any is refused, so a report shows 0)
    resample_pos_embed: bool = False  # the user asked to resample a position table of any grid
    integrity: str | None = None  # how the file's identity was checked (pin_status): "unpinned", "sha256 pinned", ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"key={self.checkpoint_key or '<flat>'} matched={self.matched} dropped={len(self.dropped)} "
            f"converted={len(self.converted)} missing_allowed={len(self.missing_allowed)} "
            f"stripped={self.stripped_prefixes or '-'} integrity={self.integrity or '-'}"
        )


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """sha256 of a file, cached per (path, inode, size, mtime) for the life of the process."""
    return file_digests(path, ("sha256",), chunk)["sha256"]


def file_digests(path: Path | str, algos: tuple[str, ...] = ("sha256",), chunk: int = 1 << 20) -> dict[str, str]:
    """Hex digests of ``path`` for each of ``algos`` ("sha256", "md5"), in one read; cached like :func:`sha256_file`."""
    path = Path(path)
    st = path.stat()
    base = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    todo = [a for a in algos if (*base, a) not in _SHA_CACHE]
    if todo:
        hashes = {a: hashlib.new(a) for a in todo}
        with path.open("rb") as fh:
            while block := fh.read(chunk):
                for h in hashes.values():
                    h.update(block)
        for a, h in hashes.items():
            _SHA_CACHE[(*base, a)] = h.hexdigest()
    return {a: _SHA_CACHE[(*base, a)] for a in algos}


def is_url(ref: str) -> bool:
    return urllib.parse.urlparse(ref).scheme in ("http", "https")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def pin_status(path: Path | str, sha256: str, pinned: str | None, prefix: str | None, *, enforce: bool) -> str:
    """How ``path`` (whose sha256 is ``sha256``) was checked against what its variant pins, as the load report says it.

    ``pinned``: the full sha256 the authors publish; ``prefix``: only a prefix is published, ``"sha256:cd65a155"``
    (torch.hub file names) or ``"md5:8cad7c"`` (MAE's README), checked as a prefix. Neither: ``"unpinned"``. A file
    that does not match is refused when ``enforce`` (the variant's own download), else reported as another file
    (a local checkpoint may be the user's own)."""
    if pinned:
        if sha256 == pinned:
            return "sha256 pinned, verified"
        problem = f"sha256 {sha256[:12]}… is not the pinned {pinned[:12]}…"
    elif prefix:
        algo, _, want = prefix.partition(":")
        digest = sha256 if algo == "sha256" else file_digests(path, (algo,))[algo]
        full = len(digest)
        if digest.startswith(want):
            return f"{algo} prefix {want} published ({len(want)} of {full} hex digits), verified"
        problem = f"{algo} {digest[: len(want)]}… is not the published prefix {want}"
    else:
        return "unpinned"
    if enforce:
        raise CheckpointError(f"{path}: {problem} (a corrupted or substituted download?); delete it to download again")
    return f"not the authors' release file ({problem})"


def _write_sidecar(path: Path, sha: str) -> None:
    tmp = path.with_name(f".{path.name}.sha256.{os.getpid()}")
    tmp.write_text(sha + "\n")
    os.replace(tmp, path.with_name(path.name + ".sha256"))


def _download(ref: str, path: Path, expected_sha256: str | None, prefix: str | None) -> None:
    """Download ``ref`` to ``path``: the file and its ``.sha256`` appear only once complete and, if pinned, verified."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        torch.hub.download_url_to_file(ref, str(part), progress=True)
    except Exception as err:  # network errors come in many types
        part.unlink(missing_ok=True)
        raise CheckpointError(f"{ref}: download failed ({err}); pass --weights PATH to a local copy") from None
    try:
        sha = sha256_file(part)
        try:
            pin_status(part, sha, expected_sha256, prefix, enforce=True)  # a bad download is never cached
        except CheckpointError as err:
            problem = str(err).removeprefix(f"{part}: ").split(" (a corrupted")[0]
            raise CheckpointError(f"{ref}: refusing the download: its {problem}; nothing was cached") from None
        _write_sidecar(path, sha)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def _cached_download(ref: str, expected_sha256: str | None, prefix: str | None) -> Path:
    """The torch.hub cache entry of ``ref``, downloaded if absent; a cached file must still have the sha256 stored
    beside it when it was downloaded (a file without one is downloaded again)."""
    # Different URLs may end in the same file name (iBOT: .../vits_16/checkpoint_teacher.pth and
    # .../vitb_16/checkpoint_teacher.pth): prefix a short hash of the URL so they never share a cache entry.
    name = Path(urllib.parse.urlparse(ref).path).name
    tag = hashlib.sha256(ref.encode()).hexdigest()[:8]
    path = Path(torch.hub.get_dir()) / "checkpoints" / f"{tag}-{name}"
    sidecar = path.with_name(path.name + ".sha256")
    if path.exists() and not sidecar.exists():
        print(f"vitbench: note: {path} has no recorded sha256 beside it; downloading it again", file=sys.stderr)
        path.unlink()
    if not path.exists():
        _download(ref, path, expected_sha256, prefix)
    recorded = sidecar.read_text().strip()
    got = sha256_file(path)
    if got != recorded:
        raise CheckpointError(
            f"{path}: cached download changed since it was downloaded (sha256 {got[:12]}…, recorded "
            f"{recorded[:12]}…); delete it to download again"
        )
    return path


def _hub_file(ref: str) -> Path:
    parts = ref.removeprefix("hf-hub:").split("/")
    if len(parts) < 3:
        raise CheckpointError(f"{ref}: expected hf-hub:<owner>/<repo>/<file>")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointError(f"{ref}: install huggingface_hub to download hub weights") from None
    path = Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
    # The hub cache stores each large file as blobs/<its sha256> (the LFS object id the hub published): that name
    # is the sha256 recorded beside it, checked on every reuse.
    blob = path.resolve()
    if _HEX64.fullmatch(blob.name) and sha256_file(blob) != blob.name:
        raise CheckpointError(
            f"{ref}: cached hub file {blob} does not match its sha256 (its name); delete it to download again"
        )
    return path


def resolve_weights(ref: str, expected_sha256: str | None = None, prefix: str | None = None) -> Path:
    """Turn a local path, an https URL or an ``hf-hub:owner/repo/file`` id into a local file.

    URLs go through torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), each with its sha256 stored beside it and
    verified on reuse; hub ids through huggingface_hub's cache. ``expected_sha256`` / ``prefix`` (see
    :func:`pin_status`) are enforced on a download. Plain ``http://`` and other schemes are refused.
    """
    if ref.startswith("hf-hub:"):
        return _hub_file(ref)
    if _SCHEME.match(ref):
        scheme = ref.split("://", 1)[0].lower()
        if scheme == "http":
            raise CheckpointError(
                f"{ref}: refusing plain http:// weights (anyone on the way can replace them); use https:// or a "
                "local file"
            )
        if scheme != "https":
            raise CheckpointError(f"{ref}: unsupported URL scheme '{scheme}://'; use https://, hf-hub: or a path")
        return _cached_download(ref, expected_sha256, prefix)
    path = Path(os.path.expanduser(ref))
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (.pth/.pt/.tar/.safetensors)")
    return path


def _check_archive(path: Path) -> None:
    """Refuse what would make torch allocate more than the file holds before any pickle runs: a zip whose records
    expand beyond the file (compressed records: torch.save never writes them), and torch < 0.4's tar format (its
    storage headers are read and allocated by torch itself, outside the pickle)."""
    size = path.stat().st_size
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as err:
            raise CheckpointError(f"{path}: not a readable checkpoint (zip: {err})") from None
        total = sum(i.file_size for i in infos)
        if total > size:
            big = max(infos, key=lambda i: i.file_size)
            raise UnsafeCheckpointError(
                f"{path}: its zip records expand to {total} bytes, more than the file's {size} (compressed records, "
                f"e.g. {big.filename}: {big.file_size} bytes); refusing it (a zip bomb?)"
            )
    elif tarfile.is_tarfile(path):
        raise CheckpointError(
            f"{path}: a tar checkpoint (torch < 0.4's format) is not supported; re-save it with torch.save on a "
            "current torch, or convert it to .safetensors"
        )


def read_checkpoint(path: Path | str) -> Any:
    """Load a checkpoint file without running code from it. Returns whatever the file holds (usually a dict)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    from methods.torchscript import is_torchscript_archive, read_torchscript_tensors

    try:
        _check_archive(path)
        with safe_pickle.file_budget(path):  # no allocation beyond what the file holds, summed over the whole load
            if is_torchscript_archive(path):  # torch.load would hand it to torch.jit.load, which runs its code
                return read_torchscript_tensors(path)
            return torch.load(path, map_location="cpu", pickle_module=safe_pickle, weights_only=False)
    except UnsafeCheckpointError as err:
        if str(err).startswith(f"{path}: "):
            raise
        raise UnsafeCheckpointError(f"{path}: {err}") from None
    except CheckpointError:
        raise
    except Exception as err:  # corrupt zip, truncated file, not a pickle at all
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def select_state_dict(ckpt: Any, keys: Iterable[str], path: Path | str = "<checkpoint>") -> tuple[dict, str | None]:
    """Pick the state dict out of a checkpoint: the first of ``keys`` present, else the file itself if flat."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(ckpt).__name__}")
    for key in keys:
        if key in ckpt and isinstance(ckpt[key], Mapping):
            sd = ckpt[key]
            # Non-tensor entries inside a state dict (e.g. a stray int) are not weights: drop them here.
            return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}, key
    if _is_state_dict(ckpt):
        return dict(ckpt), None
    found = ", ".join(sorted(map(str, ckpt))[:10])
    raise CheckpointError(
        f"{path}: no state dict found: looked for {list(keys) or 'a flat dict of tensors'}; top-level keys: {found}"
    )


def strip_prefixes(sd: dict[str, torch.Tensor], prefixes: Iterable[str]) -> tuple[dict, list[str]]:
    """Remove each prefix (in order) from every key that carries it; return the prefixes that were present."""
    used = []
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in sd):
            used.append(prefix)
            sd = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in sd.items()}
    return sd, used


def _match(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _names(keys: list[str], limit: int = 8) -> str:
    more = f" … (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def resample_pos_embed(sd: dict[str, torch.Tensor], model: torch.nn.Module, num_prefix_tokens: int) -> list[str]:
    """Resample a learned ``pos_embed`` whose grid differs from the model's (e.g. DINO-MM: 28x28 -> 14x14)."""
    if "pos_embed" not in sd or not hasattr(model, "pos_embed") or model.pos_embed is None:
        return []
    src, dst = sd["pos_embed"], cast(torch.Tensor, model.pos_embed)
    if src.shape == dst.shape or src.ndim != 3 or src.shape[-1] != dst.shape[-1]:
        return []
    from timm.layers import resample_abs_pos_embed

    n_src, n_dst = src.shape[1] - num_prefix_tokens, dst.shape[1] - num_prefix_tokens
    side, src_side = int(round(n_dst**0.5)), int(round(max(n_src, 0) ** 0.5))
    if side * side != n_dst or src_side * src_side != n_src:  # not two square grids: leave it to the checks
        return []
    sd["pos_embed"] = resample_abs_pos_embed(src, (side, side), num_prefix_tokens=num_prefix_tokens)
    return [f"pos_embed {list(src.shape)} -> {list(dst.shape)} (bicubic resample)"]


def _grid_side(n_tokens: int, max_prefix: int) -> tuple[int, int] | None:
    """(side, prefix tokens) of a square position table of ``n_tokens`` rows, trying 0..``max_prefix`` prefix slots."""
    for prefix in range(max_prefix + 1):
        side = math.isqrt(max(n_tokens - prefix, 0))
        if side > 0 and side * side == n_tokens - prefix:
            return side, prefix
    return None


def check_pos_grid(
    sd: dict[str, torch.Tensor],
    model: torch.nn.Module,
    declared: Iterable[int],
    *,
    requested: bool,
    path: Path | str,
    what: str,
) -> list[str]:
    """Refuse a ``pos_embed`` of another grid than ``model``'s unless the method declares that grid (a side in
    ``declared``: the resolutions its variants' files are released at) or the user ``requested`` resampling.

    Run before the adapter's conversion, on the file's own table: every resampler (the generic one, DINO-MM's, SP-ViT's)
    comes after it. Returns the load-report line of an allowed resample; tables that are not square grids, or of
    another width, are left to the shape checks (which refuse them)."""
    src, dst = sd.get("pos_embed"), getattr(model, "pos_embed", None)
    if not isinstance(src, torch.Tensor) or not isinstance(dst, torch.Tensor) or src.ndim != 3 or dst.ndim != 3:
        return []
    if src.shape == dst.shape or src.shape[-1] != dst.shape[-1]:
        return []
    npt = max(1, int(getattr(model, "num_prefix_tokens", 1) or 0))
    have, want = _grid_side(src.shape[1], npt), _grid_side(dst.shape[1], npt)
    if have is None or want is None or have[0] == want[0]:
        return []
    grids = sorted(set(declared))
    s, d = have[0], want[0]
    if s in grids:
        return [f"pos_embed grid {s}x{s} -> {d}x{d}: a grid the method's files are released at"]
    if requested:
        return [f"pos_embed grid {s}x{s} -> {d}x{d}: resampled because --resample-pos-embed was given"]
    listed = ", ".join(f"{g}x{g}" for g in grids) or "none besides its own"
    raise CheckpointError(
        f"{path}: pos_embed {list(src.shape)} is a {s}x{s} grid, but {what} is {d}x{d} and the method declares "
        f"{listed}: weights of another model? pass --resample-pos-embed to resample it anyway"
    )


def _kind(t: torch.Tensor) -> str:
    return "float" if t.is_floating_point() or t.is_complex() else "bool" if t.dtype == torch.bool else "integer"


def _check_values(sd: dict[str, torch.Tensor], model_sd: dict[str, Any], path: Path | str, report: LoadReport) -> None:
    """What ``load_state_dict`` would accept silently: an integer tensor cast into a float parameter (or back), a
    tensor without data (meta) or not dense, and NaN/inf. Refused, naming the first key; ``report`` counts NaN/inf."""
    for k, v in sd.items():
        target = model_sd[k]
        # A meta tensor holds no values: refused from a file, accepted into a model that is itself built on the meta
        # device (shape-only builds, e.g. an optimizer's parameter groups planned without allocating weights).
        if (v.is_meta and not getattr(target, "is_meta", False)) or v.layout != torch.strided:
            raise CheckpointError(
                f"{path}: {k} is a {v.layout} {'meta ' if v.is_meta else ''}tensor; weights are dense"
            )
        if _kind(v) != _kind(target):
            raise CheckpointError(
                f"{path}: {k} is {str(v.dtype).removeprefix('torch.')} in the file but "
                f"{str(target.dtype).removeprefix('torch.')} in the model: refusing to cast {_kind(v)} weights to "
                f"{_kind(target)} (a checkpoint of something else?)"
            )
    bad = [k for k, v in sd.items() if _kind(v) == "float" and not v.is_meta and not bool(torch.isfinite(v).all())]
    report.non_finite += len(bad)
    if bad:
        t = sd[bad[0]]
        nan = int(torch.isnan(t).sum())
        raise CheckpointError(
            f"{path}: {len(bad)} of {len(sd)} tensors hold NaN or inf (first: {bad[0]}, {nan} NaN and "
            f"{int(torch.isinf(t).sum())} inf of {t.numel()} values); refusing non-finite weights (a diverged or "
            "corrupted checkpoint?)"
        )


def load_strict(
    model: torch.nn.Module,
    sd: dict[str, torch.Tensor],
    *,
    drop: Iterable[str] = (),
    allow_missing: Iterable[str] = (),
    path: Path | str = "<checkpoint>",
    what: str = "model",
    report: LoadReport | None = None,
) -> LoadReport:
    """Load ``sd`` into ``model`` after checking every key and shape against the allow-lists.

    ``drop``: fnmatch patterns of file keys that are deliberately not loaded (heads, predictors, ...).
    ``allow_missing``: fnmatch patterns of model keys the file may lack (they keep their initialisation).
    Raises :class:`CheckpointError` naming the offending keys otherwise.
    """
    report = report or LoadReport()
    model_sd = model.state_dict()
    dropped = sorted(k for k in sd if k not in model_sd and _match(k, drop))
    report.dropped.extend(dropped)
    sd = {k: v for k, v in sd.items() if k not in dropped}
    unexpected = sorted(k for k in sd if k not in model_sd)
    missing = sorted(k for k in model_sd if k not in sd)
    missing_bad = [k for k in missing if not _match(k, allow_missing)]
    if unexpected and len(unexpected) >= 0.5 * len(sd):
        raise CheckpointError(
            f"{path}: checkpoint keys do not look like {what} at all ({len(unexpected)} of {len(sd)} unexpected, "
            f"e.g. {_names(unexpected, 4)}); is this the right method/variant?"
        )
    if unexpected:
        raise CheckpointError(f"{path}: unexpected keys for {what}: {_names(unexpected)}")
    if missing_bad:
        raise CheckpointError(f"{path}: keys missing for {what}: {_names(missing_bad)}")
    bad_shapes = [
        f"{k} {list(v.shape)} in file vs {list(model_sd[k].shape)} in model"
        for k, v in sd.items()
        if v.shape != model_sd[k].shape
    ]
    if bad_shapes:
        raise CheckpointError(
            f"{path}: checkpoint does not fit {what} (wrong architecture or variant?): {_names(bad_shapes, 3)}"
        )
    _check_values(sd, model_sd, path, report)
    model.load_state_dict(sd, strict=False)
    report.matched += len(sd)
    report.missing_allowed.extend(missing)
    return report
