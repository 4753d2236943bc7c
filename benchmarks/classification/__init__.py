"""ImageNet-style classification probes: k-NN and linear (incl. per-layer), on cached frozen features."""
