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
from typing import TYPE_CHECKING, Any, ClassVar

import timm
import torch
from torch import nn

from methods._names import did_you_mean
from methods.errors import CheckpointError, UnknownNameError, VitbenchError
from methods.weights import (
    LoadReport,
    is_url,
    load_strict,
    read_checkpoint,
    resample_pos_embed,
    resolve_weights,
    select_state_dict,
    sha256_file,
    strip_prefixes,
)

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
class DataConfig:
    """Input preprocessing the weights expect. ``input_size`` is (C, H, W)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    band_order: tuple[str, ...] | None = None  # multispectral encoders (DINO-MM): the channel order
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


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
class Variant:
    """One released (or described) model of a method.

    ``checkpoint_keys``: top-level keys tried in order to find the state dict ("teacher", "state_dict",
    "model"); a flat state dict always loads. ``strip_prefixes``: removed from keys in order ("module.",
    "backbone."). ``drop``: fnmatch patterns of file keys that are not part of the encoder (projection heads,
    predictors) — reported as dropped. ``allow_missing``: fnmatch patterns of model keys the file may lack.
    ``official_layouts``: the authors' file layouts this variant loads (see :class:`OfficialLayout`); the contract
    test writes and reloads each one, and fails for a variant that declares none. ``params_m``: parameters of the
    built encoder (global head included, classifier not) in millions, to 0.1 M: lets tests size a variant without
    building it (the contract test checks the number).
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
        image_text: Callable[[], ImageText] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.global_head = global_head
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_global(x)

    def __repr__(self) -> str:  # nn.Module's repr prints every layer: too much for logs
        i = self.identity
        return f"Encoder({i.method}:{i.variant}, arch={i.arch}, weights={i.weights_source})"


# ------------------------------------------------------------------------------------------------ adapters
_PLAIN_VIT = re.compile(r"(^|_)(vit|deit|spvit)_")


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
        self, model: nn.Module, head: nn.Module | None, ckpt: Any, variant: Variant, path: Path | str
    ) -> LoadReport:
        """Select, strip, drop, convert and strictly load the checkpoint into ``model`` (and ``head``)."""
        sd, key = select_state_dict(ckpt, variant.checkpoint_keys, path)
        sd, used = strip_prefixes(sd, variant.strip_prefixes)
        sd, converted = self.convert(sd, variant)
        report = LoadReport(checkpoint_key=key, stripped_prefixes=used, converted=list(converted))
        report.converted += resample_pos_embed(sd, model, getattr(model, "num_prefix_tokens", 0))
        head_sd = {k: v for k, v in sd.items() if k.startswith("global_head.")}
        sd = {k: v for k, v in sd.items() if not k.startswith("global_head.")}
        load_strict(
            model,
            sd,
            drop=variant.drop,
            allow_missing=variant.allow_missing,
            path=path,
            what=f"{self.name}:{variant.name} ({variant.arch})",
            report=report,
        )
        if head is not None:  # after the backbone, whose errors say more about a wrong file
            wrapped = nn.ModuleDict({"global_head": head})
            load_strict(wrapped, head_sd, path=path, what=f"{self.name}:{variant.name} head", report=report)
        return report

    # -- spec -------------------------------------------------------------------------------------------------
    def make_spec(self, model: nn.Module, variant: Variant, head: nn.Module | None) -> EncoderSpec:
        info = model.feature_info
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
        embed_dim = int(getattr(head, "embed_dim", 0) or model.num_features)
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
            global_pool="ca_head" if head is not None else (self.global_pool if family == "vit" else "avg"),
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
    def build(self, variant: str | None = None, weights: str | Path | None = None, seed: int = 0) -> Encoder:
        """Build the encoder of ``variant`` with ``weights``: a path, URL, hub id, "random", or None (pinned URL)."""
        v = self.variant(variant)
        if weights is None:  # checked before building: a ViT-H takes a while to initialise
            if not v.released or not v.weights_url:
                raise CheckpointError(
                    f"{self.name}:{v.name} has no public weights to download; pass --weights PATH "
                    "(or --weights random for a smoke run)"
                )
            weights = v.weights_url
        torch.manual_seed(seed)  # "random" weights are reproducible per seed
        model = self.create_model(v)
        head = self.create_global_head(v, model)
        report: LoadReport | None = None
        sha: str | None = None
        file_name: str | None = None
        source = str(weights)
        path: Path | None = None
        if source != "random":
            path = resolve_weights(source, v.sha256 if is_url(source) else None)
            sha = sha256_file(path)
            file_name = path.name
            report = self.load_weights(model, head, read_checkpoint(path), v, path)
            if not is_url(source):
                source = str(path)
        model.eval()
        if head is not None:
            head.eval()
        identity = EncoderIdentity(self.name, v.name, v.arch, source, sha, file_name, report, seed)
        image_text = partial(self.create_image_text, v, path, seed) if self.has_image_text(v) else None
        enc = Encoder(
            model, self.make_spec(model, v, head), self.make_data_config(model, v), identity, head, image_text
        )
        return enc.eval().requires_grad_(False)

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
                    "license": v.license,
                    "released": v.released,
                    "notes": v.notes,
                }
                for v in self.variants
            ],
        }


def with_variant(v: Variant, **changes: Any) -> Variant:
    """A copy of ``v`` with ``changes``: lets an adapter derive similar variants without repeating fields."""
    return replace(v, **changes)
