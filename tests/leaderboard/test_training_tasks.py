"""The leaderboard over the committed results: imagenet-finetune, linear-dino and imagenet-supervised are runnable
tasks with a registered protocol, and every reported linear number sits on the task of the protocol it came from."""

from __future__ import annotations

from pathlib import Path

from benchmarks.catalog import get_task
from leaderboard.build import build_site
from leaderboard.reported import load_reported

RESULTS = Path(__file__).resolve().parents[2] / "results"


def test_site_shows_the_trained_tasks_as_runnable(tmp_path: Path) -> None:
    build_site(RESULTS, tmp_path / "site")
    shown = (
        ("imagenet-finetune", "imagenet-finetune v1"),
        ("linear-dino", "dino-eval-linear v1"),
        ("imagenet-supervised", "imagenet-supervised v1"),
    )
    for task, protocol in shown:
        page = (tmp_path / "site" / "tasks" / f"{task}.html").read_text()
        assert f"Registered protocol <code>{protocol}" in page, task
    assert "reported numbers only" in (tmp_path / "site" / "tasks" / "linear-mae.html").read_text()


def test_reported_linear_rows_are_on_their_own_protocols_task() -> None:
    """DINO's model-zoo numbers are eval_linear.py's; MAE's, MoCo v3's, iBOT's and VIM's come from other scripts:
    none may meet runs of another protocol, and vitbench's own cached grid (`linear`) reports nothing."""
    by_task: dict[str, set[str]] = {}
    for paper, row in load_reported(RESULTS / "reported").rows:
        if row.task.startswith("linear"):
            by_task.setdefault(row.task, set()).add(paper.id)
    assert by_task == {
        "linear-dino": {"dino"},
        "linear-ibot": {"ibot"},
        "linear-mae": {"mae"},
        "linear-mocov3": {"mocov3"},
        "linear-igpt": {"vit-vqgan"},
    }
    assert get_task("linear-dino").runnable and get_task("imagenet-finetune").runnable
    assert get_task("imagenet-supervised").runnable and get_task("imagenet-c").runnable
    assert not get_task("linear-mae").runnable
