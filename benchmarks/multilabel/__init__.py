"""Multi-label recognition: partial-label and zero-shot tasks (VOC 2007, MS-COCO 2014, NUS-WIDE), with linear
heads on frozen features for any encoder and DualCoOp's prompt learning for encoders with a text tower.

- :mod:`benchmarks.multilabel.protocols`: the torch-free protocols and their sources.
- :mod:`benchmarks.multilabel.masks`: seeded, nested partial-label masks.
- :mod:`benchmarks.multilabel.metrics`: mAP and top-k precision / recall / F1.
- :mod:`benchmarks.multilabel.dualcoop`: DualCoOp's prompts, region aggregation, loss and training loop.
- :mod:`benchmarks.multilabel.partial`, :mod:`benchmarks.multilabel.zsl`: the harnesses.
"""
