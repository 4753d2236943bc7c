"""DINO's frozen-feature transfer protocols (DAVIS-2017 label propagation, Copydays copy detection): torch-free.

Both read the same features, the last block's output after the final norm (DINO's
``get_intermediate_layers(x, n=1)``, :meth:`methods.Encoder.forward_last`), and train nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from benchmarks.protocol import Protocol

# DINO's eval_video_segmentation.py normalises frames with these constants, whatever the model (std 0.228, not
# ImageNet's 0.229); see DavisProtocol.stats.
DINO_DAVIS_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
DINO_DAVIS_STD: tuple[float, float, float] = (0.228, 0.224, 0.225)


@dataclass(frozen=True)
class DavisProtocol(Protocol):
    """Semi-supervised video object segmentation on DAVIS-2017 by label propagation: DINO's protocol.

    Sources: facebookresearch/dino ``eval_video_segmentation.py`` (commit 7c446df) for the propagation, and the
    official davisvideochallenge/davis2017-evaluation (commit ac7c43f, ``davis2017/metrics.py``, ``evaluation.py``,
    ``utils.py``) for J and F; summarised in ``shared/reference/protocols_wave2.md`` § DAVIS-2017.

    - **Data**: the sequences of ``ImageSets/2017/<split>.txt``, frames ``JPEGImages/480p/<seq>/%05d.jpg``, palette
      annotations ``Annotations/480p/<seq>/%05d.png``; the first frame's annotation is the input (its indices are
      the object ids), the others are only read to score.
    - **Frames** (``read_frame``): resized so that the short side is ``short_side`` (480) and the long side is
      ``short_side * long / short`` floored to a multiple of ``long_multiple`` (64): 854 x 480 -> 832 x 480. DINO
      resizes with OpenCV's bilinear on the 8-bit image; we do the same resize in torch (bilinear, no antialias,
      rounded to 8 bits), which can differ from OpenCV's fixed-point arithmetic by one grey level. Where the patch
      size does not divide the frame (ViT-H/14: 480 / 14), the bottom/right remainder is cropped: the pixels DINO's
      stride-p patch convolution leaves out anyway (its grid is floor(H / p) x floor(W / p)).
    - **stats** ``"dino"``: DINO's constants mean (0.485, 0.456, 0.406), std **(0.228**, 0.224, 0.225) for every
      encoder whose data config declares ImageNet's statistics; an encoder trained with other statistics (SGT,
      CLIP) keeps its own. ``"encoder"``: always the encoder's. The probe card records what was used.
    - **Features**: ``forward_last`` patch tokens (CLS dropped), L2-normalised per patch. Position tables are
      resampled by the encoder to the frame's grid (timm's ``dynamic_img_size``; DINO's own ViT uses a scale
      factor of (w + 0.1) / sqrt(N): 0.3 % relative difference at 480 x 832, cosine >= 0.9999). Features are
      cached per sequence in fp16 like every frozen-feature task (DINO keeps fp32).
    - **First mask** (``read_seg``): the first annotation resized (nearest, PIL) to the feature grid
      (w // patch, h // patch), one-hot over background + objects.
    - **Propagation** (``label_propagation``): context = the first frame and the ``n_last_frames`` (7) previous
      predictions (soft masks, not their argmax); affinity ``exp(cos / temperature)`` (0.1) between each target
      patch and every context patch, zeroed outside a square window of ``size_mask_neighborhood`` (12) patches
      (0 = no window); per target patch only values >= its ``topk``-th (5) largest over all context patches are
      kept, then normalised to sum 1; the soft mask is their weighted sum of the context masks.
    - **Output**: the soft mask upsampled bilinearly by the patch size, each channel min-max normalised where its
      maximum is > 0 (``norm_mask``), argmax, resized (nearest) to the original frame size and written as a palette
      PNG per frame in the DAVIS results layout; frame 0 is the given annotation.
    - **Metrics** (semi-supervised): per object and frame, excluding the first and the last frame of each sequence,
      J = region IoU (1 where both masks are empty) and F = boundary F-measure: 1-pixel boundaries
      (``_seg2bmap``), matched within a disk of ``ceil(bound_th * ||(H, W)||)`` pixels (``bound_th`` 0.008: 8 px at
      480 x 854), precision/recall 1/0 conventions for empty boundaries. Per object the mean over its frames; J_mean
      and F_mean = means over all objects of all sequences; JF_mean = their average. Void pixels (255) count as
      background, as the official semi-supervised evaluation does.
    """

    NAME: ClassVar[str] = "dino-davis-label-propagation"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {"short_side": 128}

    split: str = "val"
    short_side: int = 480
    long_multiple: int = 64
    stats: Literal["dino", "encoder"] = "dino"
    n_last_frames: int = 7
    size_mask_neighborhood: int = 12
    topk: int = 5
    temperature: float = 0.1
    bound_th: float = 0.008


@dataclass(frozen=True)
class CopydaysProtocol(Protocol):
    """Copy detection on INRIA Copydays with YFCC100M distractors: DINO's protocol (facebookresearch/dino
    ``eval_copy_detection.py``, commit 7c446df; README § Copy detection).

    - **Data**: queries are the ``strong`` block (229 images; a query's positives are the originals whose file name
      shares its first 4 characters); the database is the 157 ``original`` images plus the distractors (DINO: 10k
      random YFCC100M images). The whitening set is another 20k YFCC100M images. DINO queries the other blocks too:
      the originals themselves and, when present, ``jpegqual/<q>`` and ``crops/<c>`` (1:1 with the originals in
      sorted order), recorded as ``mAP_<block>``; the headline ``mAP`` is ``strong`` (what DINO and SDSSL report).
    - **Images**: resized to ``image_size`` x ``image_size`` (320; a square resize, aspect ratio not kept), bicubic,
      normalised with the encoder's mean/std (DINO's script: ImageNet's, which ImageNet-normalised encoders declare);
      the bottom/right remainder a patch size leaves (320 / 14) cropped, as DINO's patch convolution ignores it.
    - **Features**: ``forward_last``: the CLS token concatenated with the GeM pooling (p = ``gem_p`` = 4, inputs
      clamped at 1e-6) of the patch tokens; for an encoder without CLS the patch mean stands in (the contract's
      probe token). GeM is computed in fp32; features are cached in fp16 like every frozen-feature task.
    - **Whitening** (``whiten``): mean of the whitening features subtracted from queries and database; PCA of the
      whitening features' second moment (DINO: ``W^T W / n`` of the *uncentred* features), eigenvalues below 1e-5 of
      the largest clamped to it, projection onto the ``whitening_dim`` leading components (None: all, DINO) scaled
      by eigenvalue^-``whitening_power`` (0.5).
    - **Search**: L2-normalised features, cosine similarity, the ``top_k`` (20) nearest database items per query.
    - **Metric**: mean over queries of the Holidays trapezoid AP (``score_ap_from_ranks_1``) of the positives found
      in those ``top_k`` (a positive beyond rank 20 adds nothing), in percent.
    """

    NAME: ClassVar[str] = "dino-copydays"
    VERSION: ClassVar[int] = 1
    # 64 px keeps the smoke run at seconds; the tiny whitening set cannot span every dimension, so keep 16.
    SMOKE: ClassVar[dict] = {"image_size": 64, "whitening_dim": 16}

    image_size: int = 320
    gem_p: float = 4.0
    whiten: bool = True
    whitening_power: float = 0.5
    whitening_dim: int | None = None
    top_k: int = 20
