"""Reading checkpoint files safely and matching their keys to a model by allow-list.

Checkpoints are untrusted input. ``.safetensors`` files load natively; everything else goes through
``torch.load`` with :mod:`methods.safe_pickle` as its pickle module, which admits an explicit list of globals
and refuses the rest. Key matching is strict: after the adapter's declared prefix stripping, drops and
conversion, a missing or unexpected key outside the variant's allow-list is an error that names the keys.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from methods import safe_pickle
from methods.errors import CheckpointError, UnsafeCheckpointError

_SHA_CACHE: dict[tuple[str, int, float], str] = {}


@dataclass
class LoadReport:
    """What happened to the checkpoint's keys. Serialised into every result record (``weights.load_report``)."""

    checkpoint_key: str | None = None
    stripped_prefixes: list[str] = field(default_factory=list)
    matched: int = 0
    dropped: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    missing_allowed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"key={self.checkpoint_key or '<flat>'} matched={self.matched} dropped={len(self.dropped)} "
            f"converted={len(self.converted)} missing_allowed={len(self.missing_allowed)} "
            f"stripped={self.stripped_prefixes or '-'}"
        )


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """sha256 of a file, cached per (path, size, mtime) for the life of the process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def is_url(ref: str) -> bool:
    return urllib.parse.urlparse(ref).scheme in ("http", "https")


def resolve_weights(ref: str, expected_sha256: str | None = None) -> Path:
    """Turn a local path, an http(s) URL or an ``hf-hub:owner/repo/file`` id into a local file.

    URLs go through torch.hub's cache (``$TORCH_HOME/hub/checkpoints``) and hub ids through huggingface_hub's
    cache; when ``expected_sha256`` is known the file is verified after download.
    """
    if ref.startswith("hf-hub:"):
        parts = ref.removeprefix("hf-hub:").split("/")
        if len(parts) < 3:
            raise CheckpointError(f"{ref}: expected hf-hub:<owner>/<repo>/<file>")
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise CheckpointError(f"{ref}: install huggingface_hub to download hub weights") from None
        path = Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:])))
    elif is_url(ref):
        # Different URLs may end in the same file name (iBOT: .../vits_16/checkpoint_teacher.pth and
        # .../vitb_16/checkpoint_teacher.pth): prefix a short hash of the URL so they never share a cache entry.
        name = Path(urllib.parse.urlparse(ref).path).name
        tag = hashlib.sha256(ref.encode()).hexdigest()[:8]
        path = Path(torch.hub.get_dir()) / "checkpoints" / f"{tag}-{name}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(ref, str(path), progress=True)
            except Exception as err:  # network errors come in many types
                raise CheckpointError(f"{ref}: download failed ({err}); pass --weights PATH to a local copy") from None
    else:
        path = Path(os.path.expanduser(ref))
        if not path.exists():
            raise CheckpointError(f"{path}: no such checkpoint file")
        if path.is_dir():
            raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (.pth/.pt/.tar/.safetensors)")
    if expected_sha256 is not None:
        got = sha256_file(path)
        if got != expected_sha256:
            raise CheckpointError(f"{path}: sha256 {got[:12]}… does not match the pinned {expected_sha256[:12]}…")
    return path


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

    if is_torchscript_archive(path):  # torch.load would pass it to torch.jit.load, which runs the archive's code
        return read_torchscript_tensors(path)
    try:
        return torch.load(path, map_location="cpu", pickle_module=safe_pickle, weights_only=False)
    except UnsafeCheckpointError as err:
        raise UnsafeCheckpointError(f"{path}: {err}") from None
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
    src, dst = sd["pos_embed"], model.pos_embed
    if src.shape == dst.shape or src.ndim != 3 or src.shape[-1] != dst.shape[-1]:
        return []
    from timm.layers import resample_abs_pos_embed

    n_src, n_dst = src.shape[1] - num_prefix_tokens, dst.shape[1] - num_prefix_tokens
    side, src_side = int(round(n_dst**0.5)), int(round(max(n_src, 0) ** 0.5))
    if side * side != n_dst or src_side * src_side != n_src:  # not two square grids: leave it to the checks
        return []
    sd["pos_embed"] = resample_abs_pos_embed(src, (side, side), num_prefix_tokens=num_prefix_tokens)
    return [f"pos_embed {list(src.shape)} -> {list(dst.shape)} (bicubic resample)"]


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
    model.load_state_dict(sd, strict=False)
    report.matched += len(sd)
    report.missing_allowed.extend(missing)
    return report
