"""Datasets in their real on-disk layouts, with strict scanning and synthetic makers."""
