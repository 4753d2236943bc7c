"""The encoder contract every harness consumes, and the adapter base every method builds on.

A method adapter is mostly data: a :class:`Paper`, some :class:`Variant` rows (timm architecture, pinned
weights, which checkpoint key and prefixes the authors' files use, what may be dropped or missing), and at most
one :meth:`MethodAdapter.convert` override for checkpoints that need real conversion. The adapter turns an
official checkpoint into an :class:`Encoder`; harnesses only ever see the :class:`Encoder`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import timm
import torch
from torch import nn

from methods._names import did_you_mean
from methods.errors import CheckpointError, UnknownNameError, VitbenchError
from methods.weights import (
    LoadReport,
    check_pos_grid,
    load_strict,
    pin_status,
    read_checkpoint,
    resolve_weights,
    select_state_dict,
    sha256_file,
    strip_prefixes,
)
from methods.weights import resample_pos_embed as resample_pos_table

if TYPE_CHECKING:
    from methods.image_text import ImageText


# ------------------------------------------------------------------------------------------------ data classes
@dataclass(frozen=True)
class EncoderSpec:
    """Static facts about an encoder that harnesses need to build heads and necks.

    ``indices``/``channels``/``reductions`` describe :meth:`Encoder.forward_dense`: one entry per returned map.
    ``family`` is "vit" (plain, all reductions equal the patch size), "hierarchical" (multi-stage) or "cnn".
    ``global_pool`` says what :meth:`Encoder.forward_global` returns ("token" = normalised CLS token, "avg" =
    mean of patch tokens, "ca_head" = a class-attention head, ...). ``probe_pool`` says what the first feature of
    :meth:`Encoder.forward_probe` is per block: "token" (CLS) or "avg" for encoders without a class token.
    """

    arch: str
    family: str
    embed_dim: int
    num_blocks: int
    block_dim: int
    indices: tuple[int, ...]
    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    num_prefix_tokens: int
    size_divisor: int
    in_chans: int
    norm: bool
    global_pool: str = "token"
    probe_pool: str = "token"
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class BandStretch:
    """How a multispectral encoder's raw sensor values were scaled to [0, 1] in training, per band of its
    ``DataConfig.band_order`` (DINO-MM: SeCo's BigEarthNet statistics, S1 clipped to per-image quantiles).

    For band ``i``: if its name is in ``clip_bands``, values are first clipped to their per-image ``quantiles``; then
    ``[mean[i] - n_std * std[i], mean[i] + n_std * std[i]]`` maps linearly to [0, 255], values are clipped to that
    range, truncated to integers when ``quantize`` (the authors' ``astype(uint8)``), and divided by 255 (``ToTensor``).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_std: float = 2.0
    quantize: bool = True
    clip_bands: tuple[str, ...] = ()
    quantiles: tuple[float, float] = (0.01, 0.99)

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError(f"BandStretch: {len(self.mean)} means but {len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise ValueError("BandStretch: every std must be positive")


@dataclass(frozen=True)
class DataConfig:
    """Input preprocessing the weights expect. ``input_size`` is (C, H, W).

    Multispectral encoders also declare ``band_order`` (the channel order, by band name) and, where raw sensor values
    were scaled before ``mean``/``std``, ``band_scaling`` (one entry per band of ``band_order``); RGB encoders leave
    both None.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    band_order: tuple[str, ...] | None = None  # multispectral encoders (DINO-MM): the channel order
    band_scaling: BandStretch | None = None  # multispectral encoders: raw values -> [0, 1] before mean/std
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """As stored in records' probe cards; ``band_scaling`` only where declared (RGB records stay as they were)."""
        from dataclasses import asdict

        d = asdict(self)
        if d["band_scaling"] is None:
            del d["band_scaling"]
        return d


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str | None
    code_url: str | None
    venue: str = ""


@dataclass(frozen=True)
class OfficialLayout:
    """How the authors' checkpoint file holds a variant's weights: the inverse of what loading does, as data.

    A file in this layout is written from a state dict in our names (the model's keys, the global head's under
    ``global_head.``) as follows, and loading (select ``checkpoint_keys``, strip, :meth:`MethodAdapter.convert`,
    drop) must give the same encoder back; ``tests/methods/test_contract.py`` does exactly that for every layout.

    1. :meth:`MethodAdapter.to_official` renames the keys to the authors' names; every key then gains ``prefix``
       ("backbone.", "module.base_encoder.", "encoder.", "visual.").
    2. ``extra_weights``: names (as in the file, prefix included) of tensors stored next to the weights that are
       not the encoder's (projection heads, decoders, a classifier, CLIP's text tower); loading must drop them.
    3. ``copies``: other copies of the same network in the file, ``(top-level key, prefix)``, the key ``None``
       meaning "inside the weights' own entry" (DINO's DDP student, an EMA, MoCo's momentum encoder). A test
       writes them with other values, so a loader that picks the wrong copy gives other features.
    4. ``key``: the top-level entry that holds the result ("teacher", "state_dict", "model"); None: the file *is*
       the flat state dict. ``extras``: the file's other top-level entries, verbatim (epoch, an
       ``argparse.Namespace`` of args, optimizer state...): what the safe unpickler must get through.

    ``name`` tells the layouts of one variant apart ("backbone" file vs "training" checkpoint).
    """

    name: str
    key: str | None = None
    prefix: str = ""
    extra_weights: tuple[str, ...] = ()
    copies: tuple[tuple[str | None, str], ...] = ()
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Classifier:
    """The trained classification head a variant's authors released with it (supervised models, fine-tuned MIM).

    ``keys``: the head's parameter names in the built model (timm's names, after :meth:`MethodAdapter.convert`);
    ``num_classes``: its width; ``labels``: the label order its rows follow ("imagenet-1k": the 1,000 ILSVRC-2012
    wnids sorted, i.e. ImageFolder's order, in which every classifier here was trained). ``build(...,
    classifier=True)`` keeps these keys instead of dropping them, through the same strict loading.
    """

    keys: tuple[str, ...] = ("head.weight", "head.bias")
    num_classes: int = 1000
    labels: str = "imagenet-1k"


@dataclass(frozen=True)
class Variant:
    """One released (or described) model of a method.

    ``checkpoint_keys``: top-level keys tried in order to find the state dict ("teacher", "state_dict",
    "model"); a flat state dict always loads. ``strip_prefixes``: removed from keys in order ("module.",
    "backbone."). ``drop``: fnmatch patterns of file keys that are not part of the encoder (projection heads,
    predictors) — reported as dropped. ``allow_missing``: fnmatch patterns of model keys the file may lack.
    ``official_layouts``: the authors' file layouts this variant loads (see :class:`OfficialLayout`); the contract
    test writes and reloads each one, and fails for a variant that declares none. ``params_m``: parameters of the
    built encoder (global head included, classifier not) in millions, to 0.1 M: lets tests size a variant without
    building it (the contract test checks the number). ``sha256``: the release file's full sha256 where its authors
    publish one; ``digest_prefix``: only a prefix is published, ``"sha256:cd65a155"`` (torch.hub file names) or
    ``"md5:8cad7c"`` (a README), verified as a prefix. ``pos_embed_grids``: sides of the position-table grids the
    authors' files carry besides the model's own (SP-ViT's 384-px fine-tunes: 24); only those are resampled at load.
    ``classifier``: the released classification head, if any (:class:`Classifier`); None for backbone-only releases.
    ``finetune_recipe``: the family of the end-to-end ImageNet fine-tuning recipe the weights' paper reports ("mae",
    "ibot", "mfm", "deit": ``imagenet-finetune``'s ``recipe=auto`` picks that family's recipe for the encoder's
    width); None: the paper publishes none of its own.
    """

    name: str
    arch: str
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    weights_url: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    license: str = ""
    checkpoint_keys: tuple[str, ...] = ()
    strip_prefixes: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    allow_missing: tuple[str, ...] = ()
    dense_indices: tuple[int, ...] | None = None
    data_config: Mapping[str, Any] = field(default_factory=dict)
    released: bool = True
    notes: str = ""
    official_layouts: tuple[OfficialLayout, ...] = ()
    params_m: float | None = None
    digest_prefix: str | None = None
    pos_embed_grids: tuple[int, ...] = ()
    classifier: Classifier | None = None
    finetune_recipe: str | None = None


@dataclass(frozen=True)
class EncoderIdentity:
    """Who an encoder is and where its weights came from; copied into every result record."""

    method: str
    variant: str
    arch: str
    weights_source: str  # "random", a path, a URL or a hub id
    weights_sha256: str | None
    weights_file: str | None
    load_report: LoadReport | None
    seed: int = 0

    @property
    def weights_id(self) -> str:
        """A string that identifies the weights (for cache keys): the sha256, or method, variant, arch and seed if
        random — two adapters can share a timm arch (DINO and SelfPatch are both ``vit_small_patch16_224``) yet
        build different models, so the arch alone would let one reuse the other's cached features."""
        return self.weights_sha256 or f"random:{self.method}:{self.variant}:{self.arch}:seed{self.seed}"


# ------------------------------------------------------------------------------------------------ the encoder
class Encoder(nn.Module):
    """The one interface every harness consumes.

    - :meth:`forward_global` ``[B, C, H, W] -> [B, D]`` (``D = spec.embed_dim``): the image embedding.
    - :meth:`forward_dense` ``[B, C, H, W] -> list of [B, C_i, H/r_i, W/r_i]`` (``spec.channels/reductions``).
    - :meth:`forward_probe` ``[B, C, H, W] -> ([B, K, d], [B, K, d])``: per requested block, the probe token
      (normalised CLS, or the patch mean when there is no CLS) and the mean of the normalised patch tokens.
    - :meth:`forward_tokens` ``[B, C, H, W] -> [B, n_last, d]``: the DINO "CLS of the last n blocks".
    - :meth:`forward_last` ``[B, C, H, W] -> ([B, d], [B, d, H/r, W/r])``: the last block after the final norm, as
      probe token and patch map (DINO's video segmentation and copy detection features).
    - :meth:`attention_maps` / :meth:`forward_cam`: ``forward_global`` plus what an explanation weighs by gradients
      (per-block attention probabilities of token-attention encoders; the final feature map for Grad-CAM).
    - :meth:`forward_logits` ``[B, C, H, W] -> [B, classifier.num_classes]``: the released classifier's logits, for
      an encoder built with ``classifier=True`` (``classifier`` says which head and label order).
    - :meth:`image_text` (optional, :attr:`has_image_text`): the encoder's image and text towers in one embedding
      space (CLIP), for prompt-learning and zero-shot tasks; built on first use.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: EncoderSpec,
        data_config: DataConfig,
        identity: EncoderIdentity,
        global_head: nn.Module | None = None,
        classifier: Classifier | None = None,
        image_text: Callable[[], ImageText] | None = None,
    ) -> None:
        super().__init__()
        # Any: timm models have a dynamic public API (forward_features/forward_head/forward_intermediates/
        # feature_info) that nn.Module's typing (`__getattr__ -> Tensor | Module`) cannot express.
        self.model: Any = model
        self.global_head = global_head
        self.classifier = classifier
        self.spec = spec
        self.data_config = data_config
        self.identity = identity
        self._image_text_factory = image_text
        self._image_text: tuple[ImageText, ...] = ()  # a tuple: built lazily, not part of the encoder's state dict

    @property
    def has_image_text(self) -> bool:
        """Whether :meth:`image_text` exists for this encoder (known without building anything)."""
        return self._image_text_factory is not None

    def image_text(self) -> ImageText:
        """The encoder's :class:`~methods.image_text.ImageText` towers from the same weights, frozen, in eval mode,
        on the encoder's device; built (and the checkpoint read again) on the first call. Raises
        :class:`VitbenchError` for an encoder without a text tower."""
        if self._image_text_factory is None:
            i = self.identity
            raise VitbenchError(
                f"{i.method}:{i.variant} has no text tower: this task needs an encoder with one (CLIP, e.g. "
                "dualcoop:rn50)"
            )
        if not self._image_text:
            built = self._image_text_factory()
            device = next(self.model.parameters()).device
            self._image_text = (built.to(device).eval().requires_grad_(False),)
        return self._image_text[0]

    # The harness contract ---------------------------------------------------------------------------------
    def forward_global(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, spec.embed_dim]``."""
        feats = self.model.forward_features(x)
        if self.global_head is not None:
            return self.global_head(feats)
        return self.model.forward_head(feats, pre_logits=True)

    def forward_dense(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W] -> [[B, spec.channels[i], H / spec.reductions[i], W / spec.reductions[i]], ...]``."""
        return self.model.forward_intermediates(
            x, indices=list(self.spec.indices), norm=self.spec.norm, output_fmt="NCHW", intermediates_only=True
        )

    def forward_probe(self, x: torch.Tensor, blocks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per block in ``blocks``: ``(probe token [B, K, d], mean patch token [B, K, d])`` with final norm applied."""
        if self.spec.family == "vit":
            with_prefix = self.spec.num_prefix_tokens > 0  # timm returns bare tensors when there are none
            outs = self.model.forward_intermediates(
                x,
                indices=list(blocks),
                norm=True,
                output_fmt="NLC",
                return_prefix_tokens=with_prefix,
                intermediates_only=True,
            )
            patches = [o[0] for o in outs] if with_prefix else outs  # each [B, N, d]
            avg = torch.stack([p.mean(dim=1) for p in patches], dim=1)
            if self.spec.probe_pool == "token":
                return torch.stack([prefix[:, 0] for _, prefix in outs], dim=1), avg
            return avg, avg
        # Hierarchical/CNN: "blocks" are stages, globally average-pooled. Stages differ in width, so only stages of
        # one width can be stacked; harnesses group their requests by width (see EncoderSpec / probe_widths).
        outs = self.model.forward_intermediates(x, indices=list(blocks), output_fmt="NCHW", intermediates_only=True)
        widths = {o.shape[1] for o in outs}
        if len(widths) > 1:
            raise ValueError(
                f"forward_probe: stages {list(blocks)} differ in width {sorted(widths)}; "
                "request stages of one width at a time"
            )
        avg = torch.stack([o.mean(dim=(2, 3)) for o in outs], dim=1)
        return avg, avg

    def probe_widths(self, blocks: list[int]) -> list[int]:
        """Width ``d`` of :meth:`forward_probe`'s features for each block (ViT: all equal; stages: per stage)."""
        if self.spec.family == "vit":
            return [self.spec.block_dim] * len(blocks)
        info = self.model.feature_info
        return [int(info[b]["num_chs"]) for b in blocks]

    def forward_tokens(self, x: torch.Tensor, n_last: int) -> torch.Tensor:
        """``[B, C, H, W] -> [B, n_last, d]``: the probe token of each of the last ``n_last`` blocks."""
        blocks = list(range(self.spec.num_blocks - n_last, self.spec.num_blocks))
        return self.forward_probe(x, blocks)[0]

    def forward_last(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, H, W] -> (token [B, d], patches [B, d, H/r, W/r])``: the last block's output after the final norm
        (DINO's ``get_intermediate_layers(x, n=1)``), split into the probe token (CLS, or the patch mean without
        one) and the patch-token map, in one pass. Any input size the encoder takes: plain ViTs resample their
        position table to the input's grid (``dynamic_img_size``). Hierarchical/CNN: the last stage and its mean."""
        last = [self.spec.num_blocks - 1]
        if self.spec.family != "vit":
            (fmap,) = self.model.forward_intermediates(x, indices=last, output_fmt="NCHW", intermediates_only=True)
            return fmap.mean(dim=(2, 3)), fmap
        with_prefix = self.spec.num_prefix_tokens > 0  # timm returns bare tensors when there are none
        (out,) = self.model.forward_intermediates(
            x, indices=last, norm=True, output_fmt="NCHW", return_prefix_tokens=with_prefix, intermediates_only=True
        )
        patches, prefix = out if with_prefix else (out, None)
        if self.spec.probe_pool == "token" and prefix is not None:
            return prefix[:, 0], patches
        return patches.mean(dim=(2, 3)), patches

    # Explanations (gradient-weighted attention rollout, Grad-CAM) ---------------------------------------------
    def _attention_modules(self) -> list[Any]:
        """Modules whose ``attn_drop`` child receives the attention probabilities (timm's convention, followed by
        every token-attention architecture here). Only plain ViTs have token attention over the whole image:
        hierarchical encoders' window attention is not a map over the image's tokens."""
        if self.spec.family != "vit":
            return []
        return [m for m in self.model.modules() if isinstance(getattr(m, "attn_drop", None), nn.Module)]

    @property
    def has_token_attention(self) -> bool:
        """Whether :meth:`attention_maps` applies (otherwise explain the encoder with :meth:`forward_cam`)."""
        return bool(self._attention_modules())

    def attention_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(forward_global(x) [B, D], maps)``: ``maps`` holds, per attention block in the order they ran, the
        attention probabilities ``[B, heads, N_q, N_k]`` (rows sum to 1; ``N`` = the tokens that block sees, so a
        block that runs before the CLS token joins has no prefix row).

        Forward hooks on each attention module's ``attn_drop`` record the probabilities it passes on; fused attention
        (``fused_attn``, which never materialises the probabilities, so hooks there would never fire) is switched
        off for this call only. The maps stay in the autograd graph: with ``x.requires_grad_()``,
        ``torch.autograd.grad(score, maps)`` gives the gradients that gradient-weighted rollout multiplies them by.
        """
        modules: list[Any] = self._attention_modules()  # Any: their attn_drop / fused_attn are not typed on nn.Module
        if not modules:
            raise ValueError(f"{self!r} ({self.spec.family}) has no token attention; explain it with forward_cam")
        maps: list[torch.Tensor] = []
        handles = [m.attn_drop.register_forward_hook(lambda _m, _i, out: maps.append(out)) for m in modules]
        fused = [(m, m.fused_attn) for m in modules if hasattr(m, "fused_attn")]
        try:
            for m, _ in fused:
                m.fused_attn = False
            g = self.forward_global(x)
        finally:
            for h in handles:
                h.remove()
            for m, was in fused:
                m.fused_attn = was
        if len(maps) != len(modules):
            raise RuntimeError(f"{self!r}: {len(maps)} of {len(modules)} attention hooks fired")
        return g, maps

    def forward_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward_global(x) [B, D], fmap [B, C, h, w])`` in one graph: ``fmap`` is the final feature map the
        global embedding is computed from (Grad-CAM's activations); token outputs are reshaped to the patch grid
        ``(H / spec.size_divisor, W / spec.size_divisor)`` without their prefix tokens. A CLS-token embedding
        (``spec.global_pool == "token"``) does not depend on the final patch tokens, so their gradient is 0:
        explain such encoders with :meth:`attention_maps`."""
        feats = self.model.forward_features(x)
        fmap = feats
        if feats.ndim == 3:  # [B, P + h*w, D]: the map is the patch tokens; the head reads them back from it
            h, w = x.shape[-2] // self.spec.size_divisor, x.shape[-1] // self.spec.size_divisor
            n_prefix = feats.shape[1] - h * w
            fmap = feats[:, n_prefix:].transpose(1, 2).reshape(feats.shape[0], -1, h, w)
            feats = torch.cat([feats[:, :n_prefix], fmap.flatten(2).transpose(1, 2)], dim=1)
        g = self.global_head(feats) if self.global_head is not None else self.model.forward_head(feats, pre_logits=True)
        return g, fmap

    def layer_ids(self) -> dict[str, int]:
        """Depth of every parameter for layer-wise lr decay (BEiT's numbering), by this module's parameter names.

        ``i + 1`` for the parameters of block (stage) ``i`` of the ``spec.num_blocks`` that ``feature_info`` names,
        0 for those registered before the first (patch and position embeddings, prefix tokens, a stem),
        ``spec.num_blocks + 1`` for those after the last (a final norm, the global head).
        """
        blocks = [f"model.{f['module']}." for f in self.model.feature_info]
        out: dict[str, int] = {}
        after = False
        for name, _ in self.named_parameters():
            layer = next((i + 1 for i, b in enumerate(blocks) if name.startswith(b)), None)
            after = after or layer is not None
            out[name] = layer if layer is not None else (len(blocks) + 1 if after else 0)
        return out

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, classifier.num_classes]``: the model's own head on its features, as the authors'
        eval scripts compute it (SP-ViT: ``head(cls) + 0.5 * max aux_head(patches)``)."""
        if self.classifier is None:
            i = self.identity
            raise VitbenchError(f"{i.method}:{i.variant} was built without its classifier (build(classifier=True))")
        model: Any = self.model  # a timm model (nn.Module's attribute typing hides its methods)
        return model.forward_head(model.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_global(x)

    # Set by MethodAdapter.build: builds the variant's timm model with extra kwargs (num_classes, drop_path_rate...).
    model_factory: Callable[..., nn.Module] | None = None
    # Set by MethodAdapter.build from Variant.finetune_recipe: the fine-tuning recipe family of the weights' paper.
    finetune_recipe: str | None = None

    def finetune_model(
        self, num_classes: int, *, global_pool: str | None = None, drop_path_rate: float = 0.0
    ) -> tuple[nn.Module, LoadReport]:
        """A trainable timm classifier ``[B, C, H, W] -> [B, num_classes]`` with this encoder's weights: a fresh
        ``num_classes`` head, stochastic depth ``drop_path_rate``, and ``global_pool`` ("avg" / "token"; None keeps
        the encoder's). For a plain ViT "avg" follows timm's rule, as BEiT/MAE fine-tune: a fresh ``fc_norm`` on the
        mean patch token, the pretrained final ``norm`` unused. Being a timm model it has ``group_matcher`` (block
        index of every parameter), which ``timm.optim.create_optimizer_v2(model, layer_decay=...)`` uses. Loading is
        strict: only the head (and ``fc_norm``/``norm`` when the pooling changes) may differ, as the report says."""
        if self.classifier is not None:
            i = self.identity
            raise CheckpointError(
                f"{i.method}:{i.variant} was built with its released classifier (classifier=True); fine-tune from the "
                "backbone encoder (built without it), which gets a fresh head"
            )
        if self.model_factory is None or self.global_head is not None or getattr(self.model, "num_classes", None):
            raise CheckpointError(
                f"{self.identity.method}:{self.identity.variant}: forward_global is not timm's pooled feature "
                f"({self.spec.global_pool}); this encoder cannot be fine-tuned through a fresh timm head"
            )
        kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_path_rate": drop_path_rate}
        if global_pool is not None:
            kwargs["global_pool"] = global_pool
            if self.spec.family == "vit":
                kwargs["fc_norm"] = None  # timm's default: a norm on pooled patch tokens, none on the CLS
        model = self.model_factory(**kwargs)
        new = set(model.state_dict())
        # The fresh head: every Linear to num_classes (LV-ViT / SP-ViT add a token-labelling aux_head).
        head = {
            f"{n}.*" for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes
        }
        report = load_strict(
            model,
            self.model.state_dict(),
            drop=["norm.*"] if "norm.weight" not in new else [],
            allow_missing=[*head, *(["fc_norm.*"] if global_pool is not None else [])],
            what=f"{self.identity.method}:{self.identity.variant} classifier",
        )
        return model.train().requires_grad_(True), report

    def __repr__(self) -> str:  # nn.Module's repr prints every layer: too much for logs
        i = self.identity
        return f"Encoder({i.method}:{i.variant}, arch={i.arch}, weights={i.weights_source})"


# ------------------------------------------------------------------------------------------------ adapters
_PLAIN_VIT = re.compile(r"(^|_)(vit|deit|spvit)_")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _quarter_indices(depth: int) -> tuple[int, ...]:
    """Blocks at 1/3, 1/2, 2/3 and the end: (3, 5, 7, 11) for 12 blocks, as SelfPatch/XCiT detection uses."""
    return tuple(sorted({max(0, round(depth * f) - 1) for f in (1 / 3, 1 / 2, 2 / 3, 1.0)}))


class MethodAdapter:
    """Base class of every method adapter. Subclasses set the class attributes; few override a method."""

    name: ClassVar[str]
    paper: ClassVar[Paper]
    variants: ClassVar[tuple[Variant, ...]]
    lane: ClassVar[str] = "self-supervised"  # or "supervised", "multimodal", "generative"
    global_pool: ClassVar[str] = "token"
    dense_norm: ClassVar[bool] = False  # apply the final norm to forward_dense maps

    # -- variants ---------------------------------------------------------------------------------------------
    def variant(self, name: str | None = None) -> Variant:
        if name is None:
            return self.variants[0]
        for v in self.variants:
            if v.name == name:
                return v
        names = [v.name for v in self.variants]
        raise UnknownNameError(f"unknown variant '{name}' of method '{self.name}'{did_you_mean(name, names)}")

    # -- hooks a subclass may override ------------------------------------------------------------------------
    def create_model(self, variant: Variant) -> nn.Module:
        """Build the bare timm model (no classifier). ViTs get ``dynamic_img_size`` like DINO's own ViT."""
        kwargs: dict[str, Any] = {"num_classes": 0, **variant.model_kwargs}
        if _PLAIN_VIT.search(variant.arch):  # vit_*, deit_*, spvit_*, sgt_vit_* (not gcvit_*: windows fix its size)
            kwargs.setdefault("dynamic_img_size", True)
        return timm.create_model(variant.arch, pretrained=False, **kwargs)

    def create_global_head(self, variant: Variant, model: nn.Module) -> nn.Module | None:
        """An extra module that turns ``forward_features`` into the global embedding (None: timm's own head)."""
        return None

    def has_image_text(self, variant: Variant) -> bool:
        """Whether ``variant`` has a text tower (:meth:`Encoder.image_text`); known without building anything."""
        return False

    def create_image_text(self, variant: Variant, weights: Path | None, seed: int) -> ImageText:
        """Build the image-text towers of ``variant`` from the checkpoint at ``weights`` (None: random, seeded by
        ``seed``). Called by :meth:`Encoder.image_text` on first use, only where :meth:`has_image_text`."""
        raise VitbenchError(f"{self.name}:{variant.name} has no text tower")

    def convert(self, sd: dict[str, torch.Tensor], variant: Variant) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Turn the authors' key layout into timm's. Return the new dict and one line per conversion done."""
        return sd, []

    def to_official(self, sd: dict[str, torch.Tensor], variant: Variant) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`convert`: our key layout -> the authors' (before :attr:`OfficialLayout.prefix`).

        ``convert(to_official(sd))`` must load into a model that computes the same function as ``sd`` does (the
        tensors may differ where the authors' layout has fewer degrees of freedom, e.g. MFM's absent key bias).
        Override it together with :meth:`convert`; adapters whose authors use timm's names keep this identity.
        """
        return dict(sd)

    def load_weights(
        self,
        model: nn.Module,
        head: nn.Module | None,
        ckpt: Any,
        variant: Variant,
        path: Path | str,
        classifier: bool = False,
        *,
        resample_pos_embed: bool = False,
    ) -> LoadReport:
        """Select, strip, drop, convert and strictly load the checkpoint into ``model`` (and ``head``). With
        ``classifier`` the model has the released head, whose keys the file must hold at the declared width.

        A position table of another grid loads only if a variant of this method declares that grid
        (``Variant.pos_embed_grids``) or ``resample_pos_embed`` is set (checked before :meth:`convert`, which may
        resample it itself); non-finite values and integer-to-float casts are refused (:func:`load_strict`)."""
        sd, key = select_state_dict(ckpt, variant.checkpoint_keys, path)
        sd, used = strip_prefixes(sd, variant.strip_prefixes)
        what = f"{self.name}:{variant.name} ({variant.arch})"
        grids = {g for v in self.variants for g in v.pos_embed_grids}
        # On the file's own table: an adapter's convert may resample it (DINO-MM, SP-ViT), or first rename it (SDSSL).
        had_table = "pos_embed" in sd
        foreign = check_pos_grid(sd, model, grids, requested=resample_pos_embed, path=path, what=what)
        sd, converted = self.convert(sd, variant)
        if not had_table:
            foreign = check_pos_grid(sd, model, grids, requested=resample_pos_embed, path=path, what=what)
        if classifier and variant.classifier is not None:
            _check_classifier(sd, variant.classifier, f"{self.name}:{variant.name}", path)
        report = LoadReport(checkpoint_key=key, stripped_prefixes=used, converted=[*foreign, *converted])
        report.resample_pos_embed = resample_pos_embed
        report.converted += resample_pos_table(sd, model, getattr(model, "num_prefix_tokens", 0))
        head_sd = {k: v for k, v in sd.items() if k.startswith("global_head.")}
        sd = {k: v for k, v in sd.items() if not k.startswith("global_head.")}
        load_strict(
            model,
            sd,
            drop=variant.drop,
            allow_missing=variant.allow_missing,
            path=path,
            what=what,
            report=report,
        )
        if head is not None:  # after the backbone, whose errors say more about a wrong file
            wrapped = nn.ModuleDict({"global_head": head})
            load_strict(wrapped, head_sd, path=path, what=f"{self.name}:{variant.name} head", report=report)
        return report

    # -- spec -------------------------------------------------------------------------------------------------
    def make_spec(self, model: nn.Module, variant: Variant, head: nn.Module | None) -> EncoderSpec:
        info: list[dict[str, Any]] = model.feature_info  # type: ignore[assignment]  # timm's FeatureInfo list
        reductions = [int(f["reduction"]) for f in info]
        family = "vit" if len(set(reductions)) == 1 and hasattr(model, "blocks") else "hierarchical"
        num_blocks = len(info)
        if variant.dense_indices is not None:
            indices = tuple(variant.dense_indices)
        elif family == "vit":
            indices = _quarter_indices(num_blocks)
        else:
            indices = tuple(range(num_blocks))
        npt = int(getattr(model, "num_prefix_tokens", 0))
        embed_dim = int(getattr(head, "embed_dim", 0) or cast(int, model.num_features))
        return EncoderSpec(
            arch=variant.arch,
            family=family,
            embed_dim=embed_dim,
            num_blocks=num_blocks,
            block_dim=int(info[-1]["num_chs"]),
            indices=indices,
            channels=tuple(int(info[i]["num_chs"]) for i in indices),
            reductions=tuple(reductions[i] for i in indices),
            num_prefix_tokens=npt,
            size_divisor=max(reductions),
            in_chans=int(variant.model_kwargs.get("in_chans", 3)),
            norm=self.dense_norm,
            global_pool="ca_head"
            if head is not None
            else (str(variant.model_kwargs.get("global_pool", self.global_pool)) if family == "vit" else "avg"),
            probe_pool="token" if (family == "vit" and getattr(model, "cls_token", None) is not None) else "avg",
            notes=variant.notes,
        )

    def make_data_config(self, model: nn.Module, variant: Variant) -> DataConfig:
        """ImageNet statistics, bicubic, crop 0.875 at the model's native size (DINO/MAE/iBOT's eval transform);
        a variant overrides any field. timm's own pretrained cfg is not used: it describes timm's weights."""
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        img_size = getattr(getattr(model, "patch_embed", None), "img_size", None) or (224, 224)
        merged: dict[str, Any] = {
            "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD,
            "input_size": (int(variant.model_kwargs.get("in_chans", 3)), *map(int, img_size)),
            "interpolation": "bicubic",
            "crop_pct": 0.875,
        }
        merged.update(variant.data_config)
        for k in ("mean", "std", "input_size", "band_order"):
            if merged.get(k) is not None:
                merged[k] = tuple(merged[k])
        return DataConfig(**merged)

    # -- the public entry point -------------------------------------------------------------------------------
    def build(
        self,
        variant: str | None = None,
        weights: str | Path | None = None,
        seed: int = 0,
        classifier: bool = False,
        *,
        resample_pos_embed: bool = False,
    ) -> Encoder:
        """Build the encoder of ``variant`` with ``weights``: a path, URL, hub id, "random", or None (pinned URL).
        ``classifier``: keep the released classification head (:attr:`Variant.classifier`) for
        :meth:`Encoder.forward_logits`; refused for a variant whose authors released none. ``resample_pos_embed``:
        load a position table of any grid, resampled (the load report says so)."""
        v = self.variant(variant)
        if classifier and v.classifier is None:
            with_head = [x.name for x in self.variants if x.classifier is not None]
            hint = f"; variants with one: {', '.join(with_head)}" if with_head else ""
            raise CheckpointError(
                f"{self.name}:{v.name} has no released classification head (a backbone-only release){hint}; "
                "evaluate backbones with --task linear or knn"
            )
        if weights is None:  # checked before building: a ViT-H takes a while to initialise
            if not v.released or not v.weights_url:
                raise CheckpointError(
                    f"{self.name}:{v.name} has no public weights to download; pass --weights PATH "
                    "(or --weights random for a smoke run)"
                )
            weights = v.weights_url
        torch.manual_seed(seed)  # "random" weights are reproducible per seed
        built = v
        if classifier and v.classifier is not None:  # the same architecture with the released head's width
            built = replace(v, model_kwargs={**v.model_kwargs, "num_classes": v.classifier.num_classes})
        model = self.create_model(built)
        head = self.create_global_head(v, model)
        report: LoadReport | None = None
        sha: str | None = None
        file_name: str | None = None
        source = str(weights)
        path: Path | None = None
        if source != "random":
            release = source == v.weights_url  # the pinned download: a file that does not match is refused
            path = resolve_weights(source, v.sha256 if release else None, v.digest_prefix if release else None)
            sha = sha256_file(path)
            integrity = pin_status(path, sha, v.sha256, v.digest_prefix, enforce=release)
            ckpt = read_checkpoint(path)
            report = self.load_weights(
                model, head, ckpt, v, path, classifier=classifier, resample_pos_embed=resample_pos_embed
            )
            report.integrity = integrity
            file_name = path.name
            if not _SCHEME_RE.match(source) and not source.startswith("hf-hub:"):
                source = str(path)
        model.eval()
        if head is not None:
            head.eval()
        identity = EncoderIdentity(self.name, v.name, v.arch, source, sha, file_name, report, seed)
        image_text = partial(self.create_image_text, v, path, seed) if self.has_image_text(v) else None
        spec, data_config = self.make_spec(model, v, head), self.make_data_config(model, v)
        enc = Encoder(model, spec, data_config, identity, head, v.classifier if classifier else None, image_text)
        enc.model_factory = partial(self._create_with, v)
        enc.finetune_recipe = v.finetune_recipe
        return enc.eval().requires_grad_(False)

    def _create_with(self, v: Variant, **kwargs: Any) -> nn.Module:
        return self.create_model(replace(v, model_kwargs={**v.model_kwargs, **kwargs}))

    # -- listing ----------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lane": self.lane,
            "paper": {
                "title": self.paper.title,
                "arxiv": self.paper.arxiv,
                "code_url": self.paper.code_url,
                "venue": self.paper.venue,
            },
            "variants": [
                {
                    "name": v.name,
                    "arch": v.arch,
                    "weights_url": v.weights_url,
                    "sha256": v.sha256,
                    "digest_prefix": v.digest_prefix,
                    "license": v.license,
                    "released": v.released,
                    "classifier": None
                    if v.classifier is None
                    else {"num_classes": v.classifier.num_classes, "labels": v.classifier.labels},
                    "finetune_recipe": v.finetune_recipe,
                    "notes": v.notes,
                }
                for v in self.variants
            ],
        }


def _check_classifier(sd: Mapping[str, torch.Tensor], c: Classifier, what: str, path: Path | str) -> None:
    """One line for a file without the released head, or with a head of another width, before the strict load."""
    absent = [k for k in c.keys if k not in sd]
    if absent:
        raise CheckpointError(
            f"{path}: no classifier head in this checkpoint ({', '.join(absent)} absent): {what} needs the file its "
            "authors released with the head (the pretrained backbone alone cannot classify); pass that checkpoint, "
            "or evaluate the backbone with --task linear"
        )
    width = int(sd[c.keys[0]].shape[0])
    if width != c.num_classes:
        raise CheckpointError(
            f"{path}: the classifier head {c.keys[0]} has {width} classes, but {what}'s released head has "
            f"{c.num_classes} ({c.labels}); pass the checkpoint with the {c.num_classes}-class head"
        )


def with_variant(v: Variant, **changes: Any) -> Variant:
    """A copy of ``v`` with ``changes``: lets an adapter derive similar variants without repeating fields.

    A new ``weights_url`` is another file: ``v``'s pins (``sha256``, ``digest_prefix``) do not carry over to it
    unless ``changes`` gives them again (an inherited pin would refuse the authors' own file, or vouch for it)."""
    if changes.get("weights_url", v.weights_url) != v.weights_url:
        changes.setdefault("sha256", None)
        changes.setdefault("digest_prefix", None)
    return replace(v, **changes)
