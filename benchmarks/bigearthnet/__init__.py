"""BigEarthNet-MM (Sentinel-1 + Sentinel-2, multi-label) tasks: DINO-MM's linear probe and fine-tuning."""
