"""The one module that imports mmcv / mmengine / mmdet.

It registers vitbench's backbone and pyramid in mmdet's ``MODELS`` registry, registers a checkpoint scheme that
loads the harness's *own* training checkpoints under torch's ``weights_only`` unpickler, builds the mmengine
``Runner`` from a generated config (:func:`benchmarks.dense.configs.build_mmdet_config`), trains, tests and
hands back where everything landed. Everything else in :mod:`benchmarks.dense` is importable without mm*.

Multi-GPU goes through mmengine's launchers: run ``vitbench run`` under ``torchrun`` (launcher "pytorch") or
``srun`` (launcher "slurm"); :func:`launcher_from_env` picks the launcher from the environment, and
``VITBENCH_LAUNCHER=none|pytorch|slurm`` overrides it.
"""

from __future__ import annotations

import collections
import os
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mmcv.ops  # noqa: F401  (fails here, with a clear message upstream, if mmcv was built without its ops)
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.dist import broadcast_object_list, get_world_size, is_distributed
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader

from benchmarks.dense.configs import BACKBONE_TYPE, PYRAMID_TYPE
from benchmarks.dense.modules import EncoderBackbone, SimplePyramid, encoder_ref, register_live_encoder
from methods import Encoder, safe_pickle
from methods.errors import UnsafeCheckpointError, VitbenchError

# Checkpoints the harness wrote itself are loaded through this scheme (see _load_own_checkpoint).
OWN_CHECKPOINT = "vitbench-own://"
_LAUNCHERS = ("none", "pytorch", "slurm")


# ------------------------------------------------------------------------------------------------ checkpoints
_HISTORY_STATS = frozenset({"min", "max", "current", "mean"})


def _history_stat(owner: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` when unpickling: ``HistoryBuffer.__getstate__`` pickles its statistics
    functions as ``getattr(HistoryBuffer, "min")``. A general ``getattr`` would let a pickle walk from any
    admitted object to ``__globals__`` and ``eval``, so only those four attributes of that one class resolve."""
    if owner is HistoryBuffer and name in _HISTORY_STATS:
        return getattr(HistoryBuffer, name)
    raise UnsafeCheckpointError(
        f"refusing getattr({getattr(owner, '__name__', type(owner).__name__)}, {name!r}) "
        "while unpickling a training checkpoint"
    )


class _CheckpointUnpickler(safe_pickle.Unpickler):
    """vitbench's checkpoint allow-list plus what an mmengine training checkpoint adds: the message hub's
    ``HistoryBuffer``, the restricted ``getattr`` above and the schedulers' ``Counter``. Anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("mmengine.logging.history_buffer", "HistoryBuffer"):
            return HistoryBuffer
        if (module, name) == ("collections", "Counter"):  # MultiStepLR's milestones (a plain dict subclass)
            return collections.Counter
        if name == "getattr" and module in ("builtins", "__builtin__"):
            return _history_stat
        return super().find_class(module, name)


# torch.load's ``pickle_module``: it subclasses ``Unpickler`` and calls ``load`` for legacy headers.
_checkpoint_pickle = types.SimpleNamespace(
    __name__="vitbench_mm_checkpoint_pickle",
    Unpickler=_CheckpointUnpickler,
    load=lambda file, **kw: _CheckpointUnpickler(file, **kw).load(),
)


def _load_own_checkpoint(filename: str, map_location: Any = None) -> Any:
    """Load ``vitbench-own://PATH``, a training checkpoint this harness wrote, through the restricted unpickler.

    torch >= 2.6 loads with ``weights_only=True`` by default, which refuses mmengine's ``HistoryBuffer`` and the
    function references it pickles (so mmengine's own resume fails); turning ``weights_only`` off would unpickle
    anything. Instead the harness's own checkpoints, and only those, come through this scheme, where exactly the
    globals they need are admitted. User checkpoints never pass through here.
    """
    path = filename[len(OWN_CHECKPOINT) :]
    return torch.load(path, map_location=map_location, pickle_module=_checkpoint_pickle, weights_only=False)


def own_last_checkpoint(work_dir: Path | str) -> str | None:
    """``vitbench-own://<checkpoint>`` for the last checkpoint mmengine recorded in ``work_dir``, or None.

    The file named in ``work_dir/last_checkpoint`` must lie inside ``work_dir``: only checkpoints this harness
    wrote are resumed with the scheme above.
    """
    work = Path(work_dir).resolve()
    marker = work / "last_checkpoint"
    if not marker.is_file():
        return None
    ckpt = Path(marker.read_text().strip()).resolve()
    if work not in ckpt.parents:
        raise VitbenchError(
            f"{marker}: names {ckpt}, which is outside the run's work folder; delete the marker to start over"
        )
    if not ckpt.is_file():
        raise VitbenchError(f"{marker}: names {ckpt}, which does not exist; delete the marker to start over")
    return OWN_CHECKPOINT + str(ckpt)


# ------------------------------------------------------------------------------------------------ setup
def prepare() -> None:
    """Register mmdet's modules, vitbench's backbone/pyramid and the own-checkpoint scheme (idempotent)."""
    register_all_modules(init_default_scope=False)
    MODELS.register_module(name=BACKBONE_TYPE, module=EncoderBackbone, force=True)
    MODELS.register_module(name=PYRAMID_TYPE, module=SimplePyramid, force=True)
    CheckpointLoader.register_scheme(prefixes=OWN_CHECKPOINT, loader=_load_own_checkpoint, force=True)


def register_encoder(encoder: Encoder) -> dict[str, Any]:
    """Make ``encoder`` buildable by :class:`EncoderBackbone` in this process; returns the config reference."""
    register_live_encoder(encoder)
    return encoder_ref(encoder)


def launcher_from_env() -> str:
    """``VITBENCH_LAUNCHER`` if set; "pytorch" under torchrun, "slurm" under a multi-task srun; else "none"."""
    forced = os.environ.get("VITBENCH_LAUNCHER")
    if forced:
        if forced not in _LAUNCHERS:
            raise VitbenchError(f"VITBENCH_LAUNCHER={forced!r}: expected one of {', '.join(_LAUNCHERS)}")
        return forced
    if "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "pytorch"
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return "slurm"
    return "none"


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (identity in a single process)."""
    if not is_distributed():
        return obj
    box = [obj]
    broadcast_object_list(box, src=0)
    return box[0]


# ------------------------------------------------------------------------------------------------ running
@dataclass(frozen=True)
class MMResult:
    """Where one train + test run left its outputs."""

    detections: dict[str, Path]  # iou type -> COCO results json (an empty list when nothing was detected)
    config_path: Path
    log_path: Path | None
    resumed_from: str | None
    world_size: int
    effective_lr: float
    train_iters: int
    drop_path_blocks: int
    is_main_process: bool


def train_and_test(cfg: dict[str, Any], task: str) -> MMResult:
    """Build the runner from ``cfg``, train (resuming if ``cfg['resume']``), test; see :class:`MMResult`."""
    work = Path(cfg["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    # A unique experiment name per run: mmengine keys its logger and message hub by it, and two runs in one
    # process (resume, tests) must not share them.
    cfg = Config({**cfg, "experiment_name": f"{task}_{os.getpid()}_{time.time_ns()}"})
    prefix = Path(cfg.test_evaluator.outfile_prefix)
    runner = Runner.from_cfg(cfg)
    main = runner.rank == 0
    if main:
        config_path = work / "config.py"
        cfg.dump(str(config_path))
        prefix.parent.mkdir(parents=True, exist_ok=True)
        for t in ("bbox", "segm"):  # a crash must not leave the last run's detections to be scored
            Path(f"{prefix}.{t}.json").unlink(missing_ok=True)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    runner.train()
    runner.test()
    world = get_world_size()
    bs = int(cfg.train_dataloader.batch_size)
    scale = cfg.auto_scale_lr
    lr = float(cfg.optim_wrapper.optimizer.lr)
    effective_lr = lr * world * bs / scale.base_batch_size if scale.enable else lr
    detections = {}
    for t in ("bbox", "segm"):
        path = Path(f"{prefix}.{t}.json")
        if main and not path.exists():  # mmdet writes no segm file when there is nothing to write
            path.write_text("[]")
        detections[t] = path
    log_path = Path(runner.log_dir) / f"{runner.timestamp}.log"
    return MMResult(
        detections=detections,
        config_path=work / "config.py",
        log_path=log_path if log_path.exists() else None,
        resumed_from=cfg.load_from if cfg.resume else None,
        world_size=world,
        effective_lr=effective_lr,
        train_iters=int(runner.iter),
        drop_path_blocks=int(model.backbone.drop_path_blocks),
        is_main_process=main,
    )
