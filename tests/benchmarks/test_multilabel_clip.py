"""DualCoOp end to end on a randomly initialised CLIP (the ``clip`` extra): the zero-shot and partial-label tasks
through the CLI and the harness, on the synthetic layouts. A tiny CLIP stands in for RN50 (see
tests/methods/test_image_text.py); ``vitbench run --method dualcoop:rn50 --task coco-zsl --weights random --smoke``
builds the real-size one the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks.catalog import get_task
from benchmarks.cli import main
from benchmarks.harness import RunContext
from benchmarks.multilabel.zsl import ZeroShotHarness
from benchmarks.synth import synth
from methods import build_encoder, get_adapter

pytestmark = pytest.mark.clip
pytest.importorskip("open_clip", reason="the clip extra (open_clip) is not installed")

from tests.methods.test_image_text import TINY  # noqa: E402


@pytest.fixture(autouse=True)
def _tiny_clip(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(type(get_adapter("dualcoop")), "clip_configs", {"rn50": TINY, "rn101": TINY})
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth("coco-multilabel", tmp_path_factory.mktemp("coco"), seed=0)


def test_coco_zsl_smoke_run_with_dualcoop(coco: Path, tmp_path: Path) -> None:
    argv = ["run", "--method", "dualcoop:rn50", "--task", "coco-zsl", "--data", str(coco), "--weights", "random"]
    assert main([*argv, "--smoke", "--out", str(tmp_path)]) == 0
    record = tmp_path / "runs" / "coco-zsl" / "dualcoop" / "rn50__seed0.json"
    data = json.loads(record.read_text())
    want = {f"{s}_{m}_k{k}" for s in ("zsl", "gzsl") for m in ("P", "R", "F1") for k in (3, 5)}
    assert set(data["metrics"]) == want | {"zsl_mAP", "gzsl_mAP"}
    # ZSL ranks the 2 unseen classes: top 3 and top 5 both predict both of them, so recall is 100 %.
    assert data["metrics"]["zsl_R_k3"] == 100.0 and data["metrics"]["zsl_P_k3"] == data["metrics"]["zsl_P_k5"]
    assert (
        data["probe"]["classes"] == {"seen": 4, "unseen": 2} and data["probe"]["image_text"] == "open_clip:rn50-custom"
    )
    assert data["dataset"]["n_classes"] == 6 and len(data["dataset"]["annotations"]) == 3
    official = data["extra"]["official_selection"]
    assert official["delta_zsl_F1_k3"] >= 0 and official["zsl"]["epoch"] >= 1
    assert main(["validate", str(record)]) == 0


def test_voc_partial_runs_dualcoop_for_an_encoder_with_a_text_tower(tmp_path: Path) -> None:
    voc = synth("voc", tmp_path / "voc", seed=1)
    argv = ["run", "--method", "dualcoop:rn101", "--task", "voc-partial", "--data", str(voc), "--weights", "random"]
    overrides = ["--set", "proportions=[0.1,0.9]", "--set", "csc=true"]
    assert main([*argv, "--smoke", *overrides, "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out/runs/voc-partial/dualcoop/rn101__seed0.json").read_text())
    assert set(data["metrics"]) == {"mAP", "mAP_p10", "mAP_p90"} and data["probe"]["head"] == "dualcoop"
    detail = data["extra"]["per_proportion"]
    assert len(detail["p10"]["history"]) == 2 and detail["p10"]["loss_w"] == pytest.approx(0.15)  # 0.03 * 0.5 / 0.1
    # The linear head stays available for CLIP: --set head=linear runs the probe grid on the same encoder.
    assert (
        main([*argv, "--smoke", "--set", "head=linear", "--set", "proportions=[0.5]", "--out", str(tmp_path / "lin")])
        == 0
    )
    lin = json.loads((tmp_path / "lin/runs/voc-partial/dualcoop/rn101__seed0.json").read_text())
    assert lin["probe"]["head"] == "linear" and set(lin["metrics"]) == {"mAP", "mAP_p50"}


def test_nuswide_zsl_trains_on_a_subset_of_seen_classes_per_step(tmp_path: Path) -> None:
    nus = synth("nuswide", tmp_path / "nus", seed=0)
    spec = get_task("nuswide-zsl")
    enc = build_encoder("dualcoop:rn50", weights="random")
    ctx = RunContext(task=spec, encoder=enc, data_root=nus, work_dir=tmp_path, progress=False)
    out = ZeroShotHarness(spec).run(ctx, spec.protocol_for(True, {"num_train_cls": 2}))
    assert out.probe["classes"] == {"seen": 5, "unseen": 4} and 0 <= out.metrics["zsl_mAP"] <= 100
    assert out.dataset.splits == {"train-seen": 44, "test-zsl": 21, "test-gzsl": 24}


@pytest.mark.parametrize("task", ["coco-zsl", "nuswide-zsl"])
def test_a_zero_shot_split_naming_unknown_concepts_is_one_line_and_no_record(
    task: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if task == "coco-zsl":
        root = synth("coco-multilabel", tmp_path / "data", seed=0)
        split = root / "annotations" / "instances_val2014_unseen_48_17.json"
        doc = json.loads(split.read_text())
        doc["categories"].append({"id": 90, "name": "toothbrush", "supercategory": "thing"})  # not in the GZSL file
        split.write_text(json.dumps(doc))
        want = f"{split}: category 90 ('toothbrush') is not category 90"
    else:
        root = synth("nuswide", tmp_path / "data", seed=0)
        split = root / "zsl" / "unseen.txt"
        split.write_text(split.read_text() + "unicorn\n")
        want = f"{split}: 1 label(s) not in Concepts81.txt, e.g. 'unicorn'"
    argv = ["run", "--method", "dualcoop:rn50", "--task", task, "--data", str(root), "--weights", "random", "--smoke"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and want in err, err
    assert not (tmp_path / "out" / "runs").exists()
