"""The one module that imports mmcv / mmengine / mmdet / mmseg: registration, training and testing on the engines.

It registers vitbench's backbone and pyramid in mmdet's and mmseg's ``MODELS`` registries, registers a checkpoint
scheme that loads the harness's *own* training checkpoints under a restricted unpickler, builds the mmengine
``Runner`` from a generated config (:mod:`~benchmarks.dense.mmdet_config`, :mod:`~benchmarks.dense.mmseg_config`),
trains, tests and hands back what the run left in its work folder, whatever the engine. Everything else in
:mod:`benchmarks.dense` is importable without mm*.

Multi-GPU goes through mmengine's launchers: the config's ``launcher`` is the run context's (``vitbench run``
detects torchrun / srun, or takes ``--launcher``).
"""

from __future__ import annotations

import collections
import os
import random
import re
import time
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mmcv.ops  # noqa: F401  (fails here, with a clear message upstream, if mmcv was built without its ops)
import numpy as np
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.utils import register_all_modules as register_mmdet_modules
from mmengine.config import Config
from mmengine.dist import broadcast_object_list, get_world_size, is_distributed
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS, DefaultScope
from mmengine.runner import IterBasedTrainLoop, Runner
from mmengine.runner.checkpoint import CheckpointLoader
from mmseg.datasets import ADE20KDataset
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS as MMSEG_METRICS
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.utils import register_all_modules as register_mmseg_modules

from benchmarks.dense.backbone import BACKBONE_TYPE, EncoderBackbone, encoder_ref, register_live_encoder
from benchmarks.dense.mmseg_config import IOU_METRIC_TYPE
from benchmarks.dense.neck import PYRAMID_TYPE, SimplePyramid
from methods import Encoder, safe_pickle
from methods.errors import UnsafeCheckpointError, VitbenchError

# Checkpoints the harness wrote itself are loaded through this scheme (see _load_own_checkpoint).
OWN_CHECKPOINT = "vitbench-own://"
# The engines' model registries by scope name; vitbench's modules are registered in each.
REGISTRIES = {"mmdet": MMDET_MODELS, "mmseg": MMSEG_MODELS}


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


_CHECKPOINT_NAME = re.compile(r"(?:epoch|iter)_(\d+)\.pth")  # CheckpointHook's file names (by epoch / by iter)


def complete_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file. mmengine writes checkpoints in place, and torch writes its
    zip archive front to back with the central directory last, so a file cut short (a kill during the save) has no
    end record and does not open as a zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name == "data.pkl" or name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def own_last_checkpoint(work_dir: Path | str) -> str | None:
    """``vitbench-own://<checkpoint>`` for the last complete checkpoint mmengine recorded in ``work_dir``, or None.

    The file named in ``work_dir/last_checkpoint`` must lie inside ``work_dir``: only checkpoints this harness
    wrote are resumed with the scheme above. mmengine writes that marker after the checkpoint it names, but
    neither atomically: a marker that is torn (a kill while it was rewritten) or names a missing or incomplete
    file falls back to the newest complete ``epoch_N.pth`` / ``iter_N.pth`` in ``work_dir`` (None if there is
    none: training starts over). No marker at all is a fresh start, whatever else is in the folder.
    """
    work = Path(work_dir).resolve()
    marker = work / "last_checkpoint"
    if not marker.is_file():
        return None
    named = marker.read_text().strip()
    if named and Path(named).resolve().is_file():
        ckpt = Path(named).resolve()
        if work not in ckpt.parents:
            raise VitbenchError(
                f"{marker}: names {ckpt}, which is outside the run's work folder; delete the marker to start over"
            )
        if complete_checkpoint(ckpt):
            return OWN_CHECKPOINT + str(ckpt)
    steps = []
    for path in work.glob("*.pth"):
        match = _CHECKPOINT_NAME.fullmatch(path.name)
        if match and work in path.resolve().parents:
            steps.append((int(match[1]), path.resolve()))
    for _, path in sorted(steps, reverse=True):
        if complete_checkpoint(path):
            return OWN_CHECKPOINT + str(path)
    return None


# ------------------------------------------------------------------------------------------------ randomness
RNG_HOOK_TYPE = "VitbenchRngStateHook"
_RNG_KEY = "vitbench_rng"


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's global generator states (CUDA's too once initialised), as tensors and numbers
    only, so that the restricted checkpoint unpickler reads them back."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    key = npy["key"].numpy().astype(np.uint32)
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": key, "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _RestoreBeforeFetch:
    """An iterator that passes ``skip`` items through, then restores ``state`` just before fetching the next."""

    def __init__(self, inner: Any, skip: int, state: dict[str, Any]) -> None:
        self._inner, self._skip = inner, skip
        self._state: dict[str, Any] | None = state

    def __iter__(self) -> _RestoreBeforeFetch:
        return self

    def __next__(self) -> Any:
        if self._skip == 0 and self._state is not None:
            set_rng_state(self._state)
            self._state = None
        self._skip -= 1
        return next(self._inner)

    def __getattr__(self, name: str) -> Any:  # the loop's iterator otherwise (its dataloader, epoch)
        return getattr(self._inner, name)


class RngStateHook(Hook):
    """Makes a resumed run continue with the random numbers of an uninterrupted one.

    mmengine's resume restores weights, optimiser, schedulers and the message hub, and re-seeds; the generators
    then start from the seed instead of where the run was when it saved. Drop path draws from torch's generator on
    every training step, so a resumed run trained differently (ADE20K smoke, killed after iteration 2 of 6: mIoU
    8.41 against 11.01 uninterrupted). This hook stores the generator states in every checkpoint and restores them
    where the uninterrupted run would fetch its next batch: at the start of the next epoch (epoch-based loops), or,
    in iteration-based loops, after mmengine has replayed the batches already trained on (that replay draws the
    same augmentation numbers again, so the states are restored after it, not before).
    """

    priority = "VERY_LOW"  # after the other hooks' before_train_epoch

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        checkpoint[_RNG_KEY] = rng_state()

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        self._pending = checkpoint.get(_RNG_KEY)

    def before_train_epoch(self, runner: Any) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreBeforeFetch(loop.dataloader_iterator, loop.iter, state)
        else:
            set_rng_state(state)


# ------------------------------------------------------------------------------------------------ metrics
PER_CLASS_PREFIX = "IoU_c"  # PerClassIoUMetric's per-class keys: IoU_c0 ... IoU_c149 (label order, %)


class PerClassIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` (``aAcc``, ``mIoU``, ``mAcc`` in %, rounded to 2 decimals as mmseg reports them), plus
    each class's IoU under ``IoU_c<k>`` (%, unrounded; NaN for a class absent from both prediction and ground
    truth, which ``mIoU`` leaves out). The per-image intersections and unions are mmseg's own."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        metrics = dict(super().compute_metrics(results))
        if not results:
            return metrics
        totals = [sum(column) for column in zip(*results)]
        per_class = self.total_area_to_metrics(*totals, ["mIoU"], None, self.beta)["IoU"]
        metrics.update({f"{PER_CLASS_PREFIX}{k}": float(v) * 100.0 for k, v in enumerate(per_class)})
        return metrics


def ade20k_classes() -> tuple[str, ...]:
    """The 150 class names of mmseg's ``ADE20KDataset``, in label order (label ``k`` after ``reduce_zero_label``)."""
    return tuple(ADE20KDataset.METAINFO["classes"])


# ------------------------------------------------------------------------------------------------ setup
def prepare() -> None:
    """Register mmdet's and mmseg's modules, vitbench's backbone/pyramid in both engines' ``MODELS``, the per-class
    IoU metric in mmseg's ``METRICS``, the generator-state hook in mmengine's ``HOOKS`` and the own-checkpoint
    scheme (idempotent)."""
    register_mmdet_modules(init_default_scope=False)
    register_mmseg_modules(init_default_scope=False)
    for registry in REGISTRIES.values():
        registry.register_module(name=BACKBONE_TYPE, module=EncoderBackbone, force=True)
        registry.register_module(name=PYRAMID_TYPE, module=SimplePyramid, force=True)
    MMSEG_METRICS.register_module(name=IOU_METRIC_TYPE, module=PerClassIoUMetric, force=True)
    HOOKS.register_module(name=RNG_HOOK_TYPE, module=RngStateHook, force=True)
    CheckpointLoader.register_scheme(prefixes=OWN_CHECKPOINT, loader=_load_own_checkpoint, force=True)


def build_model(model_cfg: dict[str, Any], scope: str) -> torch.nn.Module:
    """Build a generated ``model`` config in ``scope`` ("mmdet" | "mmseg"), whatever the current default scope."""
    if scope not in REGISTRIES:
        raise VitbenchError(f"unknown engine scope {scope!r} (expected one of {', '.join(REGISTRIES)})")
    with DefaultScope.overwrite_default_scope(scope):
        return REGISTRIES[scope].build(dict(model_cfg))


def register_encoder(encoder: Encoder) -> dict[str, Any]:
    """Make ``encoder`` buildable by :class:`EncoderBackbone` in this process; returns the config reference."""
    register_live_encoder(encoder)
    return encoder_ref(encoder)


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
    """What one train + test run left in its work folder, whatever the engine and the task."""

    outputs: dict[str, Path]  # the files the test evaluator dumped, by name under its dump location (see _dumps)
    metrics: dict[str, float]  # what the engine's evaluator computed (empty when it only dumps: format_only)
    extra_metrics: dict[str, dict[str, float]]  # the same per extra test of the config (e.g. "ms": multi-scale)
    config_path: Path
    log_path: Path | None
    resumed_from: str | None
    world_size: int
    effective_lr: float
    train_iters: int
    drop_path_blocks: int
    is_main_process: bool


def _dump_locations(evaluator: Any, work: Path) -> list[tuple[Path, str]]:
    """(folder, file-name prefix) of each place the test evaluator(s) dump to: mmdet's ``outfile_prefix``
    (``.../coco`` -> ``coco.bbox.json``, ``coco.segm.json``) or mmseg's ``output_dir`` (every file under it).
    They must lie inside the work folder: the run clears them first and reports everything found there."""
    out = []
    for ev in evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]:
        if ev.get("outfile_prefix"):
            prefix = Path(ev["outfile_prefix"])
            loc = (prefix.parent, prefix.name + ".")
        elif ev.get("output_dir"):
            loc = (Path(ev["output_dir"]), "")
        else:
            continue
        if not loc[0].resolve().is_relative_to(work.resolve()):
            raise VitbenchError(f"the test evaluator dumps to {loc[0]}, outside the run's work folder {work}")
        out.append(loc)
    return out


def _dumps(locations: list[tuple[Path, str]]) -> dict[str, Path]:
    """Files at ``locations``, keyed by their path under the folder with the prefix removed (``bbox.json``)."""
    found: dict[str, Path] = {}
    for folder, prefix in locations:
        if folder.is_dir():
            for path in sorted(folder.glob(f"{prefix}*") if prefix else folder.rglob("*")):
                if path.is_file():
                    found[str(path.relative_to(folder))[len(prefix) :]] = path
    return found


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of an evaluator's output as Python floats (mmseg returns numpy scalars)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.integer, np.floating))}


# What a test-only runner does not need from a training config.
_TRAIN_KEYS = ("train_dataloader", "train_cfg", "optim_wrapper", "param_scheduler", "auto_scale_lr", "extra_tests")


def _extra_test(cfg: Config, name: str, extra: dict[str, Any], checkpoint: str, task: str) -> dict[str, float]:
    """Test the trained weights again with ``extra``'s ``model`` and ``test_dataloader`` (e.g. mmseg's
    ``SegTTAModel`` over a ``TestTimeAug`` pipeline); its logs go to ``work_dir/<name>``.

    The weights are the run's own ``checkpoint``, loaded strictly into the segmentor (mmengine's runner loads into a
    wrapper's ``module``: ``SegTTAModel`` holds the segmentor there)."""
    test_cfg = {k: v for k, v in cfg.to_dict().items() if k not in _TRAIN_KEYS}
    test_cfg.update(
        model=extra["model"],
        test_dataloader=extra["test_dataloader"],
        work_dir=str(Path(cfg.work_dir) / name),
        experiment_name=f"{task}_{name}_{os.getpid()}_{time.time_ns()}",
        load_from=None,
        resume=False,
    )
    runner = Runner.from_cfg(Config(test_cfg))
    runner.load_checkpoint(checkpoint, strict=True, revise_keys=[])
    return _numbers(runner.test() or {})


def train_and_test(config: dict[str, Any], task: str) -> MMResult:
    """Build the runner from ``config``, train (resuming if ``config['resume']``), test, then run each of its
    ``extra_tests`` (``{name: {"model", "test_dataloader"}}``) on the final weights; see :class:`MMResult`."""
    work = Path(config["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    extras = dict(config.get("extra_tests") or {})
    config = {**config, "custom_hooks": [*config.get("custom_hooks", []), {"type": RNG_HOOK_TYPE}]}
    # A unique experiment name per run: mmengine keys its logger and message hub by it, and two runs in one
    # process (resume, tests) must not share them.
    cfg = Config(
        {k: v for k, v in config.items() if k != "extra_tests"}
        | {"experiment_name": f"{task}_{os.getpid()}_{time.time_ns()}"}
    )
    locations = _dump_locations(cfg.test_evaluator, work)
    runner = Runner.from_cfg(cfg)
    main = runner.rank == 0
    if main:
        config_path = work / "config.py"
        cfg.dump(str(config_path))
        for path in _dumps(locations).values():  # a crash must not leave the last run's outputs to be scored
            path.unlink()
        for folder, _ in locations:
            folder.mkdir(parents=True, exist_ok=True)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    runner.train()
    metrics = runner.test() or {}
    extra_metrics: dict[str, dict[str, float]] = {}
    if extras:
        final = own_last_checkpoint(work)
        if final is None:
            raise VitbenchError(f"{work}: training left no checkpoint for the extra tests ({', '.join(extras)})")
        extra_metrics = {name: _extra_test(cfg, name, extra, final, task) for name, extra in extras.items()}
    world = get_world_size()
    bs = int(cfg.train_dataloader.batch_size)
    scale = cfg.get("auto_scale_lr") or {}
    lr = float(cfg.optim_wrapper.optimizer.lr)
    effective_lr = lr * world * bs / scale["base_batch_size"] if scale.get("enable") else lr
    log_path = Path(runner.log_dir) / f"{runner.timestamp}.log"
    return MMResult(
        outputs=_dumps(locations),
        metrics=_numbers(metrics),
        extra_metrics=extra_metrics,
        config_path=work / "config.py",
        log_path=log_path if log_path.exists() else None,
        resumed_from=cfg.load_from if cfg.resume else None,
        world_size=world,
        effective_lr=effective_lr,
        train_iters=int(runner.iter),
        drop_path_blocks=int(model.backbone.drop_path_blocks),
        is_main_process=main,
    )
