"""The probe engine every frozen-feature task shares: labelled data in the encoder's band order, features
extracted once into the on-disk fp16 cache, then a grid of linear heads for any target in one pass.

- :mod:`benchmarks.probe.data`: :class:`~benchmarks.probe.data.LabelledSplit` (single- or multi-label targets,
  RGB images or named multi-band arrays) and the dataset that delivers ``[C, H, W]`` tensors in the encoder's
  declared band order and scaling.
- :mod:`benchmarks.probe.heads`: targets (single-label CE; multi-label BCE or ASL with unknown-label masks), the
  one-pass head grid and the metrics.
- :mod:`benchmarks.probe.engine`: extraction of global / per-block probe features through the cache, and grid
  fitting with hold-out selection.
"""
