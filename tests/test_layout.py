"""The layout's promises: the packages depend on each other one way only, and the environment stays light.

Every import is read from the source (module level and inside functions alike, but
not under ``if TYPE_CHECKING:``), so a late import cannot hide a dependency.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> import name (pyproject.toml's package-dir)
PACKAGES = {"envs": "mgpo_datasets", "mgpo_env": "mgpo_env", "tools": "mgpo_tools", "agents": "mgpo_agents"}
# What each package may import of the others: each layer builds only on the ones below it.
ALLOWED = {
    "mgpo_datasets": set(),
    "mgpo_env": {"mgpo_datasets"},
    "mgpo_tools": {"mgpo_datasets", "mgpo_env"},
    "mgpo_agents": {"mgpo_datasets", "mgpo_env", "mgpo_tools"},
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST) -> set[str]:
    """Top-level names of every absolute import in ``tree``, skipping ``if TYPE_CHECKING:`` blocks."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def package_dependencies() -> dict[str, set[str]]:
    """For each of our packages, the other packages of ours its modules import."""
    ours = set(PACKAGES.values())
    graph: dict[str, set[str]] = {}
    for folder, name in PACKAGES.items():
        imported: set[str] = set()
        for path in (ROOT / folder).rglob("*.py"):
            imported |= _imported_names(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = (imported & ours) - {name}
    return graph


def test_packages_import_each_other_one_way_only():
    graph = package_dependencies()
    for package, allowed in ALLOWED.items():
        assert graph[package] <= allowed, f"{package} imports {sorted(graph[package] - allowed)}, which build on it"


def test_the_dependency_reader_sees_late_imports_and_skips_type_checking_ones():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import mgpo_agents\n"
        "def f():\n    from mgpo_tools.report import build_report\n"
        "from .sample import Sample\n"
    )
    assert _imported_names(tree) == {"typing", "mgpo_tools"}


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "statement, forbidden",
    [
        ("import mgpo_env", {"torch", "transformers", "accelerate", "mgpo_agents", "mgpo_tools", "matplotlib", "openenv", "fastapi", "uvicorn"}),
        ("import mgpo_datasets", {"torch", "transformers", "mgpo_env", "mgpo_agents", "mgpo_tools", "gymnasium"}),
        ("import mgpo_tools.report", {"torch", "transformers", "mgpo_agents"}),
        ("import mgpo_agents", {"torch", "transformers", "openenv", "fastapi", "uvicorn"}),
    ],
)
def test_importing_a_package_loads_nothing_above_it(statement, forbidden):
    loaded = _modules_loaded_by(statement)
    assert not loaded & forbidden, f"`{statement}` loads {sorted(loaded & forbidden)}"
