"""Pixel-space images for backdoor tasks: square-resized uint8 images, the seeded trigger, pasting, normalisation.

Attacks and the blocking defense act on pixels (a trigger is pasted, a poison is perturbed, a box is blacked out in
un-normalised RGB), so images live here as ``uint8 [N, 3, S, S]`` (or float ``[0, 1]``) and are normalised with the
encoder's mean/std only on the way into it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from benchmarks.features import require_finite
from benchmarks.probe.data import LabelledSplit, load_rgb
from methods import Encoder
from methods.errors import DataError

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def load_square(path: Path, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """``uint8 [3, size, size]``: the image resized to a square without cropping (torchvision's
    ``Resize((size, size))`` on a PIL image)."""
    img = load_rgb(path).resize((size, size), _RESAMPLE[interpolation])
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def load_many(paths: Sequence[Path], size: int, interpolation: str) -> torch.Tensor:
    """``uint8 [N, 3, size, size]``."""
    if not paths:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return torch.stack([load_square(p, size, interpolation) for p in paths])


class Normalizer:
    """``[B, 3, H, W]`` pixels in [0, 1] <-> the encoder's normalised input (``(x - mean) / std``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: str | torch.device = "cpu") -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)[None, :, None, None]
        self.std = torch.tensor(std, dtype=torch.float32, device=device)[None, :, None, None]

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class SquareImages(Dataset):
    """``(image, label)`` of ``split[indices]``: square-resized, as float ``[3, S, S]`` normalised with
    ``mean``/``std`` (``normalizer`` set: what the feature cache stores) or as ``uint8`` pixels (None), with
    ``trigger`` pasted at ``positions[i]`` when given."""

    def __init__(
        self,
        split: LabelledSplit,
        size: int,
        interpolation: str,
        normalizer: Normalizer | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        trigger: torch.Tensor | None = None,
        positions: np.ndarray | None = None,
    ) -> None:
        self.split = split
        self.size = size
        self.interpolation = interpolation
        self.normalizer = normalizer
        self.indices = list(range(len(split))) if indices is None else list(indices)
        self.trigger = trigger
        self.positions = positions
        if trigger is not None and (positions is None or len(positions) != len(self.indices)):
            raise ValueError("a trigger needs one position per image")

    def __len__(self) -> int:
        return len(self.indices)

    def content_digest(self) -> str:
        if len(self.indices) != len(self.split):
            raise ValueError("only the whole split has a cached content digest")
        return self.split.content_digest()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = self.indices[i]
        x = load_square(self.split.paths[j], self.size, self.interpolation)
        if self.trigger is not None and self.positions is not None:
            x = paste(x[None], self.trigger, self.positions[i : i + 1])[0]
        label = int(self.split.targets[j])
        if self.normalizer is None:
            return x, label
        return self.normalizer(x[None].float() / 255)[0], label


def transform_desc(size: int, interpolation: str, mean: Sequence[float], std: Sequence[float]) -> str:
    """How :class:`SquareImages` transforms, for feature-cache keys."""
    return f"square{size}-{interpolation}-mean{tuple(mean)}-std{tuple(std)}"


# ------------------------------------------------------------------------------------------------ the trigger
def make_trigger(size: int, cells: int, seed: int) -> torch.Tensor:
    """``uint8 [3, size, size]``: ``cells`` x ``cells`` random binary RGB cells (each channel 0 or 255), drawn
    from ``seed`` and resized bilinearly, as HTBA's released ``trigger_1x.png`` look."""
    rng = np.random.default_rng(seed)
    grid = (rng.integers(0, 2, size=(cells, cells, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(grid, mode="RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def save_trigger(trigger: torch.Tensor, path: Path) -> str:
    """Write the trigger as a PNG (lossless) and return the sha256 of its pixels ``[3, S, S]`` uint8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(trigger.permute(1, 2, 0).numpy(), mode="RGB").save(path)
    return hashlib.sha256(trigger.contiguous().numpy().tobytes()).hexdigest()


def read_trigger(path: Path) -> torch.Tensor:
    """``uint8 [3, S, S]`` from a trigger PNG."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except OSError as err:
        raise DataError(f"{path}: unreadable trigger ({err})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def random_positions(n: int, size: int, patch: int, rng: np.random.Generator) -> np.ndarray:
    """``int64 [n, 2]`` top-left ``(y, x)`` corners, uniform in ``[0, size - patch - 1]`` as [BT]'s
    ``random.randint(0, 224 - patch_size - 1)``."""
    return rng.integers(0, size - patch, size=(n, 2), endpoint=False).astype(np.int64)


def fixed_positions(n: int, size: int, patch: int, margin: int) -> np.ndarray:
    """``int64 [n, 2]``: every corner at ``size - patch - margin`` (the bottom-right placement)."""
    return np.full((n, 2), size - patch - margin, dtype=np.int64)


def paste(images: torch.Tensor, trigger: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    """A copy of ``images [N, 3, S, S]`` with ``trigger [3, p, p]`` (same dtype) pasted with its top-left corner
    at ``positions[i] = (y, x)``."""
    out = images.clone()
    p = trigger.shape[-1]
    trig = trigger.to(out.device, out.dtype)
    for i, (y, x) in enumerate(positions.tolist()):
        out[i, :, y : y + p, x : x + p] = trig
    return out


# ------------------------------------------------------------------------------------------------ into the encoder
def batches(images: torch.Tensor | Dataset, batch_size: int, workers: int = 0) -> Iterable[torch.Tensor]:
    """uint8 ``[b, 3, S, S]`` batches of an in-memory tensor or streamed from a dataset of ``(image, label)``."""
    if isinstance(images, torch.Tensor):
        for s in range(0, len(images), batch_size):
            yield images[s : s + batch_size]
        return
    from torch.utils.data import DataLoader

    for x, _ in DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=workers):
        yield x


def embed(
    encoder: Encoder,
    images: torch.Tensor | Dataset,
    norm: Normalizer,
    device: str,
    batch_size: int = 64,
    workers: int = 0,
) -> torch.Tensor:
    """Global features ``float32 [N, D]`` (on the CPU) of uint8 pixel images, computed as the feature cache
    computes them (inference mode; fp16 autocast on CUDA), so the victim's head sees one kind of feature."""
    out = []
    with torch.inference_mode():
        for i, x in enumerate(batches(images, batch_size, workers)):
            with torch.autocast("cuda", dtype=torch.float16, enabled=device.startswith("cuda")):
                f = encoder.forward_global(norm(x.to(device).float() / 255)).float()
            start = i * batch_size
            out.append(require_finite(f, f"the features of images {start}-{start + len(f) - 1} (batch {i})").cpu())
    return torch.cat(out) if out else torch.zeros(0, encoder.spec.embed_dim)
