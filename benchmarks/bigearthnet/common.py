"""What the BigEarthNet harnesses share: splits read through torchgeo, the paper-track data check, how an encoder
sees the bands (its own band order and scaling, or the protocol's RGB adaptation), the evaluation transform, and the
metric report."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.bigearthnet.protocols import BigEarthNetFinetuneProtocol, BigEarthNetLinearProtocol
from benchmarks.harness import RunContext
from benchmarks.probe.data import ChannelMap, EvalTransform, LabelledSplit, nested_fraction
from benchmarks.probe.heads import multilabel_metrics
from benchmarks.records import DatasetInfo
from methods import Encoder
from methods.errors import DataError, VitbenchError

AnyProtocol = BigEarthNetLinearProtocol | BigEarthNetFinetuneProtocol
RGB_BANDS = ("B04", "B03", "B02")


@dataclass(frozen=True)
class Splits:
    """``train`` is the labelled subset (``label_fraction`` of ``train_full``); val and test are whole."""

    train_full: LabelledSplit
    train: LabelledSplit
    val: LabelledSplit
    test: LabelledSplit


def load_splits(ctx: RunContext, p: AnyProtocol) -> Splits:
    """Scan train / val / test (every patch checked, see :mod:`benchmarks.data.bigearthnet`) and draw the labelled
    subset. A paper-track run on v1 data that is not the task's (split sizes, torchgeo's md5 of the split files) is
    refused first, before any patch is opened."""
    from benchmarks.data import bigearthnet as ben

    if not 0.0 < p.label_fraction <= 1.0:
        raise VitbenchError(f"--set label_fraction={p.label_fraction}: expected a fraction in (0, 1]")
    if not ctx.smoke and p.version == "v1":
        check_paper_data(ctx, p)
    train, val, test = (ben.scan(ctx.data_root, s, p.modality, p.num_classes, p.version) for s in ben.SPLITS)
    idx = nested_fraction(len(train), p.label_fraction, p.label_seed)
    labelled = train if len(idx) == len(train) else train.subset(idx)
    return Splits(train, labelled, val, test)


def check_paper_data(ctx: RunContext, p: AnyProtocol) -> None:
    from benchmarks.data import bigearthnet as ben

    want = ctx.task.data
    if want is None:
        return
    sizes = ben.split_sizes(ctx.data_root, p.version)
    for split, n in want.splits.items():
        if sizes.get(split) != n:
            raise VitbenchError(
                f"{ctx.data_root / f'bigearthnet-{split}.csv'}: {sizes.get(split)} patches, but the paper track of "
                f"{ctx.task.id} is defined on {want.name} with {n} in {split}: not the task's data; pass --smoke to "
                "run it as a smoke test"
            )
    tgd = ben._torchgeo()
    for split in ben.SPLITS:
        meta = tgd.BigEarthNet.splits_metadata[split]
        path = ctx.data_root / meta["filename"]
        if hashlib.md5(path.read_bytes()).hexdigest() != meta["md5"]:  # noqa: S324 - torchgeo pins md5
            raise VitbenchError(
                f"{path}: not the official split file (md5 differs from torchgeo's {meta['md5']}); pass --smoke to "
                "run other splits as a smoke test"
            )


def channel_map(encoder: Encoder, p: AnyProtocol, data_bands: tuple[str, ...]) -> ChannelMap | None:
    """None for an encoder that declares its band order; else the protocol's adaptation for an RGB encoder."""
    from benchmarks.data import bigearthnet as ben

    if encoder.data_config.band_order is not None:
        return None
    if encoder.spec.in_chans != 3:
        raise VitbenchError(
            f"{encoder.identity.method}:{encoder.identity.variant} takes {encoder.spec.in_chans} channels but "
            "declares no band order: BigEarthNet cannot know which band goes where"
        )
    if p.rgb_adaptation == "rgb":
        if not set(RGB_BANDS) <= set(data_bands):
            raise VitbenchError(
                f"rgb_adaptation=rgb reads {'/'.join(RGB_BANDS)}, which modality {p.modality} lacks; "
                "use --set rgb_adaptation=tile"
            )
        return ChannelMap.select(RGB_BANDS, ben.stretch_for(RGB_BANDS), name="rgb")
    order = tuple(b for b in (*ben.S2_BANDS, *ben.S1_BANDS) if b in data_bands)
    return ChannelMap.tile(order, ben.stretch_for(order), name="tile")


def missing_policy(encoder: Encoder, p: AnyProtocol, data_bands: tuple[str, ...]) -> str:
    """ "zeros" when the encoder expects bands of a sensor the modality leaves out (DINO-MM's sensor drop); any
    other band the data lacks is an error."""
    from benchmarks.data import bigearthnet as ben

    order = encoder.data_config.band_order
    if order is None:
        return "error"
    dropped = {b for s in ("s1", "s2") if s not in ben.sensors(p.modality) for b in ben.SENSOR_BANDS[s]}
    absent = [b for b in order if b not in data_bands]
    if not absent:
        return "error"
    if set(absent) <= dropped:
        return "zeros"
    raise DataError(
        f"the encoder expects bands {', '.join(b for b in absent if b not in dropped)}, which BigEarthNet lacks"
    )


def eval_transform(encoder: Encoder, p: AnyProtocol, cmap: ChannelMap | None) -> EvalTransform:
    """Resize ``p.resize`` (bicubic) + CenterCrop ``p.resolution``, then the encoder's mean/std (per band of the
    channel map: the statistics of the channel it feeds)."""
    mean, std = norm_stats(encoder, cmap)
    return EvalTransform(p.resolution, p.resolution / p.resize, "bicubic", mean, std)


def norm_stats(encoder: Encoder, cmap: ChannelMap | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    dc = encoder.data_config
    if cmap is None:
        return tuple(dc.mean), tuple(dc.std)
    src = [cmap.source_channel(c) for c in range(len(cmap.bands))]
    return tuple(dc.mean[k] for k in src), tuple(dc.std[k] for k in src)


def report(
    val_logits: torch.Tensor, val_y: torch.Tensor, test_logits: torch.Tensor, test_y: torch.Tensor, p: AnyProtocol
) -> dict[str, float]:
    """``val_*`` and ``test_*`` metrics (%) of the head's logits ``[N, C]``; ``val_mAP_micro_batchavg`` is
    DINO-MM's figure (the one reported numbers compare with)."""
    out: dict[str, float] = {}
    for prefix, logits, y in (("val", val_logits, val_y), ("test", test_logits, test_y)):
        batch = p.eval_batch_size if prefix == "val" else None
        m = multilabel_metrics(logits, y, p.threshold, batch)
        m.pop("n_classes_without_positive")
        out.update({f"{prefix}_{k}": v for k, v in m.items()})
    return out


def dataset_info(ctx: RunContext, s: Splits) -> DatasetInfo:
    from benchmarks.data import bigearthnet as ben

    annotations: dict[str, str] = {}
    for split in ben.SPLITS:
        f = ctx.data_root / f"bigearthnet-{split}.csv"
        if f.is_file():
            annotations[f.name] = ben.file_sha256(f)
    if (ctx.data_root / "metadata.parquet").is_file():
        annotations["metadata.parquet"] = ben.file_sha256(ctx.data_root / "metadata.parquet")
    return DatasetInfo(
        name=ctx.data_root.resolve().name,
        split="train->val,test",
        fingerprint=f"{s.train.fingerprint()}:{s.val.fingerprint()}:{s.test.fingerprint()}",
        n_samples=len(s.val),
        root=str(ctx.data_root),
        splits={"train": len(s.train_full), "val": len(s.val), "test": len(s.test)},
        n_classes=len(s.train.classes),
        classes_sha256=hashlib.sha256("\n".join(s.train.classes).encode("utf-8")).hexdigest(),
        annotations=annotations,
    )


def card(encoder: Encoder, p: AnyProtocol, s: Splits, cmap: ChannelMap | None, missing: str) -> dict[str, Any]:
    """The probe-card entries both tasks share: what the encoder was fed."""
    t = eval_transform(encoder, p, cmap)
    return {
        "data": f"BigEarthNet {p.version} through torchgeo (bands {', '.join(s.train.bands or ())})",
        "modality": p.modality,
        "input": (
            f"encoder band order {list(encoder.data_config.band_order or ())}, scaled as its data_config states"
            if cmap is None
            else f"adaptation {cmap.name}: bands {list(cmap.bands)}, SeCo/DINO-MM stretch, folded to 3 channels"
        ),
        "missing_bands": "zeros (sensor drop)" if missing == "zeros" else "none",
        "eval_transform": f"resize {p.resize} bicubic, center crop {p.resolution}",
        "normalisation": {"mean": list(t.mean), "std": list(t.std)},
        "n_train_labelled": len(s.train),
        "label_fraction": p.label_fraction,
        "classes": list(s.train.classes),
        "compare_reported_with": "val_mAP_micro_batchavg (DINO-MM's per-batch micro AP on val)",
    }
