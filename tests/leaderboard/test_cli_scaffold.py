"""`vitbench leaderboard` and `vitbench new-method` through the real CLI."""

from __future__ import annotations

import ast
import py_compile
import shutil
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.scaffold import class_name, scaffold_method
from methods.errors import VitbenchError

REPO = Path(__file__).resolve().parents[2]


def test_leaderboard_command_builds_and_prints_summary(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "web"
    assert main(["leaderboard", "--results", str(small), "--out", str(out), "--tolerance", "3"]) == 0
    text = capsys.readouterr().out
    assert f"Site: {(out / 'index.html').resolve()}" in text and "toy-task" in text and "1 rejected" in text
    assert (out / "tasks" / "toy-task.html").exists()
    # --tolerance 3 puts selfpatch's -2.00 inside the tolerance
    assert "outside" not in (out / "tasks" / "toy-task.html").read_text().split('id="main"')[1].split("</table>")[0]
    assert main(["leaderboard", "--results", str(small), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str((out / "index.html").resolve())


def test_leaderboard_command_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "s")]) == 1
    assert "not a vitbench results folder" in capsys.readouterr().err
    assert main(["compare", "--tolerance", "top1=abc"]) == 1
    assert "--tolerance top1=abc" in capsys.readouterr().err


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The bits of a checkout that new-method touches."""
    (tmp_path / "methods").mkdir()
    shutil.copy(REPO / "methods" / "registry.py", tmp_path / "methods" / "registry.py")
    return tmp_path


def _registry_entries(path: Path) -> dict[str, str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Call):
            literal = node.iter.func.value  # the {...} of `for _name, _target in {...}.items():`
            return {ast.literal_eval(k): ast.literal_eval(v) for k, v in zip(literal.keys, literal.values)}
    raise AssertionError("registry literal not found")


def test_new_method_scaffolds_adapter_test_registry_and_results(
    repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _registry_entries(repo_copy / "methods" / "registry.py")
    assert main(["new-method", "my-net", "--root", str(repo_copy)]) == 0
    assert "wrote" in capsys.readouterr().out
    after = _registry_entries(repo_copy / "methods" / "registry.py")
    assert after == {**before, "my-net": "methods.my_net:MyNet"}
    adapter = repo_copy / "methods" / "my_net.py"
    test = repo_copy / "tests" / "methods" / "test_my_net.py"
    for path in (adapter, test):
        py_compile.compile(str(path), doraise=True)
    assert 'name = "my-net"' in adapter.read_text() and "class MyNet(MethodAdapter)" in adapter.read_text()
    assert 'get_adapter("my-net")' in test.read_text()
    assert (repo_copy / "results" / "runs" / "_methods" / "my-net" / "README.md").exists()


def test_new_method_refuses_duplicates_bad_names_and_overwrites(repo_copy: Path) -> None:
    registry = repo_copy / "methods" / "registry.py"
    original = registry.read_text()
    with pytest.raises(VitbenchError, match="already registered"):
        scaffold_method("dino", repo_copy)
    for bad in ("My_Net", "<script>", "9net", "net-", "a b"):
        with pytest.raises(VitbenchError, match="method name"):
            scaffold_method(bad, repo_copy)
    (repo_copy / "methods" / "taken.py").write_text("# someone's work\n")
    with pytest.raises(VitbenchError, match="exists; not overwriting"):
        scaffold_method("taken", repo_copy)
    assert registry.read_text() == original  # nothing half-written
    assert (repo_copy / "methods" / "taken.py").read_text() == "# someone's work\n"
    with pytest.raises(VitbenchError, match="no methods/registry.py"):
        scaffold_method("fresh", repo_copy / "elsewhere")
    assert class_name("dino-mm") == "DinoMm"
