"""The design card's layout: the card's files at the top, the shared machinery in hw3/, imports one way, and a
README that points to nothing outside the repository."""
from __future__ import annotations

import ast
import re

from conftest import ROOT

CARD = {"p1_dcgan.py", "p2_acgan.py", "p3_dann.py", "p4_adda.py", "models.py", "datasets.py", "tsne.py",
        "hw3_eval.py", "app.py"}
SCRIPTS = {"p1_dcgan", "p2_acgan", "p3_dann", "p4_adda", "tsne", "hw3_eval", "app"}
BOTTOM = {"hw3.cli", "hw3.checkpoints", "hw3.distributed"}


def import_graph() -> dict[str, set[str]]:
    paths = [*ROOT.glob("*.py"), *(ROOT / "hw3").glob("*.py")]
    names = {("hw3." if p.parent.name == "hw3" else "") + p.stem: p for p in paths if p.stem != "__init__"}
    graph = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module == "hw3":
                deps |= {f"hw3.{a.name}" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                deps.add(node.module)
        graph[name] = deps & set(names)
    return graph


def test_the_top_level_is_the_design_card():
    assert {p.name for p in ROOT.glob("*.py")} == CARD
    assert {"hw3_p1p2.sh", "hw3_p3.sh", "hw3_p4.sh", "demo.sh"} <= {p.name for p in ROOT.glob("*.sh")}


def test_imports_go_one_way():
    graph = import_graph()
    for name in ("datasets", "models"):  # the loaders and networks need only the package's bottom
        assert graph[name] <= BOTTOM, (name, graph[name])
    for name, deps in graph.items():
        if name.startswith("hw3."):
            assert not deps & SCRIPTS, f"{name} imports a script: {deps & SCRIPTS}"
    state = {}

    def visit(node: str, path: tuple[str, ...]) -> None:  # depth-first search for a cycle
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join(path)}"
        state[node] = "open"
        for dep in graph[node]:
            visit(dep, (*path, dep))
        state[node] = "done"

    for name in graph:
        visit(name, (name,))


def test_readme_points_inside_the_repository():
    text = (ROOT / "README.md").read_text()
    assert "../shared" not in text and str(ROOT.parent) + "/" not in text  # nothing beside the repository
    for name in re.findall(r"`((?:docs|benchmarks|checkpoints|examples|hw3)/[\w./-]+)`", text):
        if "*" not in name and "<" not in name:
            path = ROOT / name
            assert path.exists() or path.with_suffix(".py").exists(), f"README names {name}, not in the repository"
    for name in re.findall(r"^\| `([\w.]+)`", text, flags=re.M):  # the layout table's first column
        assert (ROOT / name).exists(), f"README's layout names {name}"
