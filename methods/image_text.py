"""The optional image-text capability of an encoder: CLIP-style image and text towers in one embedding space.

Prompt-learning and zero-shot tasks (DualCoOp's partial-label and zero-shot multi-label recognition) need more than
an image embedding: a tokenizer, the text tower run on *token embeddings* (so learnable context vectors can stand in
for words, as CoOp/DualCoOp do), and image features per spatial region in the joint space. An :class:`ImageText`
offers exactly that; :meth:`methods.base.Encoder.image_text` builds it on first use for the encoders whose adapter
declares one (``Encoder.has_image_text``). Implementations live next to the library that builds the model
(:mod:`methods.open_clip_towers`); this module imports torch only.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn

from methods.weights import LoadReport


class ImageText(nn.Module, metaclass=abc.ABCMeta):
    """Image and text towers sharing an embedding space of width :attr:`embed_dim` (``D``).

    Shapes: ``tokens [N, L]`` int64 (``L = context_length``, end-of-text token = the largest id, as CLIP's BPE),
    token embeddings ``[N, L, W]`` (``W = token_width``), text features ``[N, D]``, images ``[B, 3, H, W]``.
    """

    name: str  # what builds it, e.g. "open_clip:RN50" (part of feature-cache keys)
    embed_dim: int
    context_length: int
    token_width: int
    load_report: LoadReport | None = None  # None: random initialisation

    @abc.abstractmethod
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """``[N, L]`` token ids of ``texts`` (start token, BPE tokens, end token, zero padding)."""

    @abc.abstractmethod
    def token_count(self, text: str) -> int:
        """Number of BPE tokens of ``text`` alone (no start/end tokens)."""

    @abc.abstractmethod
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, L] -> [N, L, W]``: the text tower's token embedding."""

    @abc.abstractmethod
    def encode_embedded(self, embedded: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, L, W]`` token embeddings (some may be learned) -> ``[N, D]`` text features, read at the position
        of each row's end-of-text token in ``tokens [N, L]``. Not normalised."""

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, L] -> [N, D]``: the text features of plain tokens."""
        return self.encode_embedded(self.embed_tokens(tokens), tokens)

    @abc.abstractmethod
    def forward_image(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, D]``: the image embedding (CLIP's ``encode_image``), at the native input size."""

    @abc.abstractmethod
    def forward_regions(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, 1 + h * w, D]``: features of every region of the last feature map (``h, w`` =
        ``H, W`` / the tower's stride) projected into the joint space, the mean token first. Any input size."""
