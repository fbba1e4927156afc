"""The package's modules form no import cycle, and each imports on its own.

The static graph counts every import of a project module, at the top of a module or inside a
function (which is where a cycle used to hide: moving such an import to the top broke the
package), except those under ``if TYPE_CHECKING:``. ``from package import name`` counts as an
import of ``package.name`` when that is a module, else of ``package``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtlue.errors import MtlueError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mtlue", "victims")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names if alias.name in modules)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - child.level + 1]
                    source = ".".join([*parts, *([child.module] if child.module else [])])
                else:
                    source = child.module or ""
                for alias in child.names:
                    if f"{source}.{alias.name}" in modules:
                        found.add(f"{source}.{alias.name}")
                    elif source in modules:
                        found.add(source)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    found.discard(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := walk(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    modules = project_modules()
    assert {"mtlue.errors", "mtlue.methods.base", "victims.weighting.registry"} <= set(modules)
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_errors_import_nothing_of_the_project():
    modules = project_modules()
    assert imported_modules("mtlue.errors", modules["mtlue.errors"], modules) == set()


def test_every_error_class_derives_from_the_one_base():
    import importlib

    for name in project_modules():
        module = importlib.import_module(name) if not name.endswith("__main__") else None
        for value in vars(module or sys).values():
            if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == name:
                assert issubclass(value, MtlueError), f"{name}.{value.__name__} does not derive from mtlue.errors.MtlueError"


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(name for name in project_modules() if not name.endswith("__main__")))
def test_each_module_imports_alone(module):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
