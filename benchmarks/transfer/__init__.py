"""Frozen-feature transfer tasks from DINO's evaluation suite: DAVIS-2017 label propagation, Copydays copy detection."""
