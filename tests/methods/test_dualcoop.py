"""DualCoOp's image encoder: OpenAI CLIP RN50/RN101 weights -> timm ``resnet*_clip``.

The reference is a separate implementation of CLIP's ``ModifiedResNet`` with OpenAI's module names (written from
openai/CLIP ``clip/model.py``, which DualCoOp vendors), so the checkpoints below have the exact released key layout.
OpenAI ships TorchScript archives; one is made here with ``torch.jit.trace`` and must load without ``torch.jit.load``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods import CheckpointError, build_encoder, get_adapter
from tests.methods._official import assert_declared_layout

X = torch.randn(2, 3, 64, 64)  # stages at strides 4..32: 16, 8, 4, 2
TEXT_KEYS = [
    "positional_embedding",
    "text_projection",
    "logit_scale",
    "token_embedding.weight",
    "ln_final.weight",
    "ln_final.bias",
    "transformer.resblocks.0.attn.in_proj_weight",
    "transformer.resblocks.0.ln_1.weight",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small batches of small maps: on shared cores, intra-op threads cost more in synchronisation than they save."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Bottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()  # anti-aliased stride after conv2
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * 4)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.avgpool(F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class _AttentionPool2d(nn.Module):
    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj, self.q_proj, self.v_proj = (nn.Linear(embed_dim, embed_dim) for _ in range(3))
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0) + self.positional_embedding[:, None, :]
        x, _ = F.multi_head_attention_forward(
            query=x,
            key=x,
            value=x,
            embed_dim_to_check=x.shape[-1],
            num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight,
            v_proj_weight=self.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True,
            training=False,
            need_weights=False,
        )
        return x[0]


class _ModifiedResNet(nn.Module):
    """CLIP's visual tower: 3-conv stem + avgpool, anti-aliased bottlenecks, attention pool."""

    def __init__(self, layers: tuple[int, ...], output_dim: int, heads: int = 32, width: int = 64) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv2, self.bn2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv3, self.bn3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for i, n in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            blocks = [_Bottleneck(inplanes, planes, stride)] + [_Bottleneck(planes * 4, planes) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes * 4
        self.attnpool = _AttentionPool2d(224 // 32, width * 32, heads, output_dim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs (what forward_dense must return)."""
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        x, feats = self.avgpool(x), []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            feats.append(x)
        return feats


class _CLIP(nn.Module):
    """Enough of CLIP for OpenAI's archive layout: the visual tower, text-tower tensors and three scalars."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.positional_embedding = nn.Parameter(torch.randn(77, 16))
        self.text_projection = nn.Parameter(torch.randn(16, 1024))
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.token_embedding = nn.Embedding(10, 16)
        self.ln_final = nn.LayerNorm(16)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(nn.Module())
        self.transformer.resblocks[0].attn = nn.Module()
        self.transformer.resblocks[0].attn.in_proj_weight = nn.Parameter(torch.randn(48, 16))
        self.transformer.resblocks[0].ln_1 = nn.LayerNorm(16, elementwise_affine=True, bias=False)
        for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 10)):
            self.register_buffer(name, torch.tensor(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Tracing keeps every submodule's tensors whatever forward touches, and the loader never reads the archive's
        # code: a trivial forward gives OpenAI's data.pkl layout without tracing a whole ResNet.
        return x * self.logit_scale


_CACHE: dict[str, _ModifiedResNet] = {}


def _rn50() -> _ModifiedResNet:
    """RN50 with random weights and BN statistics, rounded to fp16 like OpenAI's release (so fp16 files are exact)."""
    if "rn50" not in _CACHE:
        torch.manual_seed(0)
        ref = _ModifiedResNet((3, 4, 6, 3), output_dim=1024).eval()
        with torch.no_grad():
            for m in ref.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                    m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
            for t in ref.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
        _CACHE["rn50"] = ref
    return _CACHE["rn50"]


def _clip_state_dict(visual: nn.Module) -> dict[str, torch.Tensor]:
    """A full CLIP ``model.state_dict()`` in fp16 (OpenAI's dtype), as open_clip's converted files hold it."""
    sd = _CLIP(visual).state_dict()
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


def _check_parity(enc: torch.nn.Module, ref: _ModifiedResNet) -> None:
    with torch.no_grad():
        got, want = enc.forward_dense(X), ref(X)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        # forward_global = global_head(forward_features) and forward_features is the last dense map (checked above);
        # CLIP's own pool only takes its native 7x7 grid, so compare the heads on one.
        f7 = torch.randn(2, 2048, 7, 7)
        torch.testing.assert_close(enc.global_head(f7), ref.attnpool(f7), atol=1e-4, rtol=1e-4)


def test_clip_state_dict_round_trip(tmp_path: Path) -> None:
    ref = _rn50()
    path = tmp_path / "RN50.pth"
    torch.save(_clip_state_dict(ref), path)
    enc = build_encoder("dualcoop", "rn50", weights=path)
    _check_parity(enc, ref)
    with torch.no_grad():
        assert enc.forward_global(X).shape == (2, 1024)  # 64 px: timm resamples the pool's 7x7 pos embed
    spec = enc.spec
    assert (spec.channels, spec.reductions, spec.embed_dim) == ((256, 512, 1024, 2048), (4, 8, 16, 32), 1024)
    assert spec.family == "hierarchical" and spec.global_pool == "clip_attn_pool"
    rep = enc.identity.load_report
    n_visual = len(ref.state_dict())
    assert rep.converted == [f"visual. ModifiedResNet -> timm resnet50_clip ({n_visual} keys, float16/int64)"]
    assert rep.matched == n_visual == len(enc.model.state_dict())
    assert sorted(rep.dropped) == sorted(TEXT_KEYS + ["context_length", "input_resolution", "vocab_size"])
    assert enc.data_config.mean == (0.48145466, 0.4578275, 0.40821073) and enc.data_config.crop_pct == 1.0


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # deprecated, but it is what wrote OpenAI's files
def test_openai_torchscript_archive_is_read_without_running_it(tmp_path: Path, monkeypatch) -> None:
    ref = _rn50()
    clip = _CLIP(copy.deepcopy(ref)).eval()  # a copy: .half() on the traced module casts the shared parameters
    traced = torch.jit.trace(clip, torch.randn(1), check_trace=False).half()  # OpenAI's archives hold fp16
    path = tmp_path / "RN50.pt"
    torch.jit.save(traced, str(path))

    def _refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load must not be called on a checkpoint")

    monkeypatch.setattr(torch.jit, "load", _refuse)
    enc = build_encoder("dualcoop:rn50", weights=path)
    _check_parity(enc, ref)
    rep = enc.identity.load_report
    assert rep.checkpoint_key is None and "context_length" in rep.dropped and "positional_embedding" in rep.dropped
    assert enc.identity.weights_file == "RN50.pt" and len(enc.identity.weights_sha256) == 64


def test_visual_tower_only_converts_like_the_full_model() -> None:
    from methods import get_adapter

    adapter = get_adapter("dualcoop")
    ref, variant = _rn50(), adapter.variant("rn50")
    alone, lines = adapter.convert(ref.state_dict(), variant)  # clip_model.visual.state_dict(): no "visual." prefix
    full, _ = adapter.convert(_clip_state_dict(ref), variant)
    assert sorted(alone) == sorted(k for k in full if k.startswith(("stem.", "stages.", "head.")))
    assert all(torch.equal(alone[k], full[k]) for k in alone)
    assert lines == [f"<visual tower> ModifiedResNet -> timm resnet50_clip ({len(alone)} keys, float32/int64)"]


def test_declared_layout_is_the_clip_state_dict() -> None:
    """DualCoOp.to_official inverts convert tensor for tensor, and the declared layout has the CLIP file's names."""
    ref, adapter = _rn50(), get_adapter("dualcoop")
    variant = adapter.variant("rn50")
    timm_sd, _ = adapter.convert(dict(ref.state_dict()), variant)
    back = adapter.to_official(timm_sd, variant)
    assert sorted(back) == sorted(ref.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())
    assert_declared_layout("dualcoop", "rn50", "clip-state-dict", _clip_state_dict(ref))


def test_wrong_architecture_names_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "RN50.pth"
    torch.save(_clip_state_dict(_rn50()), path)
    with pytest.raises(
        CheckpointError,
        match=r"RN50\.pth: keys missing for dualcoop:rn101 \(resnet101_clip\): "
        r"stages\.2\.\d+\.conv1_1x1",
    ):
        build_encoder("dualcoop:rn101", weights=path)


def test_unsafe_torchscript_pickle_is_refused(tmp_path: Path) -> None:
    """A TorchScript-shaped zip whose data.pkl asks for os.system is refused by the allow-list, not executed."""
    import io
    import pickle
    import zipfile

    from methods import UnsafeCheckpointError
    from methods.weights import read_checkpoint

    class _Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    buf = io.BytesIO()
    pickle.dump(_Evil(), buf, protocol=2)
    path = tmp_path / "RN50.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("RN50/data.pkl", buf.getvalue())
        zf.writestr("RN50/constants.pkl", pickle.dumps(()))
        zf.writestr("RN50/version", "3\n")
    with pytest.raises(UnsafeCheckpointError, match="refusing to unpickle global 'posix.system'"):
        read_checkpoint(path)
