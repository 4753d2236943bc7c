"""A torchrun-like world of CPU processes (gloo) for the DDP tests: each spawned rank runs one harness on a tiny ViT."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(rank: int, world: int, port: int, jobs: list[tuple[str, str]], data: str, out: str) -> None:
    """What torchrun would start: RANK / WORLD_SIZE / MASTER_* in the environment, then each (task, method) job's
    harness in turn (one spawn for all jobs: starting Python and importing torch is most of the cost)."""
    import torch

    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "VITBENCH_WORKERS": "0",
            "VITBENCH_NO_PROGRESS": "1",
        }
    )
    torch.set_num_threads(1)
    from dataclasses import replace

    from benchmarks.catalog import get_task
    from benchmarks.harness import RunContext, load_harness
    from methods import build_encoder, get_adapter
    from tests.methods._official import TINY

    for task, method in jobs:
        name, variant = method.split(":")
        cls = type(get_adapter(name))  # what tests.methods._official.shrink does, in this process
        cls.variants = tuple(
            replace(v, model_kwargs={**v.model_kwargs, **TINY}) if v.name == variant else v for v in cls.variants
        )
        spec = get_task(task)
        enc = build_encoder(method, weights="random")
        work = Path(out, task)
        ctx = RunContext(spec, enc, Path(data), work, launcher="pytorch", progress=False)
        output = load_harness(task).run(ctx, spec.protocol_for(smoke=True))
        result: dict[str, Any] = {"metrics": output.metrics, "probe": output.probe, "history": output.extra["history"]}
        Path(out, f"{task}.rank{rank}.json").write_text(json.dumps(result))
