"""Architectures timm lacks, written once and registered with ``timm.models.register_model``.

One module per architecture. Importing ``methods.archs.<name>`` registers its timm model names, after which
``timm.create_model("<name>_...")`` builds it like any timm model (``forward_features``, ``forward_head``,
``forward_intermediates``, ``feature_info``). This package imports nothing on its own, so listing methods stays cheap.
"""
