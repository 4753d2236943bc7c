"""The ADE20K semantic segmentation harness (Semantic FPN / UperNet on mmseg 1.2).

One :class:`Ade20kHarness` serves both catalogue entries; what differs between them is all in their protocols:

- ``ade20k-semfpn-40k``: SelfPatch's protocol (:class:`~benchmarks.dense.protocols.Ade20kSemFpnProtocol`);
- ``ade20k-upernet-160k``: the XCiT/Swin UperNet recipe (:class:`~benchmarks.dense.protocols.Ade20kUperNetProtocol`),
  scored single-scale and multi-scale + flip.

Data is ADE20K's ``ADEChallengeData2016`` layout, checked by :func:`benchmarks.data.ade20k.validate_ade20k_split`
before anything reaches mmseg (and before anything is written); mmseg's ``ADE20KDataset`` then reads it with
``reduce_zero_label``. Metrics are mmseg's ``IoUMetric``: ``mIoU``, ``mAcc``, ``aAcc`` (%, and ``*_ms`` for the
multi-scale test), with every class's IoU in the record's ``extra.per_class_iou``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from benchmarks.data.ade20k import NUM_CLASSES, remember, resolve_root, validate_ade20k_split
from benchmarks.dense.backbone import check_dense_input, dense_spec, layer_decay_groups
from benchmarks.dense.engine import load_mm_glue
from benchmarks.dense.mmseg_config import SegProtocol, build_mmseg_config, plan_seg_neck
from benchmarks.dense.neck import pad_divisor, to_jsonable
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.records import DatasetInfo
from methods.errors import VitbenchError

SUMMARY = ("mIoU", "mAcc", "aAcc")


def classes_sha256(classes: tuple[str, ...]) -> str:
    """sha256 of the newline-joined class list in label order (the catalogue's ``DataIdentity`` convention)."""
    return hashlib.sha256("\n".join(classes).encode()).hexdigest()


def per_class_iou(metrics: dict[str, float], classes: tuple[str, ...], prefix: str) -> dict[str, float | None]:
    """class name -> IoU (%) from the evaluator's ``<prefix><k>`` entries; None where it is undefined (NaN)."""
    out: dict[str, float | None] = {}
    for k, name in enumerate(classes):
        v = metrics.get(f"{prefix}{k}")
        out[name] = None if v is None or math.isnan(v) else round(v, 4)
    return out


class Ade20kHarness(Harness):
    """Fine-tune a segmenter with the encoder as backbone on ADE20K training, report mIoU on validation."""

    def run(self, ctx: RunContext, protocol: SegProtocol) -> RunOutput:
        """Validate the data, generate the config, train + test through mmseg (and the multi-scale test).

        ``ctx.work_dir`` holds the mmengine work folder (``work_dir/mmseg``): checkpoints, logs, the dumped config.
        Running again with the same work folder resumes from the last checkpoint.
        """
        self.check_protocol(protocol)
        encoder, device = ctx.encoder, ctx.device
        root = resolve_root(ctx.data_root)
        cache = Path(ctx.work_dir)
        train = validate_ade20k_split(root, protocol.train_split, cache_dir=cache)
        val = validate_ade20k_split(root, protocol.val_split, cache_dir=cache)
        spec = dense_spec(encoder.spec, protocol.vit_indices)
        plan = plan_seg_neck(spec, protocol.head, protocol.pyramid_strides, protocol.neck_channels, protocol.pyramid)
        check_dense_input(encoder, pad_divisor(spec, plan), device, "ADE20K feeds whole validation images")
        mm_glue = load_mm_glue(self.task, ctx.launcher, device)
        classes = mm_glue.ade20k_classes()
        if len(classes) != NUM_CLASSES:
            raise VitbenchError(f"mmseg's ADE20KDataset lists {len(classes)} classes, expected {NUM_CLASSES}")
        for split in (train, val):  # only now that nothing can fail on the data: remember the checks for a resume
            remember(split, cache)

        work = cache / "mmseg"
        mm_glue.prepare()
        cfg = build_mmseg_config(
            encoder.spec,
            protocol,
            encoder_ref=mm_glue.register_encoder(encoder),
            num_classes=len(classes),
            mean=encoder.data_config.mean,
            std=encoder.data_config.std,
            data_root=root,
            work_dir=work,
            seed=ctx.seed,
            launcher=ctx.launcher,
            device=device,
            resume_from=mm_glue.own_last_checkpoint(work),
            layer_ids=encoder.layer_ids(),
        )
        result = mm_glue.train_and_test(cfg, task=self.task)

        missing = [m for m in SUMMARY if m not in result.metrics]
        if missing:
            raise VitbenchError(f"mmseg's IoUMetric returned no {', '.join(missing)} (got {sorted(result.metrics)})")
        # mmseg rounds to 2 decimals in float32 (21.079999923706055): keep the number it printed
        metrics = {m: round(result.metrics[m], 4) for m in SUMMARY}
        for name, values in result.extra_metrics.items():
            metrics.update({f"{m}_{name}": round(values[m], 4) for m in SUMMARY if m in values})
        prefix = mm_glue.PER_CLASS_PREFIX

        probe = {
            "neck": plan.to_dict(),
            "head": protocol.head,
            "blocks": list(spec.indices),
            "drop_path_rate": protocol.drop_path_rate,
            "drop_path_blocks": result.drop_path_blocks,
            "layer_decay": protocol.layer_decay if spec.family == "vit" else 1.0,
            "crop_size": list(protocol.crop_size),
            "test_scale": list(protocol.test_scale),
            "test_mode": protocol.test_mode,
            "ms_ratios": list(protocol.ms_ratios),
            "normalisation": {"mean": list(encoder.data_config.mean), "std": list(encoder.data_config.std)},
            "finetune": "full",
        }
        extra: dict[str, Any] = {
            "per_class_iou": per_class_iou(result.metrics, classes, prefix),
            **{f"per_class_iou_{n}": per_class_iou(v, classes, prefix) for n, v in result.extra_metrics.items()},
            "mm_config": to_jsonable(cfg),
            "layer_decay_groups": {str(k): len(v) for k, v in layer_decay_groups(cfg).items()},
            "config_path": str(result.config_path),
            "log_path": str(result.log_path) if result.log_path else None,
            "work_dir": str(work),
            "resumed_from": result.resumed_from,
            "world_size": result.world_size,
            "total_batch": result.world_size * protocol.batch_per_gpu,
            "effective_lr": result.effective_lr,
            "train_iters": result.train_iters,
            "amp": cfg["optim_wrapper"]["type"] == "AmpOptimWrapper",
            "train_set": {"split": train.split, "fingerprint": train.fingerprint, "n_images": train.n_images},
            "val_classes_present": len(val.classes_present),
        }
        skipped = {f"{s.split}_{k}": v for s in (train, val) for k, v in s.skipped.items()}
        dataset = DatasetInfo(
            name="ade20k",
            split=val.split,
            fingerprint=hashlib.sha256(f"{train.fingerprint}:{val.fingerprint}".encode()).hexdigest()[:16],
            n_samples=val.n_images,
            root=str(root),
            skipped=skipped,
            splits={train.split: train.n_images, val.split: val.n_images},
            n_classes=len(classes),
            classes_sha256=classes_sha256(classes),
        )
        return RunOutput(metrics=metrics, dataset=dataset, probe=probe, extra=extra)
