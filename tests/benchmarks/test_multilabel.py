"""Multi-label recognition without open_clip: masks, metrics, layout readers, DualCoOp's arithmetic, and the
partial-label harness end to end with linear heads."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.catalog import get_task
from benchmarks.cli import main
from benchmarks.data.coco_multilabel import ZSL_FILES, read_coco_zsl, scan_coco_multilabel
from benchmarks.data.nuswide import read_nuswide_zsl, scan_nuswide
from benchmarks.data.voc import VOC_CLASSES, parse_annotation, scan_voc
from benchmarks.harness import RunContext
from benchmarks.multilabel.dualcoop import (
    DualCoOp,
    EvalSet,
    PromptRecipe,
    aggregate,
    dualcoop_asl,
    epoch_lr,
    positive_probability,
    predict,
    train_prompts,
)
from benchmarks.multilabel.masks import label_draws, partial_targets
from benchmarks.multilabel.metrics import multilabel_ap, topk_prf
from benchmarks.multilabel.partial import PartialLabelHarness
from benchmarks.probe.heads import Target
from benchmarks.synth import synth
from methods import build_encoder
from methods.errors import DataError, VitbenchError
from methods.image_text import ImageText


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny matrices: on shared cores intra-op threads cost more in synchronisation than they save."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("voc", tmp_path_factory.mktemp("voc"), seed=0)


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("coco-multilabel", tmp_path_factory.mktemp("coco"), seed=0)


@pytest.fixture(scope="module")
def nus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("nuswide", tmp_path_factory.mktemp("nus"), seed=0)


# ------------------------------------------------------------------------------------------------ masks
def _labels(n: int = 400, c: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.15).astype(np.int8)
    y[:5, :3] = -1  # unknown in the data already
    return y


def test_masks_are_seeded_and_nested() -> None:
    y = _labels()
    draws = label_draws(*y.shape, seed=3)
    assert np.array_equal(draws, label_draws(*y.shape, seed=3))
    assert not np.array_equal(draws, label_draws(*y.shape, seed=4))
    masks = [partial_targets(y, p, draws, min_known=1) for p in (0.1, 0.2, 0.5, 0.9)]
    for small, large in zip(masks, masks[1:]):
        assert ((small >= 0) <= (large >= 0)).all(), "a label kept at p must be kept at every larger p"
    for m, p in zip(masks, (0.1, 0.2, 0.5, 0.9)):
        kept = m >= 0
        assert (m[kept] == y[kept]).all(), "kept labels keep their value"
        assert (m[y < 0] == -1).all(), "labels unknown in the data stay unknown"
        assert abs(kept.sum() / (y >= 0).sum() - p) < 0.03 + 1 / y.shape[1]
    # Another seed draws other masks.
    assert not np.array_equal(masks[0], partial_targets(y, 0.1, label_draws(*y.shape, seed=4)))


def test_masks_hide_every_label_of_an_image_only_when_the_protocol_allows_it() -> None:
    y = _labels()
    draws = label_draws(*y.shape, seed=0)
    strict = partial_targets(y, 0.1, draws, min_known=1)
    assert ((strict >= 0).sum(axis=1) >= 1).all()
    official = partial_targets(y, 0.1, draws, min_known=0)  # DualCoOp's independent draws: 0.9^20 = 12 % of images
    assert (~(official >= 0).any(axis=1)).sum() > 10
    # The forced labels are each image's smallest draws, so forcing keeps the masks nested.
    assert ((strict >= 0) <= (partial_targets(y, 0.3, draws, min_known=1) >= 0)).all()
    assert ((official >= 0) <= (strict >= 0)).all()


# ------------------------------------------------------------------------------------------------ metrics
def test_map_equals_sklearn_macro_over_classes_with_a_positive() -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    scores = rng.random((30, 5))
    y = (rng.random((30, 5)) < 0.3).astype(np.int64)
    y[:, 3] = 0  # a class with no positive
    m = multilabel_ap(torch.from_numpy(scores), torch.from_numpy(y))
    cols = [c for c in range(5) if y[:, c].any()]
    want = average_precision_score(y[:, cols], scores[:, cols], average="macro")
    assert m["mAP"] == pytest.approx(100 * want, abs=1e-4)
    # Convention: a class without a positive has no AP and is left out. sklearn (and DualCoOp's helper) count it as
    # 0, which would pull the mean down by a factor 4/5 here.
    with pytest.warns(UserWarning, match="No positive class"):
        everything = average_precision_score(y, scores, average="macro")
    assert 100 * everything == pytest.approx(m["mAP"] * len(cols) / 5, abs=1e-4)
    assert m["n_classes_without_positive"] == 1


def test_map_with_unknown_labels_and_a_single_class_matches_sklearn_on_the_known_ones() -> None:
    """Partial labels: -1 entries are dropped per class (sklearn on each class's known rows); one class alone is its
    binary AP; micro AP pools the known (image, class) pairs; a class whose only positives are unknown counts as
    having none."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    scores = rng.random((40, 4))
    full = (rng.random((40, 4)) < 0.4).astype(np.int64)
    y = np.where(rng.random((40, 4)) < 0.3, -1, full)
    y[:, 2] = np.where(full[:, 2] == 1, -1, 0)  # class 2: every positive unknown -> no known positive
    m = multilabel_ap(torch.from_numpy(scores), torch.from_numpy(y))
    per = [average_precision_score(y[y[:, c] >= 0, c], scores[y[:, c] >= 0, c]) for c in (0, 1, 3)]
    assert m["mAP"] == pytest.approx(100 * np.mean(per), abs=1e-4)
    assert m["n_classes_without_positive"] == 1
    known = y.flatten() >= 0
    micro = average_precision_score(y.flatten()[known], scores.flatten()[known])
    assert m["micro_AP"] == pytest.approx(100 * micro, abs=1e-4)
    one = multilabel_ap(torch.from_numpy(scores[:, :1]), torch.from_numpy(full[:, :1]))
    assert one["mAP"] == pytest.approx(100 * average_precision_score(full[:, 0], scores[:, 0]), abs=1e-4)
    assert one["mAP"] == pytest.approx(one["micro_AP"], abs=1e-4)  # one class: macro and micro are the same ranking
    none = multilabel_ap(torch.from_numpy(scores), torch.zeros((40, 4), dtype=torch.long))
    assert none == {"mAP": 0.0, "micro_AP": 0.0, "n_classes_without_positive": 4.0}


def test_topk_precision_recall_f1_by_hand() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.3], [0.2, 0.1, 0.7, 0.6], [0.5, 0.4, 0.3, 0.9]])
    y = torch.tensor([[1, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]])
    # top 2: image 0 -> {0, 1}: 1 hit; image 1 -> {2, 3}: 1 hit; image 2 -> {3, 0}: 0 hits.
    # precision = 2 / 6, recall = 2 / 4 positives, F1 = 2 * (1/3 * 1/2) / (1/3 + 1/2) = 0.4
    p, r, f1 = topk_prf(scores, y, 2)
    assert (p, r, f1) == pytest.approx((100 / 3, 50.0, 40.0))
    assert topk_prf(scores, y, 9)[1] == 100.0  # k capped at the number of classes: every positive is found
    assert topk_prf(scores, torch.zeros_like(y), 1) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------------ DualCoOp maths
def test_region_aggregation_shapes_and_single_region_case() -> None:
    gen = torch.Generator().manual_seed(0)
    regions = torch.randn(3, 7, 16, generator=gen)
    text = torch.nn.functional.normalize(torch.randn(10, 16, generator=gen), dim=-1)
    logits = aggregate(regions, text)
    assert logits.shape == (3, 2, 5)
    # One region: the class-wise softmax over regions is 1, so each logit is 5 * 20 * cos(region, prompt).
    one = aggregate(regions[:, :1], text)
    cos = torch.nn.functional.normalize(regions[:, 0], dim=-1) @ text.T  # [3, 10]: negative prompts first
    torch.testing.assert_close(one, 100 * cos.view(3, 2, 5))
    # Several regions: per class, softmax over regions of the *positive* prompt's scores weights both prompts' scores.
    # (The reference is computed in float64; aggregate runs in float32, so logits of ~+-100 agree to ~1e-5.)
    r, t = torch.nn.functional.normalize(regions.double(), dim=-1), text.double()
    for b in range(3):
        for c in range(5):
            neg, pos = 20 * r[b] @ t[c], 20 * r[b] @ t[5 + c]  # [R] each
            w = pos.softmax(0)
            assert logits[b, 0, c].item() == pytest.approx(5 * (w * neg).sum().item(), rel=1e-5, abs=1e-4)
            assert logits[b, 1, c].item() == pytest.approx(5 * (w * pos).sum().item(), rel=1e-5, abs=1e-4)
    torch.testing.assert_close(positive_probability(logits), torch.sigmoid(logits[:, 1] - logits[:, 0]))


def test_dualcoop_asl_is_the_engine_asl_on_the_logit_difference_summed() -> None:
    logits = torch.randn(6, 2, 4, generator=torch.Generator().manual_seed(1)) * 3
    y = torch.tensor([[1, 0, -1, 0], [0, 1, 1, -1], [0, 0, 0, 1], [1, 1, 0, 0], [-1, -1, -1, 0], [0, 1, 0, 1]])
    got = dualcoop_asl(logits, y)
    # softmax over (negative, positive) = sigmoid of their difference; DualCoOp sums, the engine averages.
    diff = (logits[:, 1] - logits[:, 0])[:, None, :]  # [B, H=1, C]
    engine = Target("multi", 4, loss="asl").head_losses(diff, y)[0] * (y >= 0).sum()
    torch.testing.assert_close(got, engine, rtol=1e-5, atol=1e-5)
    wild = logits.clone()
    wild[:, :, 2][y[:, 2] < 0] = 40.0  # unknown labels contribute nothing
    torch.testing.assert_close(dualcoop_asl(wild, y), got)
    # The focusing weights carry no gradient (DualCoOp's disable_torch_grad_focal_loss).
    x = logits.clone().requires_grad_(True)
    dualcoop_asl(x, y).backward()
    pos = torch.softmax(logits, 1)[0, 1, 0]  # image 0, class 0: a positive, gamma_pos 1
    want = -(1 - pos) * (1 - pos)  # d/dl_pos of -(1 - p) log p with (1 - p) held fixed: -(1 - p) * (1 - p)
    assert x.grad[0, 1, 0].item() == pytest.approx(want.item(), rel=1e-4)


def test_epoch_lr_is_dassl_constant_warmup_then_cosine() -> None:
    lrs = [epoch_lr(e, 0.002, 50, 1, 1e-5) for e in range(50)]
    assert lrs[0] == 1e-5 and lrs[1] == pytest.approx(0.002)
    assert lrs[26] == pytest.approx(0.001) and lrs[49] == pytest.approx(0.001 * (1 + math.cos(math.pi * 48 / 50)))
    # The same sequence from torch's own schedulers, stepped the way Dassl's ConstantWarmupScheduler steps them.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50)
    seq = [1e-5]
    for _ in range(49):
        seq.append(opt.param_groups[0]["lr"])
        opt.step()
        cos.step()
    assert seq == pytest.approx(lrs)


# ------------------------------------------------------------------------------------------------ layouts
def _voc_xml(*objects: tuple[str, int]) -> str:
    body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objects)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def test_voc_labels_and_difficult_objects(voc: Path, tmp_path: Path) -> None:
    train = scan_voc(voc, "trainval")
    assert train.classes == VOC_CLASSES and train.targets.shape == (48, 20) and len(scan_voc(voc, "test")) == 24
    xml = tmp_path / "a.xml"
    xml.write_text(_voc_xml(("dog", 0), ("cat", 1), ("Person", 0), ("dog", 1)))
    y = parse_annotation(xml)
    assert y[VOC_CLASSES.index("dog")] == 1 and y[VOC_CLASSES.index("person")] == 1
    assert y[VOC_CLASSES.index("cat")] == 0, "a class present only as difficult objects is a negative"
    assert parse_annotation(xml, difficult="ignore")[VOC_CLASSES.index("cat")] == -1
    xml.write_text(_voc_xml(("dragon", 0)))
    with pytest.raises(DataError, match=r"a\.xml: object class 'dragon' is not one of VOC's 20 classes"):
        parse_annotation(xml)
    xml.write_text("<annotation></annotation>")
    with pytest.raises(DataError, match=r"a\.xml: no <object>"):
        parse_annotation(xml)


def test_voc_missing_image_is_one_line(voc: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(voc, tmp_path / "v"))
    first = (root / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").read_text().split()[0]
    (root / f"VOCdevkit/VOC2007/JPEGImages/{first}.jpg").unlink()
    with pytest.raises(DataError, match=rf"test\.txt: image listed but absent: {first}"):
        scan_voc(root, "test")


def test_coco_labels_map_category_ids_to_contiguous_indices(coco: Path) -> None:
    train = scan_coco_multilabel(coco, "train2014")
    # ids 1, 2, 3, 18, 28, 61 -> indices 0..5 in increasing id order, names from the file
    assert train.split.classes == ("person", "bicycle", "car", "dog", "umbrella", "cake")
    assert train.skipped == {"images_without_labels": 1} and len(train.split) == 47
    assert set(train.annotations) == {"instances_train2014.json"}
    z = read_coco_zsl(coco)
    assert [z.classes[i] for i in z.unseen] == ["bicycle", "umbrella"] and len(z.seen) == 4
    assert (z.train.split.targets[:, list(z.unseen)] == -1).all()
    assert (z.zsl.split.targets[:, list(z.unseen)] == 1).any(axis=1).all()


def test_coco_bad_files_are_one_line(coco: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(coco, tmp_path / "c"))
    path = root / "annotations/instances_val2014.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"instances_val2014\.json: annotation id .* has category_id 99, which is not"):
        scan_coco_multilabel(root, "val2014")
    unseen = root / ZSL_FILES["zsl"][1]
    doc = json.loads(unseen.read_text())
    doc["categories"].append({"id": 90, "name": "toothbrush"})
    unseen.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"unseen_48_17\.json: category 90 \('toothbrush'\) is not category 90"):
        read_coco_zsl(root)


def test_nuswide_layout_and_bad_split_files(nus: Path, tmp_path: Path) -> None:
    train = scan_nuswide(nus, "Train")
    assert train.split.classes == ("sky", "water", "animal", "flowers") and train.skipped["images_without_labels"] > 0
    z = read_nuswide_zsl(nus)
    assert len(z.seen) == 5 and len(z.unseen) == 4 and z.classes[5:] == train.split.classes
    root = Path(shutil.copytree(nus, tmp_path / "n"))
    (root / "zsl" / "seen.txt").write_text("beach\nnot-a-tag\n")
    with pytest.raises(
        DataError, match=r"seen\.txt: 1 label\(s\) not in NUS_WID_Tags/TagList1k\.txt, e\.g\. 'not-a-tag'"
    ):
        read_nuswide_zsl(root)
    label = root / "Groundtruth/TrainTestLabels/Labels_sky_Test.txt"
    label.write_text(label.read_text() + "1\n")
    with pytest.raises(DataError, match=r"Labels_sky_Test\.txt: 25 lines, but its image list has 24"):
        scan_nuswide(root, "Test")


# ------------------------------------------------------------------------------------------------ harness
def _constant_map(y: np.ndarray) -> float:
    """mAP of a constant score: every class's AP is its positive rate (over the classes with a positive)."""
    rates = [(y[:, c] == 1).mean() for c in range(y.shape[1]) if (y[:, c] == 1).any()]
    return 100.0 * float(np.mean(rates))


def test_voc_partial_smoke_run_records_every_proportion(voc: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    argv = ["run", "--method", "dino", "--task", "voc-partial", "--data", str(voc), "--weights", "random", "--smoke"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    record = tmp_path / "runs" / "voc-partial" / "dino" / "vits16__seed0.json"
    data = json.loads(record.read_text())
    want = {f"mAP_p{p}" for p in range(10, 100, 10)} | {"mAP"}
    assert set(data["metrics"]) == want and data["track"] == "smoke"
    assert data["metrics"]["mAP"] == pytest.approx(np.mean([data["metrics"][k] for k in want - {"mAP"}]))
    assert data["probe"]["head"] == "linear" and data["dataset"]["splits"] == {"trainval": 48, "test": 24}
    assert data["metrics"]["mAP_p90"] > _constant_map(scan_voc(voc, "test").targets) + 15
    official = data["extra"]["official_selection"]
    assert official["mAP"] >= data["metrics"]["mAP"] and "p10" in official
    assert main(["validate", str(record)]) == 0
    assert "mAP_p10" in capsys.readouterr().out  # the summary table shows every proportion


@pytest.mark.parametrize("task", ["coco-partial", "nuswide-partial"])
def test_partial_label_tasks_on_their_layouts(task: str, coco: Path, nus: Path, tmp_path: Path) -> None:
    spec = get_task(task)
    enc = build_encoder("dino:vits16", weights="random")
    ctx = RunContext(task=spec, encoder=enc, data_root=coco if task == "coco-partial" else nus, work_dir=tmp_path)
    protocol = spec.protocol_for(True, {"proportions": (0.2, 0.8), "epochs": 10})
    out = PartialLabelHarness(spec).run(ctx, protocol)
    assert set(out.metrics) == {"mAP", "mAP_p20", "mAP_p80"} and 0 < out.metrics["mAP"] <= 100
    assert out.dataset.skipped and out.dataset.n_classes == (6 if task == "coco-partial" else 4)
    # The synthetic sets are learnable: a linear head on random-ViT features beats a constant score.
    test = scan_coco_multilabel(coco, "val2014") if task == "coco-partial" else scan_nuswide(nus, "Test")
    assert out.metrics["mAP_p80"] > _constant_map(test.split.targets) + 15


def test_tasks_needing_a_text_tower_refuse_other_encoders(coco: Path, voc: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    base = ["--method", "dino", "--weights", "random", "--smoke", "--out", str(tmp_path)]
    assert main(["run", "--task", "coco-zsl", "--data", str(coco), *base]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dino:vits16 has no text tower" in err
    assert main(["run", "--task", "voc-partial", "--data", str(voc), "--set", "head=dualcoop", *base]) == 1
    assert "has no text tower" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(VitbenchError, match="proportions"):
        get_task("voc-partial").protocol_for(True, {"proportions": (0.0,)})


@pytest.mark.parametrize("bad", ["unknown-class", "no-object", "absent-image"])
def test_bad_voc_input_is_one_line_naming_the_file_and_no_record(
    bad: str,
    voc: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    root = Path(shutil.copytree(voc, tmp_path / "v")) / "VOCdevkit/VOC2007"
    image_id = (root / "ImageSets/Main/trainval.txt").read_text().split()[3]
    xml = root / "Annotations" / f"{image_id}.xml"
    if bad == "unknown-class":
        xml.write_text(_voc_xml(("dog", 0), ("dragon", 0)))
        want = f"{xml}: object class 'dragon' is not one of VOC's 20 classes"
    elif bad == "no-object":
        xml.write_text("<annotation><filename>x.jpg</filename></annotation>")
        want = f"{xml}: no <object>"
    else:
        (root / "JPEGImages" / f"{image_id}.jpg").unlink()
        want = f"{root / 'ImageSets/Main/trainval.txt'}: image listed but absent: {image_id}"
    argv = ["run", "--method", "dino", "--task", "voc-partial", "--data", str(tmp_path / "v"), "--weights", "random"]
    assert main([*argv, "--smoke", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and want in err, err
    assert not (tmp_path / "out" / "runs").exists()


# ------------------------------------------------------------------------------------------------ DualCoOp's loop
class BagOfWords(ImageText):
    """A toy text tower (no CLIP needed): token embeddings averaged up to the end token, then projected."""

    name = "bag-of-words"
    embed_dim = 16
    context_length = 24
    token_width = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.proj = torch.nn.Embedding(100, 16), torch.nn.Linear(16, 16, bias=False)
        self.vocab: dict[str, int] = {}

    def _ids(self, text: str) -> list[int]:
        return [self.vocab.setdefault(w, 2 + len(self.vocab)) for w in text.replace(".", " .").split()]

    def tokenize(self, texts):  # noqa: ANN001, ANN201
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [1, *self._ids(t), 99]  # start, words, end (the largest id, as CLIP's)
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def token_count(self, text: str) -> int:
        return len(self._ids(text))

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.emb(tokens)

    def encode_embedded(self, embedded: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(tokens.shape[1])[None] <= tokens.argmax(-1)[:, None]).float()
        return self.proj((embedded * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))

    def forward_image(self, images: torch.Tensor) -> torch.Tensor:
        raise AssertionError("not used")

    def forward_regions(self, images: torch.Tensor) -> torch.Tensor:
        raise AssertionError("not used")


def _toy(n: int = 120, c: int = 5, r: int = 3, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """Region features ``[n, r, 16]`` where a present class adds its prototype to one region."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.35).astype(np.int64)
    proto = rng.normal(size=(c, 16))
    reg = rng.normal(scale=0.5, size=(n, r, 16))
    for i in range(n):
        for k in np.flatnonzero(y[i]):
            reg[i, rng.integers(r)] += 2 * proto[k]
    return reg.astype(np.float16), torch.from_numpy(y)


@pytest.mark.parametrize("csc", [False, True])
def test_prompts_put_learned_context_between_start_token_and_class_name(csc: bool) -> None:
    towers = BagOfWords().eval().requires_grad_(False)
    names = ["dog", "potted_plant", "car"]
    model = DualCoOp(towers, names, n_ctx_pos=4, n_ctx_neg=2, csc=csc)
    assert model.ctx_pos.shape == ((3, 4, 16) if csc else (4, 16)) and model.ctx_neg.shape[-2] == 2
    # "X X X X potted plant ." -> [start, X x4, potted, plant, ., end]: the suffix starts at the class name.
    tokens = model.tokens_pos[1]
    assert tokens[0] == 1 and tokens.argmax() == 8 and int(tokens[7]) == towers.vocab["."]
    torch.testing.assert_close(model.suffix_pos[1, 0], towers.emb.weight[towers.vocab["potted"]])
    text = model.text_features()
    assert text.shape == (6, 16) and torch.allclose(text.norm(dim=-1), torch.ones(6))
    sub = model.text_features(torch.tensor([2, 0]))  # negatives of classes 2, 0, then their positives
    torch.testing.assert_close(sub, text[[2, 0, 5, 3]])
    with pytest.raises(VitbenchError, match="exceeds the text tower's 24 tokens"):
        DualCoOp(towers, names, n_ctx_pos=21, n_ctx_neg=2)


def test_prompt_training_learns_and_only_moves_the_contexts() -> None:
    towers = BagOfWords().eval().requires_grad_(False)
    regions, y = _toy()
    model = DualCoOp(towers, [f"class{k}" for k in range(5)], 4, 4, csc=True)
    frozen = {k: v.clone() for k, v in towers.state_dict().items()}
    fit, test = np.arange(80), np.arange(80, 120)
    held_out = EvalSet(regions, y[test], list(range(5)), rows=test)
    untrained = multilabel_ap(predict(model, held_out, "cpu"), y[test])["mAP"]
    # The toy text tower's gradients are far larger than CLIP's, so it trains at a far smaller lr.
    recipe = PromptRecipe(4, 4, True, 1e-4, 10, 16, 0.9, 5e-4, 0, 1e-5, 1.0, 2.0, 1.0, 0.05)

    def fit_loss(m: DualCoOp) -> float:
        with torch.no_grad():
            return dualcoop_asl(m(torch.from_numpy(regions[fit].astype(np.float32))), y[fit]).item()

    before = fit_loss(model)
    history = train_prompts(
        model,
        regions,
        y,
        fit,
        list(range(5)),
        recipe,
        on_epoch=lambda e, m: {"loss": fit_loss(m)},
        seed=0,
        device="cpu",
        progress=False,
    )
    assert len(history) == 10 and history[-1]["loss"] < 0.7 * before
    trained = multilabel_ap(predict(model, held_out, "cpu"), y[test])["mAP"]
    assert trained > untrained + 15 and trained > _constant_map(y[test].numpy()) + 15
    assert all(torch.equal(v, towers.state_dict()[k]) for k, v in frozen.items()), "CLIP itself stays frozen"
