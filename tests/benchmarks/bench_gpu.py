"""GPU extraction throughput (markers ``gpu`` and ``bench``; needs a CUDA device): images/s of vitbench's cached
extraction under bf16 autocast against a bare timm bf16 forward loop over the same DataLoader, plus the fp16 default
and ``channels_last`` for comparison. Run on a GPU machine:

    pytest -m "gpu and bench" tests/benchmarks/bench_gpu.py --benchmark-only -s --benchmark-json gpu.json

``VITBENCH_BENCH_GPU=images,batch`` sizes it (default 2048,256; synthetic 224 px tensors, so decoding is out of the
measure: this is the forward pass and the cache writes). Numbers go in the README only from a real run.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
import timm
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.features import FeatureKey, extract
from methods import build_encoder

pytestmark = [pytest.mark.gpu, pytest.mark.bench]


class _Images(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n
        self.x = torch.randn(64, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i % 64], i % 10


def _bare(model: torch.nn.Module, loader: DataLoader, dtype: torch.dtype, channels_last: bool) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
        for images, _ in loader:
            images = images.cuda(non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            model.forward_head(model.forward_features(images), pre_logits=True).float().cpu()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def test_bf16_extraction_images_per_second_vs_bare_timm(benchmark, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    if not torch.cuda.is_available():
        pytest.fail("bench_gpu.py needs a CUDA device (it is selected only by -m gpu)")
    n, batch = (int(v) for v in os.environ.get("VITBENCH_BENCH_GPU", "2048,256").split(","))
    loader = DataLoader(_Images(n), batch_size=batch, num_workers=4, pin_memory=True)
    enc = build_encoder("dino:vits16", weights="random").to("cuda")
    bare = timm.create_model("vit_small_patch16_224", num_classes=0).cuda().eval()
    bare_cl = timm.create_model("vit_small_patch16_224", num_classes=0).cuda().eval()
    bare_cl = bare_cl.to(memory_format=torch.channels_last)
    _bare(bare, loader, torch.bfloat16, False)  # warm-up: kernels, allocator, workers
    rounds = 3
    bare_bf16 = min(_bare(bare, loader, torch.bfloat16, False) for _ in range(rounds))
    bare_fp16 = min(_bare(bare, loader, torch.float16, False) for _ in range(rounds))
    bare_bf16_cl = min(_bare(bare_cl, loader, torch.bfloat16, True) for _ in range(rounds))

    monkeypatch.setenv("VITBENCH_AMP", "bf16")

    def ours() -> None:
        with tempfile.TemporaryDirectory() as cache:  # a cold cache every round
            key = FeatureKey(enc.identity.weights_id, f"synthetic-{n}", "train", "tensor", "global")
            fn = lambda x: {"global": enc.forward_global(x)}  # noqa: E731
            extract(fn, loader.dataset, key, cache_dir=Path(cache), device="cuda", batch_size=batch, progress=False)
            torch.cuda.synchronize()

    benchmark.pedantic(ours, rounds=rounds, warmup_rounds=1)
    ours_s = benchmark.stats.stats.min
    info = {
        "device": torch.cuda.get_device_name(),
        "images": n,
        "batch": batch,
        "ours_bf16_img_s": n / ours_s,
        "bare_bf16_img_s": n / bare_bf16,
        "bare_fp16_img_s": n / bare_fp16,
        "bare_bf16_channels_last_img_s": n / bare_bf16_cl,
        "ratio_time_vs_bare_bf16": ours_s / bare_bf16,
    }
    benchmark.extra_info.update(info)
    print("\n" + "\n".join(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}" for k, v in info.items()))
    assert ours_s / bare_bf16 < 1.25, "bf16 extraction far slower than a bare timm bf16 forward"
