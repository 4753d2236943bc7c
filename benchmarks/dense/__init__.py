"""Dense-prediction harnesses on the mm* engines (mmdet for COCO detection; mmseg configs for segmentation).

Layout, split by engine:

- :mod:`~benchmarks.dense.protocols`: the flat protocol dataclasses (torch- and mm*-free; the catalogue reads them);
- :mod:`~benchmarks.dense.neck`: engine-neutral neck planning from the encoder's spec, and the simple pyramid;
- :mod:`~benchmarks.dense.backbone`: the engine-neutral backbone module around an :class:`~methods.Encoder`;
- :mod:`~benchmarks.dense.mmdet_config` / :mod:`~benchmarks.dense.mmseg_config`: each engine's config, plain dicts;
- :mod:`~benchmarks.dense.mm_glue`: the only module importing mmcv/mmengine/mmdet/mmseg (registration, train, test);
- :mod:`~benchmarks.dense.coco`: the COCO detection harness and its COCOeval scoring.

COCO data validation and the synthetic COCO set live in :mod:`benchmarks.data.coco`. Everything but ``mm_glue``
imports without the compiled stack, so the catalogue, the CLI and the default test suite work without it. Install
it with ``python -m benchmarks.dense.build_mmcv``.
"""
