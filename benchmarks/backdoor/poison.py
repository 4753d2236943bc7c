"""HTBA poison generation: PGD through the frozen encoder, cached per (weights, data, pair, seed, protocol), resumable.

For a batch of target-class images ``t`` and as many held-out source images ``s`` carrying the trigger at random
locations, the perturbation ``d`` (``|d| <= eps`` per pixel, ``t + d`` a valid image) minimises
``sum_i |f(t_i + d_i) - f(s_pi(i))|^2`` where ``pi`` pairs each poison with a distinct patched source, greedily by
feature distance, again at every iteration (UCDvision/backdoor_transformer ``generate_poison_transformer.py``:
plain gradient steps of lr 0.001 halved every 1000 iterations, at most 5000, stopping once every pair's distance
is below 15; f = the encoder's global embedding, [BT]'s ``forward_features`` = DeiT's normed CLS token).

Cache: ``<cache>/backdoor-poisons/<key>/`` holds one ``batch_<epoch>_<i>.npz`` per finished batch (written
atomically), so an interrupted generation resumes at the first missing batch; the shuffles and trigger positions
of every batch are drawn up front from the seed, so a resumed run computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.backdoor.images import Normalizer, embed, paste, random_positions
from benchmarks.backdoor.protocols import HtbaProtocol
from benchmarks.progress import progress_bar
from benchmarks.records import atomic_write_text
from methods import Encoder


@dataclass
class Poisons:
    """``images`` uint8 ``[N, 3, S, S]`` (clean-label: each is a perturbed target image), their global features
    ``[N, D]`` (float32, what the victim trains on), the final squared feature distance of each to its patched
    source ``[N]``, and ``target_index[i]`` = which target image (of the generation split) poison i perturbs."""

    images: torch.Tensor
    features: torch.Tensor
    losses: torch.Tensor
    target_index: torch.Tensor


def greedy_pairs(dist: torch.Tensor) -> torch.Tensor:
    """For each column (poison) of ``dist [n_sources, n_poisons]``, the row (patched source) it is paired with:
    the globally closest remaining pair is fixed and its row and column leave, until every column is paired
    (one-to-one; needs ``n_sources >= n_poisons``). ``int64 [n_poisons]``."""
    d = dist.detach().float().cpu().clone()  # a few hundred tiny argmins: cheaper on the CPU than as GPU launches
    n_src, n_poi = d.shape
    if n_src < n_poi:
        raise ValueError(f"{n_poi} poisons need at least as many patched sources, got {n_src}")
    out = torch.empty(n_poi, dtype=torch.int64)
    for _ in range(n_poi):
        flat = int(torch.argmin(d))
        i, j = divmod(flat, n_poi)
        out[j] = i
        d[i, :] = float("inf")
        d[:, j] = float("inf")
    return out


def pgd_batch(
    encoder: Encoder,
    targets01: torch.Tensor,
    patched01: torch.Tensor,
    norm: Normalizer,
    p: HtbaProtocol,
    log: Callable[[int, float], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisons ``uint8 [b, 3, S, S]`` from targets ``[b, 3, S, S]`` and patched sources (pixels in [0, 1], on the
    encoder's device), and their final squared feature distances ``[b]``.

    The step is taken on the normalised input (as [BT]); the bound is ``eps / 255`` per pixel (``eps_space=pixel``)
    or per normalised unit (``normalized``, [BT]'s: ``eps * std_c / 255`` per pixel). After the last step the
    poison is rounded to 8 bits and clamped again, so the bound holds for the stored image. ``log(iteration,
    mean distance)`` is called every 100 iterations (progress of a batch that may take minutes).
    """
    with torch.no_grad():
        goal_feats = encoder.forward_global(norm(patched01)).float()
    x = norm(targets01)
    std = norm.std
    bound = (p.eps / 255) / std if p.eps_space == "pixel" else torch.full_like(std, p.eps / 255)
    pert = torch.zeros_like(x)
    losses = torch.zeros(len(x), device=x.device)
    for j in range(p.pgd_iters):
        lr = p.pgd_lr * 0.5 ** (j // p.pgd_lr_halve_every)
        pert.requires_grad_(True)
        with torch.enable_grad():
            feats = encoder.forward_global(x + pert).float()
            goal = goal_feats[greedy_pairs(torch.cdist(goal_feats, feats.detach())).to(x.device)]
            per_pair = ((goal - feats) ** 2).sum(dim=1)
            (grad,) = torch.autograd.grad(per_pair.sum(), pert)
        losses = per_pair.detach()
        if log is not None and j % 100 == 0:
            log(j, float(losses.mean()))
        with torch.no_grad():
            pert = torch.maximum(torch.minimum(pert - lr * grad, bound), -bound)
            pert = norm(norm.inverse(x + pert).clamp(0, 1)) - x  # a valid image
        if float(losses.max()) < p.pgd_stop_loss:
            break
    with torch.no_grad():
        pixels = torch.round(norm.inverse(x + pert).clamp(0, 1) * 255)
        orig = torch.round(targets01 * 255)
        limit = torch.floor(bound * std * 255 + 1e-6)  # per channel, in 8-bit steps
        pixels = torch.maximum(torch.minimum(pixels, orig + limit), orig - limit).clamp(0, 255)
    return pixels.to(torch.uint8), losses


def cache_key(
    weights_id: str, data_fingerprint: str, pair: tuple[str, str], seed: int, p: HtbaProtocol, trigger_sha: str
) -> str:
    """The poison cache folder name: everything the poisons depend on."""
    blob = json.dumps(
        {
            "weights": weights_id,
            "data": data_fingerprint,
            "pair": list(pair),
            "seed": seed,
            "protocol": [p.NAME, p.VERSION, p.generation_fields()],
            "trigger": trigger_sha,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _schedule(n_targets: int, n_sources: int, p: HtbaProtocol, rng: np.random.Generator) -> list[dict]:
    """Every batch of every generation epoch, drawn up front: target and source indices (fresh shuffles per epoch,
    as [BT]'s two shuffled loaders) and the trigger corner of each source."""
    batches = []
    for epoch in range(p.generation_epochs):
        t_perm, s_perm = rng.permutation(n_targets), rng.permutation(n_sources)
        for i, start in enumerate(range(0, n_targets, p.pgd_batch)):
            t_idx = t_perm[start : start + p.pgd_batch]
            s_idx = s_perm[start : start + p.pgd_batch]
            if len(s_idx) < len(t_idx):  # fewer sources than targets: wrap around the shuffled sources
                s_idx = np.resize(s_perm, start + p.pgd_batch)[start : start + len(t_idx)]
            if p.rand_loc:
                pos = random_positions(len(s_idx), p.resolution, p.patch_size, rng)
            else:  # [BT]'s fixed location: 5 px from the bottom-right corner
                pos = np.full((len(s_idx), 2), p.resolution - p.patch_size - 5, dtype=np.int64)
            batches.append({"name": f"batch_{epoch}_{i:04d}", "t": t_idx, "s": s_idx, "pos": pos})
    return batches


def generate_poisons(
    encoder: Encoder,
    targets: torch.Tensor,
    sources: torch.Tensor,
    trigger: torch.Tensor,
    p: HtbaProtocol,
    *,
    folder: Path | None,
    seed: int,
    device: str,
    progress: bool = True,
    desc: str = "poisons",
) -> Poisons:
    """The first ``p.num_poison`` poisons of ``generation_epochs`` passes over ``targets`` (uint8 ``[n, 3, S, S]``,
    the held-out target images), each pass pairing them with ``sources`` (held-out source images) carrying
    ``trigger`` (uint8 ``[3, P, P]``). ``folder`` (None: no cache) holds finished batches; finished batches are
    loaded, missing ones computed and written."""
    rng = np.random.default_rng([seed, 0x47E2])
    plan = _schedule(len(targets), len(sources), p, rng)
    norm = Normalizer(encoder.data_config.mean, encoder.data_config.std, device)
    n_needed, have = p.num_poison, 0
    parts: list[dict[str, np.ndarray]] = []
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    todo = []
    for batch in plan:
        if have >= n_needed:
            break
        todo.append(batch)
        have += len(batch["t"])
    done = sum(folder is not None and (folder / f"{b['name']}.npz").exists() for b in todo)
    with progress_bar(total=len(todo), desc=desc, enabled=progress, initial=done, unit="batch") as bar:
        for batch in todo:
            path = None if folder is None else folder / f"{batch['name']}.npz"
            if path is not None and path.exists():
                with np.load(path) as z:
                    parts.append({k: z[k] for k in z.files})
                continue
            t01 = targets[batch["t"]].to(device).float() / 255
            s01 = paste(sources[batch["s"]], trigger, batch["pos"]).to(device).float() / 255
            images, losses = pgd_batch(
                encoder, t01, s01, norm, p, log=lambda j, loss: bar.set_postfix(iteration=j, distance=f"{loss:.2f}")
            )
            feats = embed(encoder, images, norm, device)
            part = {
                "images": images.cpu().numpy(),
                "features": feats.cpu().numpy(),
                "losses": losses.cpu().numpy(),
                "target_index": np.asarray(batch["t"], dtype=np.int64),
                "source_index": np.asarray(batch["s"], dtype=np.int64),
                "positions": batch["pos"],
            }
            if path is not None:
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, **part)
                os.replace(tmp, path)
            parts.append(part)
            bar.update(1)
    cat = {
        k: np.concatenate([q[k] for q in parts])[:n_needed] for k in ("images", "features", "losses", "target_index")
    }
    if folder is not None:
        meta = {"n": int(len(cat["images"])), "batches": [b["name"] for b in todo]}
        atomic_write_text(folder / "meta.json", json.dumps(meta))
    return Poisons(
        images=torch.from_numpy(cat["images"]),
        features=torch.from_numpy(cat["features"]),
        losses=torch.from_numpy(cat["losses"]),
        target_index=torch.from_numpy(cat["target_index"]),
    )
