"""``vitbench data synth KIND``: tiny datasets in the real on-disk format, for smoke runs and tests."""

from __future__ import annotations

from pathlib import Path

from methods._names import Registry

# kind -> "module:function(out: Path, seed: int) -> Path"
SYNTH: Registry[str] = Registry("synthetic dataset kind")
SYNTH.register("imagefolder", "benchmarks.data.imagefolder:synth_imagefolder")
SYNTH.register("multilabel", "benchmarks.data.table:synth_multilabel")
SYNTH.register("multiband", "benchmarks.data.table:synth_multiband")
SYNTH.register("coco", "benchmarks.data.coco:synth_coco")
SYNTH.register("davis", "benchmarks.data.davis:synth_davis")
SYNTH.register("copydays", "benchmarks.data.copydays:synth_copydays")
SYNTH.register("bigearthnet", "benchmarks.data.bigearthnet:synth_bigearthnet")  # v1; GeoTIFFs need [geo]
SYNTH.register("bigearthnet-v2", "benchmarks.data.bigearthnet:synth_bigearthnet_v2")
SYNTH.register("ade20k", "benchmarks.data.ade20k:synth_ade20k")
SYNTH.register("imagenet", "benchmarks.data.imagenet:synth_imagenet")
SYNTH.register("imagenet-a", "benchmarks.data.imagenet:synth_imagenet_a")
SYNTH.register("imagenet-r", "benchmarks.data.imagenet:synth_imagenet_r")
SYNTH.register("imagenet-sketch", "benchmarks.data.imagenet:synth_imagenet_sketch")
SYNTH.register("imagenetv2", "benchmarks.data.imagenet:synth_imagenetv2")
SYNTH.register("imagenet-c", "benchmarks.data.imagenet:synth_imagenet_c")
SYNTH.register("voc", "benchmarks.data.voc:synth_voc")
SYNTH.register("coco-multilabel", "benchmarks.data.coco_multilabel:synth_coco_multilabel")
SYNTH.register("nuswide", "benchmarks.data.nuswide:synth_nuswide")


def synth(kind: str, out: Path | str, seed: int = 0) -> Path:
    """Write a synthetic dataset of ``kind`` under ``out`` and return its root."""
    return SYNTH.load(kind)(Path(out), seed)
