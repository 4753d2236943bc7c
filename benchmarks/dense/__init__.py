"""Dense-prediction harnesses (COCO detection / instance segmentation) on the mm* engines.

Only :mod:`benchmarks.dense.mm_glue` imports mmcv/mmdet/mmengine; everything else here (protocols, config
generation, COCO validation, synthetic data, COCOeval) imports without them, so the task registry, the CLI and the
default test suite work on a machine without the compiled stack. Install it with
``python -m benchmarks.dense.build_mmcv``.
"""
