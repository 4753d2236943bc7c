"""The ``copydays-copy-detection`` harness: DINO's copy detection on Copydays 'strong' with YFCC100M distractors.

Every image set (originals, each query block, distractors, whitening set) goes once through the feature cache:
``forward_last`` CLS token concatenated with the GeM-pooled patch tokens, at a square ``image_size``. Then whitening
learned on the whitening set, cosine top-k search of each query block against originals + distractors, and the
Holidays mAP (see :class:`CopydaysProtocol` for every step's source).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from benchmarks.data.copydays import CopydaysData, scan_copydays
from benchmarks.features import FeatureKey, default_cache_dir, extract
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.data import RGB, LabelledSplit, load_rgb
from benchmarks.records import DatasetInfo
from benchmarks.transfer.protocols import CopydaysProtocol
from benchmarks.transfer.retrieval import Whitening, mean_ap, search
from methods import Encoder
from methods.errors import DataError

__all__ = ["CopydaysHarness", "CopydaysProtocol", "gem"]


def gem(patches: torch.Tensor, p: float, eps: float = 1e-6) -> torch.Tensor:
    """``[B, d, h, w] -> [B, d]``: generalised mean (mean of x^p)^(1/p) over the patches, inputs clamped at ``eps``
    (DINO: ``avg_pool2d(x.clamp(min=1e-6).pow(4), (h, w)).pow(1/4)``). In fp32: x^4 overflows fp16 from |x| > 16."""
    return patches.float().clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class SquareDataset(Dataset):
    """``(image [3, S', S'], i)``: DINO's transform, ``Resize((S, S), bicubic)`` (no crop, aspect not kept),
    ``ToTensor``, ``Normalize(mean, std)``; then cropped at the bottom/right to ``S' = S // m * m`` for a patch size
    ``m`` that does not divide ``S`` (the pixels DINO's stride-``m`` patch convolution leaves out anyway)."""

    def __init__(
        self, split: LabelledSplit, size: int, mean: tuple[float, ...], std: tuple[float, ...], multiple: int = 1
    ) -> None:
        self.split = split
        self.size = size
        self.keep = size // multiple * multiple
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.split)

    def content_digest(self) -> str:
        return self.split.content_digest()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = load_rgb(self.split.paths[i]).resize((self.size, self.size), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        return (x[:, : self.keep, : self.keep] - self.mean) / self.std, i


def copy_features(encoder: Encoder, split: LabelledSplit, protocol: CopydaysProtocol, ctx: RunContext) -> np.ndarray:
    """``[N, 2 d]`` float32: CLS (or the patch mean without one) ++ GeM of the patch tokens, through the cache."""
    dc = encoder.data_config
    m = encoder.spec.size_divisor
    dataset = SquareDataset(split, protocol.image_size, tuple(dc.mean), tuple(dc.std), multiple=m)

    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        token, patches = encoder.forward_last(x)
        return {"feat": torch.cat([token.float(), gem(patches, protocol.gem_p)], dim=1)}

    desc = f"square{protocol.image_size}-bicubic-crop{m}-mean{tuple(dc.mean)}-std{tuple(dc.std)}"
    key = FeatureKey(encoder.identity.weights_id, split.fingerprint(), split.name, desc, f"cls+gem{protocol.gem_p}")
    arrays = extract(
        fn,
        dataset,
        key,
        cache_dir=ctx.cache_dir or default_cache_dir(),
        device=ctx.device,
        batch_size=16,
        desc=f"features {split.name}",
        progress=ctx.progress,
    )
    return np.asarray(arrays["feat"], dtype=np.float32)


def dataset_info(data: CopydaysData) -> DatasetInfo:
    sizes = data.sizes()
    parts = [data.originals, *(q.images for q in data.queries), data.distractors]
    if data.whitening is not None:
        parts.append(data.whitening)
    return DatasetInfo(
        name=data.root.resolve().name,
        split="strong->original+distractors",
        fingerprint=":".join(p.fingerprint() for p in parts),
        n_samples=sizes["strong"],
        root=str(data.root),
        splits=sizes,
    )


class CopydaysHarness(Harness):
    """The ``copydays-copy-detection`` task (see :class:`CopydaysProtocol`)."""

    def run(self, ctx: RunContext, protocol: CopydaysProtocol) -> RunOutput:
        data = scan_copydays(ctx.data_root, whitening=protocol.whiten)  # every data error before model work
        encoder = ctx.encoder
        bands = encoder.data_config.band_order
        if bands is not None and tuple(bands) != RGB:
            raise DataError(f"Copydays images are RGB, but the encoder expects bands {list(bands)}")
        originals = copy_features(encoder, data.originals, protocol, ctx)
        database = np.concatenate([originals, copy_features(encoder, data.distractors, protocol, ctx)])
        queries = {
            q.name: originals if q.name == "original" else copy_features(encoder, q.images, protocol, ctx)
            for q in data.queries
        }
        feature_dim = int(database.shape[1])
        whitening = None
        if data.whitening is not None:
            whitening = Whitening.fit(
                copy_features(encoder, data.whitening, protocol, ctx), protocol.whitening_power, protocol.whitening_dim
            )
            database = whitening(database)
            queries = {name: whitening(q) for name, q in queries.items()}
        metrics: dict[str, float] = {}
        for block in data.queries:
            ranked = search(queries[block.name], database, protocol.top_k)
            metrics[block.metric] = mean_ap(ranked, block.positives)
        probe = {
            "features": f"forward_last: CLS (patch mean without one) ++ GeM(p={protocol.gem_p}) of the patch tokens",
            "resolution": protocol.image_size,
            "feature_dim": feature_dim,
            "whitening": None
            if whitening is None
            else {"power": protocol.whitening_power, "dims": int(whitening.projection.shape[0])},
            "database": len(data.originals) + len(data.distractors),
            "top_k": protocol.top_k,
        }
        extra = {"blocks": {b.name: len(b.images) for b in data.queries}}
        return RunOutput(metrics=metrics, dataset=dataset_info(data), probe=probe, extra=extra)
