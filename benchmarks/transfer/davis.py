"""The ``davis2017-vos`` harness: DINO's label propagation of the first-frame masks on frozen patch features.

Per sequence: frames resized by DINO's rule, ``forward_last`` patch features extracted once through the feature
cache (L2-normalised, fp16, keyed by the weights, the sequence's files and the frame transform), the first mask
propagated frame by frame from the first frame and the last ``n_last_frames`` soft predictions, each prediction
written as a palette PNG in the DAVIS results layout under the run's work folder, then J and F computed from the
PNGs read back, exactly as the official tool would read them. See :class:`DavisProtocol` for every step's source.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from benchmarks.data.davis import DavisSequence, DavisSplit, davis_palette, read_indexed, scan_davis, write_indexed
from benchmarks.features import FeatureKey, default_cache_dir, extract
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.data import RGB, LabelledSplit, load_rgb
from benchmarks.progress import progress_bar
from benchmarks.records import DatasetInfo
from benchmarks.transfer.davis_metrics import ObjectScore, score_sequence, summarise
from benchmarks.transfer.protocols import DINO_DAVIS_MEAN, DINO_DAVIS_STD, DavisProtocol
from methods import Encoder
from methods.errors import DataError

__all__ = ["DavisHarness", "DavisProtocol", "affinity", "propagate", "propagate_from_affinity"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CHUNK = 2048  # target patches per affinity block: bounds memory at ViT-B/8's 6240 patches x 8 context frames


# ------------------------------------------------------------------------------------------------ frames
def frame_size(h: int, w: int, short_side: int, multiple: int) -> tuple[int, int]:
    """``(th, tw)`` by DINO's ``read_frame``: the short side becomes ``short_side``, the long side
    ``short_side * long / short`` floored to a multiple of ``multiple`` (480 x 854 -> 480 x 832). A square frame
    takes the landscape branch, as ``read_frame`` does (its ``read_seg`` takes the other one; here the mask always
    follows the frame)."""
    if h > w:
        return int(((short_side * h) / w) // multiple * multiple), short_side
    return short_side, int(((short_side * w) / h) // multiple * multiple)


def frame_stats(encoder: Encoder, protocol: DavisProtocol) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for the frames: DINO's constants for ImageNet-normalised encoders under ``stats="dino"``."""
    dc = encoder.data_config
    imagenet = np.allclose(dc.mean, _IMAGENET_MEAN) and np.allclose(dc.std, _IMAGENET_STD)
    if protocol.stats == "dino" and imagenet:
        return DINO_DAVIS_MEAN, DINO_DAVIS_STD
    return tuple(dc.mean), tuple(dc.std)


class FrameDataset(Dataset):
    """``(frame [3, th // m * m, tw // m * m], t)``: DINO's ``read_frame`` (bilinear on the 8-bit frame, /255,
    mean/std), cropped at the bottom/right to a multiple ``m`` of the patch size: the pixels a stride-``m`` patch
    convolution leaves out anyway (DINO's ViT floors the grid; timm's refuses sizes it does not divide)."""

    def __init__(
        self,
        split: LabelledSplit,
        size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        multiple: int = 1,
    ) -> None:
        self.split = split  # the feature cache names a failing batch by split.paths
        self.size = size
        self.multiple = multiple
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.split)

    def content_digest(self) -> str:
        return self.split.content_digest()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rgb = torch.from_numpy(np.asarray(load_rgb(self.split.paths[i]), dtype=np.uint8).copy())
        x = rgb.permute(2, 0, 1)[None].float()
        if tuple(x.shape[2:]) != self.size:  # OpenCV's INTER_LINEAR: no antialias, result rounded to 8 bits
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=False)
            x = x.round().clamp(0, 255)
        m = self.multiple
        x = x[0, :, : x.shape[2] // m * m, : x.shape[3] // m * m]
        return (x / 255.0 - self.mean) / self.std, i


def transform_desc(size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], multiple: int) -> str:
    return f"davis-frames-{size[0]}x{size[1]}-bilinear8bit-crop{multiple}-mean{tuple(mean)}-std{tuple(std)}"


def sequence_features(
    encoder: Encoder,
    seq: DavisSequence,
    root: Path,
    size: tuple[int, int],
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    ctx: RunContext,
) -> np.ndarray:
    """``[T, d, h, w]`` fp16: the L2-normalised ``forward_last`` patch maps of every frame, through the cache."""
    split = LabelledSplit(root, f"davis-{seq.name}", (), seq.frames, np.arange(len(seq), dtype=np.int64))
    multiple = encoder.spec.size_divisor
    dataset = FrameDataset(split, size, *stats, multiple=multiple)

    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"patches": F.normalize(encoder.forward_last(x)[1].float(), dim=1)}

    key = FeatureKey(
        encoder.identity.weights_id,
        split.fingerprint(),
        split.name,
        transform_desc(size, *stats, multiple),
        "last-patches-l2",
    )
    arrays = extract(
        fn,
        dataset,
        key,
        cache_dir=ctx.cache_dir or default_cache_dir(),
        device=ctx.device,
        batch_size=8,
        desc=f"features {seq.name}",
        progress=ctx.progress,
    )
    return arrays["patches"]


def first_mask(labels: np.ndarray, grid: tuple[int, int], n_objects: int) -> torch.Tensor:
    """``[1 + n_objects, h, w]`` one-hot of the first annotation resized (nearest, PIL) to the feature grid
    (DINO's ``read_seg`` + ``to_one_hot``); void counts as background."""
    h, w = grid
    small = np.array(Image.fromarray(labels, mode="L").resize((w, h), Image.Resampling.NEAREST))
    small = np.where(small == 255, 0, small).astype(np.int64)
    return F.one_hot(torch.from_numpy(small), n_objects + 1).permute(2, 0, 1).float()


# ------------------------------------------------------------------------------------------------ propagation
def neighbourhood(h: int, w: int, size: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """``[h w, h w]`` float: 1 where target patch (i, j) and source patch (p, q) satisfy |i - p| <= size and
    |j - q| <= size (DINO's ``restrict_neighborhood``)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    near = ((ys[:, None] - ys[None]).abs() <= size) & ((xs[:, None] - xs[None]).abs() <= size)
    return near.float()


def affinity(
    target: torch.Tensor, sources: torch.Tensor, temperature: float, window: torch.Tensor | None = None
) -> torch.Tensor:
    """``[n hw_s, hw_t]``: exp(cos / temperature) between every context patch (rows, frame-major) and every target
    patch (columns), times ``window [hw_t, hw_s]`` where given. ``target [hw_t, d]``, ``sources [n, hw_s, d]``,
    both L2-normalised per patch."""
    aff = torch.exp(torch.einsum("nsd,td->nst", sources, target) / temperature)
    if window is not None:
        aff = aff * window.T[None]
    return aff.reshape(-1, target.shape[0])


def propagate_from_affinity(aff: torch.Tensor, segs: torch.Tensor, topk: int) -> torch.Tensor:
    """``[C, T]``: per target column of ``aff [S, T]`` keep the values >= its ``topk``-th largest (ties kept, as
    DINO's ``aff[aff < tk_val_min] = 0``), normalise the column to sum 1, and weight the source masks
    ``segs [C, S]`` with it."""
    k = min(topk, aff.shape[0])
    kth = aff.topk(k, dim=0).values[-1]  # [T]: the k-th largest per column
    kept = torch.where(aff < kth[None], torch.zeros_like(aff), aff)
    return segs @ (kept / kept.sum(dim=0, keepdim=True))


def propagate(
    target: torch.Tensor,
    sources: torch.Tensor,
    segs: torch.Tensor,
    *,
    temperature: float,
    topk: int,
    window: torch.Tensor | None = None,
    chunk: int = _CHUNK,
) -> torch.Tensor:
    """``[C, hw_t]``: the target frame's soft mask from ``sources [n, hw_s, d]`` and their masks
    ``segs [n, C, hw_s]`` (``label_propagation``), computed ``chunk`` target patches at a time (columns are
    independent, so the result is the same)."""
    flat = segs.permute(1, 0, 2).reshape(segs.shape[1], -1)  # [C, n hw_s], frame-major like the affinity rows
    out = []
    for s in range(0, target.shape[0], chunk):
        win = None if window is None else window[s : s + chunk]
        out.append(propagate_from_affinity(affinity(target[s : s + chunk], sources, temperature, win), flat, topk))
    return torch.cat(out, dim=1)


def norm_mask(mask: torch.Tensor) -> torch.Tensor:
    """DINO's ``norm_mask`` on ``[C, H, W]``: each channel whose maximum is > 0 is min-max scaled to [0, 1] (a
    constant positive channel becomes NaN there too, and then wins the argmax, as in DINO)."""
    mx = mask.amax(dim=(1, 2), keepdim=True)
    mn = mask.amin(dim=(1, 2), keepdim=True)
    return torch.where(mx > 0, (mask - mn) / (mx - mn), mask)


def to_labels(soft: torch.Tensor, patch: int, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` uint8 label map of a soft mask ``[C, h, w]``: bilinear upsampling by ``patch``, ``norm_mask``,
    argmax, nearest resize (PIL) to the original ``size`` = (H, W)."""
    up = F.interpolate(
        soft[None], scale_factor=patch, mode="bilinear", align_corners=False, recompute_scale_factor=False
    )[0]
    labels = norm_mask(up).argmax(dim=0).to(torch.uint8).cpu().numpy()
    return np.array(Image.fromarray(labels).resize((size[1], size[0]), Image.Resampling.NEAREST))


def segment_sequence(
    feats: np.ndarray, first: torch.Tensor, protocol: DavisProtocol, patch: int, size: tuple[int, int], device: str
) -> list[np.ndarray]:
    """Label maps ``[H, W]`` for frames 1..T-1 from ``feats [T, d, h, w]`` and the one-hot ``first [C, h, w]``."""
    _, d, h, w = feats.shape

    def frame(t: int) -> torch.Tensor:  # [hw, d], normalised again after the fp16 round trip (DINO normalises here)
        x = torch.from_numpy(np.asarray(feats[t], dtype=np.float32)).to(device).reshape(d, h * w).T
        return F.normalize(x, dim=1)

    window = neighbourhood(h, w, protocol.size_mask_neighborhood, device) if protocol.size_mask_neighborhood else None
    first_feat, first_seg = frame(0), first.to(device).reshape(first.shape[0], h * w)
    queue: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=protocol.n_last_frames)
    out = []
    for t in range(1, feats.shape[0]):
        target = frame(t)
        sources = torch.stack([first_feat, *(f for f, _ in queue)])
        segs = torch.stack([first_seg, *(s for _, s in queue)])
        soft = propagate(target, sources, segs, temperature=protocol.temperature, topk=protocol.topk, window=window)
        if protocol.n_last_frames > 0:
            queue.append((target, soft))  # the soft mask, not its argmax, is the next frames' context
        out.append(to_labels(soft.reshape(-1, h, w), patch, size))
    return out


# ------------------------------------------------------------------------------------------------ the harness
def _require_rgb(encoder: Encoder) -> None:
    bands = encoder.data_config.band_order
    if bands is not None and tuple(bands) != RGB:
        raise DataError(f"DAVIS frames are RGB, but the encoder expects bands {list(bands)}")


def score_results(data: DavisSplit, results: Path, bound_th: float) -> list[ObjectScore]:
    """J and F of every object from the PNGs under ``results/<sequence>/`` (frames 1 .. T-2, as the official
    semi-supervised evaluation reads them)."""
    scores: list[ObjectScore] = []
    for seq in data.sequences:
        frames = range(1, len(seq) - 1)
        gts = [read_indexed(seq.annotations[t]) for t in frames]
        preds = []
        for t in frames:
            path = results / seq.name / seq.annotations[t].name
            pred = read_indexed(path)
            if pred.max(initial=0) > seq.n_objects:
                raise DataError(f"{path}: index {int(pred.max())} above the sequence's {seq.n_objects} object(s)")
            preds.append(pred)
        scores.extend(score_sequence(seq.name, gts, preds, seq.n_objects, bound_th))
    return scores


class DavisHarness(Harness):
    """The ``davis2017-vos`` task (DINO's label propagation; see :class:`DavisProtocol`)."""

    def run(self, ctx: RunContext, protocol: DavisProtocol) -> RunOutput:
        data = scan_davis(ctx.data_root, protocol.split)  # every data error before any model work
        encoder = ctx.encoder
        _require_rgb(encoder)
        stats = frame_stats(encoder, protocol)
        patch = encoder.spec.reductions[-1] if encoder.spec.family != "vit" else encoder.spec.size_divisor
        results = ctx.work_dir / "davis-results" / protocol.split
        palette = davis_palette()
        sizes: dict[str, list[int]] = {}
        with progress_bar(len(data.sequences), "davis sequences", ctx.progress, unit="seq") as bar:
            for seq in data.sequences:
                size = frame_size(*seq.size, protocol.short_side, protocol.long_multiple)
                sizes[seq.name] = list(size)
                feats = sequence_features(encoder, seq, data.root, size, stats, ctx)
                first_labels = read_indexed(seq.annotations[0])
                first = first_mask(first_labels, feats.shape[2:], seq.n_objects)
                with torch.inference_mode():
                    labels = segment_sequence(feats, first, protocol, patch, seq.size, ctx.device)
                write_indexed(results / seq.name / seq.annotations[0].name, first_labels, palette)
                for t, lab in enumerate(labels, start=1):
                    write_indexed(results / seq.name / seq.annotations[t].name, lab, palette)
                bar.update(1)
        scores = score_results(data, results, protocol.bound_th)
        metrics = summarise(scores)
        per_sequence: dict[str, dict[str, float]] = {}
        for seq in data.sequences:
            mine = [s for s in scores if s.sequence == seq.name]
            per_sequence[seq.name] = {**summarise(mine), "n_objects": seq.n_objects, "n_frames": len(seq)}
        per_object = {s.key: {"J_mean": 100 * s.j_mean, "F_mean": 100 * s.f_mean} for s in scores}
        probe = {
            "features": "forward_last patch tokens (last block after the final norm, CLS dropped), L2-normalised",
            "patch": patch,
            "frame_size_rule": f"short side {protocol.short_side}, long side floored to x{protocol.long_multiple}",
            "frame_sizes": sorted({f"{h}x{w}" for h, w in sizes.values()}),
            "mean": list(stats[0]),
            "std": list(stats[1]),
            "context": f"first frame + {protocol.n_last_frames} previous soft masks",
        }
        dataset = DatasetInfo(
            name=Path(data.root).resolve().name,
            split=protocol.split,
            fingerprint=data.fingerprint(),
            n_samples=data.n_frames,
            root=str(data.root),
            splits={protocol.split: len(data.sequences)},
            annotations={f"ImageSets/2017/{protocol.split}.txt": data.imageset_sha256()},
        )
        extra = {
            "predictions": str(results),
            "n_objects": data.n_objects,
            "per_sequence": per_sequence,
            "per_object": per_object,
        }
        return RunOutput(metrics=metrics, dataset=dataset, probe=probe, extra=extra)
