"""Released classifiers scored on ImageNet-1k val and its robustness sets: ``imagenet-supervised``, ``imagenet-a``,
``imagenet-r``, ``imagenet-sketch``, ``imagenetv2`` and ``imagenet-c`` (one harness, the task says which set).

The encoder comes with the head its authors released (``build_encoder(..., classifier=True)``: the runner asks for
it because the task is catalogued with ``classifier=True``). Each split goes once through the feature cache: what is
cached is the top-5 class indices of ``Encoder.forward_logits`` over the set's label space (all 1000 classes, or the
200 of ImageNet-A/-R), so an interrupted run (ImageNet-C is 3.75 M images) resumes where it stopped and a rerun costs
nothing. Indices below 2048 are exact in the cache's fp16. Top-1 / top-5 are read off them against the standard
sorted-wnid labels the layouts scan to (:mod:`benchmarks.data.imagenet`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.classification.protocols import (
    ALEXNET_ERR,
    ImageNetCProtocol,
    ImageNetV2Protocol,
    SupervisedProtocol,
)
from benchmarks.data import imagenet as layouts
from benchmarks.data.imagenet_classes import IMAGENET_A_WNIDS, IMAGENET_R_WNIDS, INDEX, WNIDS, classes_sha256
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.data import LabelledSplit
from benchmarks.probe.engine import as_tensor, extract_split, transform_for
from benchmarks.records import DatasetInfo
from methods import Encoder
from methods.errors import DataError, VitbenchError

__all__ = ["SupervisedHarness", "mean_corruption_error", "predict_top5", "topk_accuracy"]

# The label space each set is scored over (None: all 1000 classes).
_SUBSETS: dict[str, tuple[str, ...] | None] = {"imagenet-a": IMAGENET_A_WNIDS, "imagenet-r": IMAGENET_R_WNIDS}
_V2_OTHERS = ("threshold", "top-images", "topimages")  # names of the two ImageNetV2 variants that are not this task


def topk_accuracy(top5: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (%) from predicted class indices ``[N, k]`` (best first) and labels ``[N]``."""
    pred = np.asarray(top5).astype(np.int64)
    hit = pred == np.asarray(labels)[:, None]
    return 100.0 * float(hit[:, 0].mean()), 100.0 * float(hit[:, :5].any(axis=1).mean())


def mean_corruption_error(top1: dict[tuple[str, int], float]) -> dict[str, float]:
    """ImageNet-C metrics from top-1 accuracies (%) per (corruption, severity): ``CE_<c>`` = mean error over the
    severities / AlexNet's mean error on c (%), ``mCE`` = their mean over the standard corruptions present,
    ``top1_<c>`` = mean accuracy over severities, ``top1`` = mean over everything."""
    out: dict[str, float] = {}
    by_c: dict[str, list[float]] = {}
    for (c, _), acc in top1.items():
        by_c.setdefault(c, []).append(acc)
    ces = []
    for c, accs in by_c.items():
        out[f"top1_{c}"] = float(np.mean(accs))
        if c in ALEXNET_ERR:
            ce = 100.0 * (1.0 - out[f"top1_{c}"] / 100.0) / ALEXNET_ERR[c]
            out[f"CE_{c}"] = ce
            ces.append(ce)
    if ces:
        out["mCE"] = float(np.mean(ces))
    out["top1"] = float(np.mean(list(top1.values())))
    return out


def predict_top5(
    encoder: Encoder,
    split: LabelledSplit,
    label_space: tuple[str, ...] = WNIDS,
    *,
    resolution: int | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(top-5 predicted standard class indices [N, 5] best first, labels [N])`` of ``encoder``'s classifier on
    ``split`` through the feature cache. ``label_space``: the wnids the logits are restricted to (ImageNet-A/-R's
    200, as their authors' eval scripts do; all 1000 by default)."""
    subset = None if tuple(label_space) == WNIDS else torch.tensor([INDEX[w] for w in label_space])
    what = "classifier-top5:" + ("in1k" if subset is None else classes_sha256(label_space)[:16])

    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = encoder.forward_logits(x)  # [B, 1000]
        if subset is None:
            top5 = logits.topk(5, dim=1).indices.float()
        else:
            s = subset.to(logits.device)
            top5 = s[logits[:, s].topk(5, dim=1).indices].float()  # [B, 5] standard indices
        # topk ranks NaN logits like numbers: their rows become NaN, so extract refuses the batch, naming its images.
        return {"top5": top5.masked_fill(~torch.isfinite(logits).all(dim=1, keepdim=True), float("nan"))}

    f = extract_split(
        encoder, split, fn, what, resolution=resolution, device=device, cache_dir=cache_dir, progress=progress
    )
    return as_tensor(f["top5"]).numpy().astype(np.int64), np.asarray(f["labels"])


class SupervisedHarness(Harness):
    """Scores ``ctx.encoder``'s released classifier on the set ``self.spec`` names (its ``dataset_kind``)."""

    def run(self, ctx: RunContext, protocol: SupervisedProtocol) -> RunOutput:
        self.check_protocol(protocol)
        enc = ctx.encoder
        c = enc.classifier
        if c is None:
            raise VitbenchError(
                f"task {self.task} scores a released classifier: build the encoder with classifier=True"
            )
        if c.num_classes != len(WNIDS) or c.labels != "imagenet-1k":
            raise VitbenchError(
                f"{enc.identity.method}:{enc.identity.variant}: its head has {c.num_classes} classes ({c.labels}); "
                f"{self.task} scores ImageNet-1k heads (1000 classes in sorted-wnid order)"
            )
        splits, layout = self._scan(ctx.data_root, protocol)
        label_space = _SUBSETS.get(self.task) or WNIDS
        info = self._dataset_info(ctx.data_root, splits, label_space)
        if not ctx.smoke:  # refused before any forward pass: the record would be refused by validate
            self._require_task_data(info, ctx.data_root)

        top1: dict[str, float] = {}
        top5: dict[str, float] = {}
        for split in splits:
            pred, labels = predict_top5(
                enc,
                split,
                label_space,
                resolution=protocol.resolution,
                device=ctx.device,
                cache_dir=ctx.cache_dir,
                progress=ctx.progress,
            )
            top1[split.name], top5[split.name] = topk_accuracy(pred, labels)
        if isinstance(protocol, ImageNetCProtocol):
            metrics = mean_corruption_error({_cs(name): acc for name, acc in top1.items()})
            extra: dict[str, Any] = {"top1": top1, "top5": top5}
        else:
            ((name, t1),) = top1.items()
            metrics = {"top1": t1, "top5": top5[name]}
            extra = {}
        return RunOutput(
            metrics=metrics, dataset=info, probe=self._card(ctx, protocol, layout, label_space), extra=extra
        )

    # -- data ----------------------------------------------------------------------------------------------------
    def _scan(self, root: Path, protocol: SupervisedProtocol) -> tuple[list[LabelledSplit], str]:
        kind = self.spec.dataset_kind
        if kind == "imagenet":
            split, layout = layouts.scan_imagenet_val(root)
            return [split], layout
        if kind == "imagenet-c":
            assert isinstance(protocol, ImageNetCProtocol)
            return layouts.scan_imagenet_c(root, protocol.corruptions, protocol.severities), "corruption/severity/wnid"
        scanners = {
            "imagenet-a": layouts.scan_imagenet_a,
            "imagenet-r": layouts.scan_imagenet_r,
            "imagenet-sketch": layouts.scan_imagenet_sketch,
            "imagenetv2": layouts.scan_imagenetv2,
        }
        if kind not in scanners:
            raise VitbenchError(f"task {self.task}: no scanner for dataset kind {kind!r}")
        return [scanners[kind](root)], "class-index folders" if kind == "imagenetv2" else "wnid folders"

    def _dataset_info(self, root: Path, splits: list[LabelledSplit], label_space: tuple[str, ...]) -> DatasetInfo:
        return DatasetInfo(
            name=Path(root).resolve().name,
            split=splits[0].name if len(splits) == 1 else f"{len(splits)} corruption/severity splits",
            fingerprint=":".join(s.fingerprint() for s in splits),
            n_samples=sum(len(s) for s in splits),
            root=str(root),
            splits={s.name: len(s) for s in splits},
            n_classes=len(label_space),
            classes_sha256=classes_sha256(label_space),
        )

    def _require_task_data(self, info: DatasetInfo, root: Path) -> None:
        """The paper track's identity check (split sizes, label space), one line naming the field, before computing."""
        want = self.spec.data
        if want is None:
            return
        for split, n in want.splits.items():
            got = (info.splits or {}).get(split)
            if got != n:
                raise DataError(
                    f"{root}: {got if got is not None else 'no'} images in {split}, but the paper track of {self.task} "
                    f"is defined on {want.name} with {n}: not the task's data; pass --smoke to run it as a smoke test"
                )
        if isinstance(self.spec.protocol, type) and issubclass(self.spec.protocol, ImageNetV2Protocol):
            if any(tag in Path(root).resolve().name.lower() for tag in _V2_OTHERS):
                raise DataError(
                    f"{root}: an ImageNetV2 variant other than matched-frequency; {self.task} is defined on "
                    "imagenetv2-matched-frequency-format-val (pass --smoke to run it anyway)"
                )

    # -- the probe card ----------------------------------------------------------------------------------------------
    def _card(
        self, ctx: RunContext, protocol: SupervisedProtocol, layout: str, label_space: tuple[str, ...]
    ) -> dict[str, Any]:
        enc = ctx.encoder
        assert enc.classifier is not None
        t = transform_for(enc, protocol.resolution)
        return {
            "features": "forward_logits (the released classifier: backbone + its head)",
            "classifier": {"keys": list(enc.classifier.keys), "labels": enc.classifier.labels},
            "label_space": f"{len(label_space)} classes" + ("" if label_space is WNIDS else " (logits restricted)"),
            "layout": layout,
            "resolution": t.size,
            "transform": {
                "resize": int(t.size / t.crop_pct),
                "crop": t.size,
                "crop_pct": t.crop_pct,
                "interpolation": t.interpolation,
                "mean": list(t.mean),
                "std": list(t.std),
            },
        }


def _cs(name: str) -> tuple[str, int]:
    c, s = name.split("/")
    return c, int(s)
