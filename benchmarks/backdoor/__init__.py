"""Backdoor robustness of frozen encoders: HTBA (hidden trigger) and BadNets (visible patch) attacks on a new linear
head, and the attention-blocking test-time defense (Subramanya et al., arXiv 2206.08477).

- :mod:`benchmarks.backdoor.protocols`: the torch-free protocols (``backdoor-htba``, ``backdoor-badnets``).
- :mod:`benchmarks.backdoor.images`: pixel-space images, the seeded trigger, pasting.
- :mod:`benchmarks.backdoor.poison`: HTBA's PGD through the frozen encoder, cached and resumable.
- :mod:`benchmarks.backdoor.defense`: gradient-weighted attention rollout, Grad-CAM, peak box, blackout.
- :mod:`benchmarks.backdoor.harness`: the two harnesses and their metrics.
"""
