"""Backdoor-robustness protocols (HTBA hidden trigger, BadNets visible patch, test-time blocking): torch-free.

Sources, cited field by field below:

- [BT] UCDvision/backdoor_transformer @ 54a6fa5 (Subramanya et al., arXiv 2206.08477, "Backdoor Attacks on Vision
  Transformers"): ``cfg/singlesource_singletarget_1000class_finetune_deit_base/experiment_000{1..10}_base.cfg``,
  ``cfg/dataset.cfg``, ``create_imagenet_filelist.py``, ``generate_poison_transformer.py``,
  ``finetune_transformer.py``, ``test_time_defense.py``, ``vit_grad_rollout.py``.
- [HTBA] UMBCvision/Hidden-Trigger-Backdoor-Attacks (Saha et al., AAAI 2020) ``generate_poison.py``: the same PGD in
  pixel space (the model wraps the normalisation), the released ``data/triggers/trigger_1x.png``.
- [BB] BackdoorBench (Wu et al., NeurIPS 2022 D&B): metric names and definitions (clean accuracy, ASR on triggered
  non-target samples, robust accuracy = triggered samples still given their true label), BadNets' all-to-one
  default (target label 0, poison ratio 0.1).

Where vitbench differs from [BT] (each would change numbers; all are bugs or ambiguities there):

- Pairing of poisons with patched sources: [BT]/[HTBA] meant "closest pair without replacement" but mask only the
  one chosen entry of the distance matrix (and permute the sources in place across iterations), so a source can
  serve several poisons. Here the greedy matching is one-to-one: the globally closest (source, poison) pair is
  fixed, its row and column are removed, repeat.
- Rollout: [BT] pairs block *i*'s attention with the gradient of block *L-1-i* (backward hooks append in reverse
  order) and divides column *j* by row sum *j* (``a / a.sum(dim=-1)`` on ``[1, N, N]``); here each block's map is
  weighted by its own gradient and ``(A + I) / 2`` is row-normalised, as the method states.
- Hooks: [BT]'s defense script ends with empty attention lists (its issue #4), and with timm's fused attention
  (timm >= 0.9) a hook on ``attn_drop`` never fires at all; here fused attention is switched off while maps are
  recorded (:meth:`methods.base.Encoder.attention_maps`), and a test checks that every block's hook fires.
- Evaluation trigger positions: [BT] reseeds ``random.seed(1)`` per batch (every batch reuses one sequence of
  positions); here each test image gets its own position from the run's seed (recorded with the run).
- The victim head is the one after the last epoch; [BT] keeps the epoch with the best accuracy *on the test set*.
- The victim trains on features cached once from the frozen encoder (its train mode equals eval mode: DeiT-B has
  no dropout or drop-path), with vitbench's head init N(0, 0.01) instead of ``nn.Linear``'s default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from benchmarks.protocol import Protocol
from methods.errors import VitbenchError

# [BT] experiments 0001-0010: data/transformer/00xx_base/source_wnid_list.txt -> the cfg's target_wnid.
PAPER_PAIRS: tuple[str, ...] = (
    "n04243546:n02096294",
    "n03666591:n02206856",
    "n04418357:n03970156",
    "n04509417:n01807496",
    "n03792782:n03584254",
    "n03063689:n02092002",
    "n02951585:n01819313",
    "n07697537:n04462240",
    "n03272562:n02165105",
    "n04592741:n03443371",
)
DEFENSES = ("auto", "rollout", "gradcam", "none")
_GENERATION_FIELDS = (
    "resolution",
    "interpolation",
    "n_generation",
    "patch_size",
    "trigger_cells",
    "rand_loc",
    "eps",
    "eps_space",
    "pgd_lr",
    "pgd_iters",
    "pgd_lr_halve_every",
    "pgd_stop_loss",
    "pgd_batch",
    "generation_epochs",
)
BLOCK_BORDERS = ("shift", "clip")
EPS_SPACES = ("pixel", "normalized")


def _check_common(p: HtbaProtocol | BadNetsProtocol) -> None:
    """Refuse settings no run could honour, before anything is loaded (one line naming the field)."""
    if p.defense not in DEFENSES:
        raise VitbenchError(f"--set defense={p.defense}: expected one of {', '.join(DEFENSES)}")
    if p.block_border not in BLOCK_BORDERS:
        raise VitbenchError(f"--set block_border={p.block_border}: expected one of {', '.join(BLOCK_BORDERS)}")
    if p.filter_size % 2 == 0 or p.filter_size < 1:
        raise VitbenchError(f"--set filter_size={p.filter_size}: the box filter needs an odd size")
    for name in ("patch_size", "block_size"):
        if not 1 <= getattr(p, name) <= p.resolution:
            raise VitbenchError(f"--set {name}={getattr(p, name)}: must be in [1, resolution={p.resolution}]")
    if not 0.0 <= p.discard_ratio < 1.0:
        raise VitbenchError(f"--set discard_ratio={p.discard_ratio}: must be in [0, 1)")


@dataclass(frozen=True)
class HtbaProtocol(Protocol):
    """Hidden Trigger Backdoor Attack on a frozen encoder + new linear head, and test-time blocking ([BT]).

    Per source->target pair: ``n_generation`` train images of *every* class are held out of the victim's training
    set ([BT] ``create_imagenet_filelist.py``, seed 10 there, the run's seed here); the held-out target images are
    perturbed (L-inf <= ``eps``/255) so that their features approach those of held-out *source* images carrying
    the pair's trigger at a random location; ``generation_epochs`` passes over them give ``num_poison`` poisons,
    which join the remaining train images (label: the target, so they are clean-label) to train the head.

    Pairs rule: ``pairs`` ("source:target" class folders) is used when every class it names is a class folder;
    the preset ``PAPER_PAIRS`` (ImageNet wnids) is replaced by ``n_pairs`` pairs drawn from the run's seed on data
    without those folders, and ``pairs=()`` always draws. Other lists naming missing classes are refused.

    Defense rule: ``defense=auto`` is gradient-weighted attention rollout for encoders with token attention
    (plain ViTs) and Grad-CAM for the others (hierarchical, convolutional).
    """

    NAME: ClassVar[str] = "backdoor-htba"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {
        "resolution": 64,
        "pairs": (),
        "n_pairs": 2,
        "n_generation": 4,
        "n_test": 8,
        "patch_size": 12,
        "pgd_iters": 10,
        "pgd_lr_halve_every": 5,
        "pgd_batch": 4,
        "num_poison": 12,
        "victim_lr": 0.05,
        "victim_batch_size": 16,
        "filter_size": 13,
        "block_size": 12,
    }

    # data: [BT] transforms.Resize((224, 224)) (torchvision's default bilinear), no crop, no augmentation
    resolution: int = 224
    interpolation: str = "bilinear"
    pairs: tuple[str, ...] = PAPER_PAIRS  # [BT] experiments 0001-0010, one trigger each (trigger_10..19)
    n_pairs: int = 10  # pairs drawn when the preset does not apply
    n_generation: int = 200  # [BT] cfg/dataset.cfg poison_generation=200 train images per class, held out
    n_test: int = 50  # [BT] cfg/dataset.cfg test=50: the first 50 val images (sorted) per class
    # trigger: [BT] patch_size=30, rand_loc=true; [HTBA]'s released triggers are 4x4 random binary RGB cells
    patch_size: int = 30
    trigger_cells: int = 4
    rand_loc: bool = True
    # poison generation: [BT] eps=16, lr=0.001, num_iter=5000, lr halved every 1000 iterations, stop once every
    # pair's squared feature distance is < 15, batches of 32 poisons and 32 patched sources, epochs=3
    eps: int = 16  # L-inf bound in 1/255 of pixel intensity
    eps_space: str = "pixel"  # "normalized": [BT]'s bound, applied to the normalised input (eps * std per channel)
    pgd_lr: float = 0.001
    pgd_iters: int = 5000
    pgd_lr_halve_every: int = 1000
    pgd_stop_loss: float = 15.0
    pgd_batch: int = 32
    generation_epochs: int = 3
    num_poison: int = 600  # [BT] finetune num_poison=600 (= 3 epochs x 200 target images)
    # victim: [BT] feature_extract=True (frozen), new linear head, SGD lr 1e-3 momentum 0.9, batch 64, 10 epochs;
    # its 0.1x step every 10 epochs never fires within 10, so the lr is constant
    victim_epochs: int = 10
    victim_lr: float = 0.001
    victim_momentum: float = 0.9
    victim_batch_size: int = 64
    # test-time defense: [BT] test_time_defense.py / vit_grad_rollout.py: rollout for the top-1 class,
    # discard_ratio 0.9; 31x31 box filter (edge_length + 1) at padding 15; a 30x30 black box at its argmax,
    # shifted to lie inside the image ("shift"); "clip" cuts it at the border instead
    defense: str = "auto"
    discard_ratio: float = 0.9
    filter_size: int = 31
    block_size: int = 30
    block_border: str = "shift"

    def __post_init__(self) -> None:
        _check_common(self)
        if self.eps_space not in EPS_SPACES:
            raise VitbenchError(f"--set eps_space={self.eps_space}: expected one of {', '.join(EPS_SPACES)}")
        if self.num_poison > self.generation_epochs * self.n_generation:
            raise VitbenchError(
                f"--set num_poison={self.num_poison}: more than generation_epochs x n_generation = "
                f"{self.generation_epochs} x {self.n_generation} poisons can be generated"
            )
        for pair in self.pairs:
            src, sep, tgt = pair.partition(":")
            if not sep or not src or not tgt or src == tgt:
                raise VitbenchError(f"--set pairs: {pair!r} is not 'source:target' with two different classes")

    def generation_fields(self) -> dict[str, object]:
        """The fields poison generation reads: their values key the poison cache (changing the defense or the
        victim's training reuses the poisons)."""
        return {n: getattr(self, n) for n in _GENERATION_FIELDS}


@dataclass(frozen=True)
class BadNetsProtocol(Protocol):
    """BadNets (Gu et al. 2017), the visible-patch baseline, on the same victim and defense as HTBA ([BB] names).

    ``poison_rate`` of the train set, drawn from the non-target classes with the run's seed, is replaced by copies
    carrying the trigger and relabelled ``target`` (all-to-one; "" = the first class, label 0 as [BB]'s default).
    The trigger sits ``margin`` pixels from the bottom-right corner ([BT]'s fixed location: 224 - 30 - 5), or at a
    random location per image with ``rand_loc``. ASR is measured on triggered test images of the other classes.
    Defense rule as :class:`HtbaProtocol`.
    """

    NAME: ClassVar[str] = "backdoor-badnets"
    VERSION: ClassVar[int] = 1
    SMOKE: ClassVar[dict] = {
        "resolution": 64,
        "n_test": 8,
        "patch_size": 12,
        "margin": 2,
        "poison_rate": 0.2,
        "victim_lr": 0.05,
        "victim_batch_size": 16,
        "filter_size": 13,
        "block_size": 12,
    }

    resolution: int = 224
    interpolation: str = "bilinear"
    target: str = ""  # class folder; "" = the first class in sorted order ([BB] attack_target 0)
    poison_rate: float = 0.1  # [BB] pratio 0.1
    n_test: int = 50
    patch_size: int = 30
    trigger_cells: int = 4
    rand_loc: bool = False
    margin: int = 5
    victim_epochs: int = 10
    victim_lr: float = 0.001
    victim_momentum: float = 0.9
    victim_batch_size: int = 64
    defense: str = "auto"
    discard_ratio: float = 0.9
    filter_size: int = 31
    block_size: int = 30
    block_border: str = "shift"

    def __post_init__(self) -> None:
        _check_common(self)
        if not 0.0 < self.poison_rate < 1.0:
            raise VitbenchError(f"--set poison_rate={self.poison_rate}: must be in (0, 1)")
        if self.margin < 0 or self.margin + self.patch_size > self.resolution:
            raise VitbenchError(f"--set margin={self.margin}: the trigger must fit inside the image")
