"""The backdoor tasks: does a frozen encoder let a poisoned linear head learn a backdoor, and does blocking remove it?

``backdoor-htba`` (:class:`HtbaHarness`): per source->target pair, HTBA poisons made through the encoder
(:mod:`benchmarks.backdoor.poison`) join the clean train set of a new linear head; ``backdoor-badnets``
(:class:`BadNetsHarness`): a share of the train set carries a visible trigger and the target's label. Both then
measure, as BackdoorBench names them (%):

- ``clean_acc``: top-1 on the clean test set (the first ``n_test`` val images of every class);
- ``asr``: triggered test images of the attacked classes (HTBA: the source; BadNets: every non-target class)
  predicted as the target; ``robust_acc``: the same images predicted as their true class;
- ``asr_unpatched`` (HTBA): un-triggered source test images predicted as the target ([BT]'s "NotPatched");
- after the test-time defense (:mod:`benchmarks.backdoor.defense`): ``clean_acc_blocked``, ``asr_blocked``,
  ``robust_acc_blocked``.

Metrics are means over pairs; the record's ``extra.pairs`` holds the per-pair table. Clean features come from the
platform's feature cache (:func:`benchmarks.features.extract`, square-resized images); poisoned and triggered
images are perturbed pixels, so their features are computed fresh. The head is the probe engine's
(:func:`benchmarks.probe.heads.train_head_grid` with one learning rate, a constant schedule, the lr as given).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.backdoor.defense import black_out, peak_boxes, saliency
from benchmarks.backdoor.images import (
    Normalizer,
    SquareImages,
    batches,
    embed,
    fixed_positions,
    load_many,
    make_trigger,
    random_positions,
    save_trigger,
    transform_desc,
)
from benchmarks.backdoor.poison import cache_key, generate_poisons
from benchmarks.backdoor.protocols import PAPER_PAIRS, BadNetsProtocol, HtbaProtocol
from benchmarks.classification.common import load_splits
from benchmarks.features import FeatureKey, default_cache_dir, default_workers, extract
from benchmarks.harness import Harness, RunContext, RunOutput
from benchmarks.probe.data import RGB, LabelledSplit
from benchmarks.probe.engine import as_tensor, dataset_info
from benchmarks.probe.heads import Target, train_head_grid
from benchmarks.progress import progress_bar
from methods import Encoder
from methods.errors import DataError, VitbenchError

DEFENSE_BATCH = 32  # images per rollout / Grad-CAM backward pass

AnyProtocol = HtbaProtocol | BadNetsProtocol


def _seed(*parts: int) -> int:
    """A 32-bit seed mixed from ``parts`` (run seed, pair index, purpose)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


# ------------------------------------------------------------------------------------------------ shared steps
def resolve_defense(encoder: Encoder, defense: str) -> str:
    """``auto`` -> rollout for encoders with token attention, gradcam otherwise; rollout without it is refused."""
    if defense == "auto":
        return "rollout" if encoder.has_token_attention else "gradcam"
    if defense == "rollout" and not encoder.has_token_attention:
        raise VitbenchError(
            f"--set defense=rollout: {encoder!r} ({encoder.spec.family}) has no token attention to roll out; "
            "use defense=gradcam (or auto)"
        )
    return defense


def check_rgb(encoder: Encoder, split: LabelledSplit) -> None:
    bands = encoder.data_config.band_order
    if bands is not None and tuple(bands) != RGB:
        raise DataError(
            f"{split.root}: backdoor tasks paste RGB triggers into RGB images, but the encoder expects bands "
            f"{list(bands)}"
        )


def first_per_class(split: LabelledSplit, n: int) -> np.ndarray:
    """Indices of the first ``n`` images (in sorted file order) of every class; refuses a class with fewer."""
    targets = np.asarray(split.targets)
    out = []
    for c, name in enumerate(split.classes):
        idx = np.flatnonzero(targets == c)
        if len(idx) < n:
            raise DataError(f"{split.root / name}: {len(idx)} image(s), fewer than the protocol's n_test={n}")
        out.append(idx[:n])
    return np.concatenate(out)


def clean_features(ctx: RunContext, split: LabelledSplit, p: AnyProtocol) -> np.ndarray:
    """``[N, D]`` fp16 global features of the whole split, square-resized, through the feature cache."""
    dc = ctx.encoder.data_config
    dataset = SquareImages(split, p.resolution, p.interpolation, Normalizer(dc.mean, dc.std))
    key = FeatureKey(
        ctx.encoder.identity.weights_id,
        split.fingerprint(),
        split.name,
        transform_desc(p.resolution, p.interpolation, dc.mean, dc.std),
        "global",
    )
    feats = extract(
        lambda x: {"global": ctx.encoder.forward_global(x)},
        dataset,
        key,
        cache_dir=ctx.cache_dir or default_cache_dir(),
        device=ctx.device,
        desc=f"features {split.name}",
        progress=ctx.progress,
    )
    return feats["global"]


def train_victim(x: torch.Tensor, y: torch.Tensor, n_classes: int, p: AnyProtocol, ctx: RunContext) -> torch.nn.Linear:
    """The victim's new linear head on frozen features ``[N, D]``: [BT]'s SGD (one lr, constant, as given).

    Seeded here (as ``fit_grid`` does): the head's init draws from torch's global generator, which extraction's
    DataLoaders advance only when features are not cached yet, so without it a rerun that reads cached features or
    poisons (a resumed run) trained a different head than an uninterrupted run."""
    torch.manual_seed(ctx.seed)
    heads = train_head_grid(
        {"global": x},
        y,
        Target("single", n_classes),
        (p.victim_lr,),
        p.victim_epochs,
        p.victim_batch_size,
        p.victim_momentum,
        0.0,
        ctx.seed,
        ctx.device,
        ctx.progress,
        schedule="constant",
        scale_lr=False,
    )
    return next(iter(heads.values())).to(ctx.device)


@torch.no_grad()
def predict(head: torch.nn.Linear, feats: torch.Tensor | np.ndarray, device: str) -> np.ndarray:
    x = as_tensor(feats) if isinstance(feats, np.ndarray) else feats
    return head(x.to(device, torch.float32)).argmax(dim=1).cpu().numpy()


def blocked_predictions(
    ctx: RunContext, head: torch.nn.Linear, images: torch.Tensor | SquareImages, p: AnyProtocol, method: str, desc: str
) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 after blocking ``[N]``, boxes ``[N, 4]``) of uint8 images (in memory or streamed)."""
    enc = ctx.encoder
    norm = Normalizer(enc.data_config.mean, enc.data_config.std, ctx.device)
    preds, boxes = [], []
    with progress_bar(total=len(images), desc=desc, enabled=ctx.progress) as bar:
        for x in batches(images, DEFENSE_BATCH, default_workers()):
            x01 = x.to(ctx.device).float() / 255
            sal, _ = saliency(enc, head, x01, norm, method, p.discard_ratio)
            box = peak_boxes(sal, p.filter_size, p.block_size, p.block_border)
            blocked = torch.round(black_out(x01, box) * 255).to(torch.uint8)
            preds.append(predict(head, embed(enc, blocked, norm, ctx.device), ctx.device))
            boxes.append(box.numpy())
            bar.update(len(x))
    return np.concatenate(preds), np.concatenate(boxes)


def pct(mask: np.ndarray) -> float:
    return 100.0 * float(np.mean(mask)) if len(mask) else 0.0


def _probe_card(p: AnyProtocol, method: str) -> dict[str, Any]:
    return {
        "features": "forward_global, frozen; clean images cached, poisoned/triggered images extracted fresh",
        "resolution": p.resolution,
        "transform": f"square resize {p.resolution} ({p.interpolation}), no crop, no augmentation",
        "head": f"new linear head, SGD lr {p.victim_lr:g} constant, momentum {p.victim_momentum}, "
        f"batch {p.victim_batch_size}, {p.victim_epochs} epochs",
        "defense": method,
    }


def _mean_metrics(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows])) for m in names if all(m in r for r in rows)}


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


# ------------------------------------------------------------------------------------------------ HTBA
def resolve_pairs(p: HtbaProtocol, classes: tuple[str, ...], seed: int) -> tuple[list[tuple[str, str]], str]:
    """The pairs to attack and the rule that chose them (see :class:`HtbaProtocol`)."""
    given = [tuple(x.split(":", 1)) for x in p.pairs]
    missing = sorted({c for pair in given for c in pair} - set(classes))
    if given and not missing:
        return [(s, t) for s, t in given], "the paper's pairs" if tuple(p.pairs) == PAPER_PAIRS else "given pairs"
    if given and tuple(p.pairs) != PAPER_PAIRS:
        raise DataError(f"--set pairs: classes {', '.join(missing[:5])} are not class folders of the data")
    all_pairs = [(s, t) for s in classes for t in classes if s != t]
    if p.n_pairs > len(all_pairs):
        raise DataError(f"n_pairs={p.n_pairs}: only {len(all_pairs)} source->target pairs exist in the data")
    rng = np.random.default_rng([seed, 0x9A17])
    chosen = rng.choice(len(all_pairs), size=p.n_pairs, replace=False)
    why = "drawn from the seed" + (" (the data lacks the paper's ImageNet wnids)" if given else "")
    return [all_pairs[i] for i in chosen], why


def holdout_generation(train: LabelledSplit, n: int, seed: int) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Per class, ``n`` train images drawn from the seed for poison generation ([BT]: 200 of every class), and the
    remaining indices (the victim's clean training set). Refuses a class that would keep no training image."""
    targets = np.asarray(train.targets)
    rng = np.random.default_rng([seed, 0x6E7])
    held: dict[int, np.ndarray] = {}
    for c, name in enumerate(train.classes):
        idx = np.flatnonzero(targets == c)
        if len(idx) <= n:
            raise DataError(
                f"{train.root / name}: {len(idx)} image(s); the protocol holds out n_generation={n} per class for "
                "poison generation and needs more to train on"
            )
        held[c] = np.sort(rng.permutation(idx)[:n])
    rest = np.setdiff1d(np.arange(len(train)), np.concatenate(list(held.values())))
    return held, rest


class HtbaHarness(Harness):
    """``backdoor-htba``: hidden-trigger (clean-label) poisons, 10 source->target pairs, test-time blocking."""

    METRICS = (
        "clean_acc",
        "asr",
        "robust_acc",
        "asr_unpatched",
        "clean_acc_blocked",
        "asr_blocked",
        "robust_acc_blocked",
    )

    def run(self, ctx: RunContext, protocol: HtbaProtocol) -> RunOutput:
        p, enc = protocol, ctx.encoder
        train, val = load_splits(ctx.data_root)
        check_rgb(enc, train)
        method = resolve_defense(enc, p.defense)
        pairs, rule = resolve_pairs(p, train.classes, ctx.seed)
        held, rest = holdout_generation(train, p.n_generation, ctx.seed)
        test_idx = first_per_class(val, p.n_test)
        index = {c: i for i, c in enumerate(train.classes)}
        norm = Normalizer(enc.data_config.mean, enc.data_config.std, ctx.device)

        tr_f, va_f = clean_features(ctx, train, p), clean_features(ctx, val, p)
        x_clean, y_clean = as_tensor(tr_f[rest]), torch.from_numpy(np.asarray(train.targets)[rest]).long()
        y_test = np.asarray(val.targets)[test_idx]
        # next to the feature cache: <--cache>/backdoor-poisons, default $VITBENCH_CACHE/backdoor-poisons
        poison_root = (Path(ctx.cache_dir) if ctx.cache_dir else default_cache_dir().parent) / "backdoor-poisons"
        rows = []
        for k, (src, tgt) in enumerate(pairs):
            s, t = index[src], index[tgt]
            pair_dir = ctx.work_dir / f"pair{k:02d}_{src}-{tgt}"
            trigger = make_trigger(p.patch_size, p.trigger_cells, seed=_seed(ctx.seed, k, 0x791))
            trigger_sha = save_trigger(trigger, pair_dir / "trigger.png")
            folder = poison_root / cache_key(
                enc.identity.weights_id, train.fingerprint(), (src, tgt), ctx.seed, p, trigger_sha
            )
            gen_t = load_many([train.paths[i] for i in held[t]], p.resolution, p.interpolation)
            gen_s = load_many([train.paths[i] for i in held[s]], p.resolution, p.interpolation)
            poisons = generate_poisons(
                enc,
                gen_t,
                gen_s,
                trigger,
                p,
                folder=folder,
                seed=_seed(ctx.seed, k, 0x9015),
                device=ctx.device,
                progress=ctx.progress,
                desc=f"poisons {src}->{tgt}",
            )
            x = torch.cat([x_clean, poisons.features.to(x_clean.dtype)])
            y = torch.cat([y_clean, torch.full((len(poisons.features),), t, dtype=torch.long)])
            head = train_victim(x, y, len(train.classes), p, ctx)

            clean_pred = predict(head, va_f[test_idx], ctx.device)
            src_test = test_idx[y_test == s]
            rng = np.random.default_rng([ctx.seed, k, 0x7E57])
            pos = (
                random_positions(len(src_test), p.resolution, p.patch_size, rng)
                if p.rand_loc
                else fixed_positions(len(src_test), p.resolution, p.patch_size, 5)
            )
            triggered = SquareImages(val, p.resolution, p.interpolation, None, src_test, trigger, pos)
            trig_pred = predict(head, embed(enc, triggered, norm, ctx.device, workers=default_workers()), ctx.device)
            row: dict[str, Any] = {
                "source": src,
                "target": tgt,
                "n_poisons": len(poisons.features),
                "poison_loss_mean": float(poisons.losses.mean()),
                "trigger_sha256": trigger_sha,
                "trigger_png": str(pair_dir / "trigger.png"),
                "poison_cache": str(folder),
                "clean_acc": pct(clean_pred == y_test),
                "asr": pct(trig_pred == t),
                "robust_acc": pct(trig_pred == s),
                "asr_unpatched": pct(clean_pred[y_test == s] == t),
            }
            positions = {"images": [str(val.paths[i]) for i in src_test], "yx": pos.tolist()}
            if method != "none":
                b_trig, boxes = blocked_predictions(ctx, head, triggered, p, method, f"block {src}->{tgt}")
                clean_ds = SquareImages(val, p.resolution, p.interpolation, None, test_idx)
                b_clean, _ = blocked_predictions(ctx, head, clean_ds, p, method, "block clean test")
                row.update(
                    asr_blocked=pct(b_trig == t),
                    robust_acc_blocked=pct(b_trig == s),
                    clean_acc_blocked=pct(b_clean == y_test),
                )
                positions["blocked_boxes_y0y1x0x1"] = boxes.tolist()
            _write_json(pair_dir / "test_triggers.json", positions)
            row["test_triggers"] = str(pair_dir / "test_triggers.json")
            rows.append(row)
        probe = {**_probe_card(p, method), "pairs_rule": rule}
        return RunOutput(
            metrics=_mean_metrics(rows, self.METRICS),
            dataset=dataset_info(ctx.data_root, train, val),
            probe=probe,
            extra={"pairs": rows, "n_finetune": int(len(rest)), "n_test": int(len(test_idx))},
        )


# ------------------------------------------------------------------------------------------------ BadNets
class BadNetsHarness(Harness):
    """``backdoor-badnets``: a visible trigger on ``poison_rate`` of the train set, relabelled to one target."""

    METRICS = ("clean_acc", "asr", "robust_acc", "clean_acc_blocked", "asr_blocked", "robust_acc_blocked")

    def run(self, ctx: RunContext, protocol: BadNetsProtocol) -> RunOutput:
        p, enc = protocol, ctx.encoder
        train, val = load_splits(ctx.data_root)
        check_rgb(enc, train)
        method = resolve_defense(enc, p.defense)
        target = p.target or train.classes[0]
        if target not in train.classes:
            raise DataError(f"--set target={target}: not a class folder of {train.root}")
        t = train.classes.index(target)
        y_train = np.asarray(train.targets)
        others = np.flatnonzero(y_train != t)
        n_poison = int(round(p.poison_rate * len(train)))
        if not 1 <= n_poison <= len(others):
            raise DataError(
                f"{train.root}: poison_rate={p.poison_rate} of {len(train)} images is {n_poison} poisons; "
                f"{len(others)} non-target images can be poisoned"
            )
        test_idx = first_per_class(val, p.n_test)
        norm = Normalizer(enc.data_config.mean, enc.data_config.std, ctx.device)
        rng = np.random.default_rng([ctx.seed, 0xBAD])
        chosen = np.sort(rng.choice(others, size=n_poison, replace=False))
        trigger = make_trigger(p.patch_size, p.trigger_cells, seed=_seed(ctx.seed, 0xBAD, 0x791))
        trigger_sha = save_trigger(trigger, ctx.work_dir / "trigger.png")

        def place(n: int, r: np.random.Generator) -> np.ndarray:
            if p.rand_loc:
                return random_positions(n, p.resolution, p.patch_size, r)
            return fixed_positions(n, p.resolution, p.patch_size, p.margin)

        tr_f, va_f = clean_features(ctx, train, p), clean_features(ctx, val, p)
        poisoned = SquareImages(train, p.resolution, p.interpolation, None, chosen, trigger, place(n_poison, rng))
        x = as_tensor(tr_f)
        x[torch.from_numpy(chosen)] = embed(enc, poisoned, norm, ctx.device, workers=default_workers()).to(x.dtype)
        y = torch.from_numpy(y_train).long()
        y[torch.from_numpy(chosen)] = t
        head = train_victim(x, y, len(train.classes), p, ctx)

        y_test = np.asarray(val.targets)[test_idx]
        clean_pred = predict(head, va_f[test_idx], ctx.device)
        attacked = test_idx[y_test != t]
        y_att = np.asarray(val.targets)[attacked]
        pos = place(len(attacked), np.random.default_rng([ctx.seed, 0x7E57]))
        triggered = SquareImages(val, p.resolution, p.interpolation, None, attacked, trigger, pos)
        trig_pred = predict(head, embed(enc, triggered, norm, ctx.device, workers=default_workers()), ctx.device)
        row: dict[str, Any] = {
            "target": target,
            "n_poisons": n_poison,
            "trigger_sha256": trigger_sha,
            "trigger_png": str(ctx.work_dir / "trigger.png"),
            "clean_acc": pct(clean_pred == y_test),
            "asr": pct(trig_pred == t),
            "robust_acc": pct(trig_pred == y_att),
        }
        record: dict[str, Any] = {"images": [str(val.paths[i]) for i in attacked], "yx": pos.tolist()}
        if method != "none":
            b_trig, boxes = blocked_predictions(ctx, head, triggered, p, method, "block triggered")
            b_clean, _ = blocked_predictions(
                ctx, head, SquareImages(val, p.resolution, p.interpolation, None, test_idx), p, method, "block clean"
            )
            row.update(
                asr_blocked=pct(b_trig == t),
                robust_acc_blocked=pct(b_trig == y_att),
                clean_acc_blocked=pct(b_clean == y_test),
            )
            record["blocked_boxes_y0y1x0x1"] = boxes.tolist()
        _write_json(ctx.work_dir / "test_triggers.json", record)
        row["test_triggers"] = str(ctx.work_dir / "test_triggers.json")
        return RunOutput(
            metrics=_mean_metrics([row], self.METRICS),
            dataset=dataset_info(ctx.data_root, train, val),
            probe=_probe_card(p, method),
            extra={"pairs": [row], "n_train": len(train), "n_test": int(len(test_idx))},
        )
