"""The shape of the tree: no import circle between modules, and each package imports only what its README
says it may (docs/architecture.md, "The parts")."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("gigaformat", "tiler", "boxlink", "proxy", "bootstrap", "localcloud")
MAY_IMPORT = {
    "gigaformat": set(),
    "tiler": {"gigaformat"},
    "boxlink": {"gigaformat"},
    "proxy": {"gigaformat"},
    "bootstrap": {"gigaformat"},
    "localcloud": {"gigaformat"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every gigatile module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p): p for p in files}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges[name]):
            assert state.get(target) != 1, "import circle: " + " -> ".join(path[path.index(target):] + [target])
            if target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])


def test_each_package_imports_only_what_it_may():
    for name, targets in graph().items():
        package = name.split(".")[0]
        others = {t.split(".")[0] for t in targets} - {package}
        assert others <= MAY_IMPORT[package], f"{name} imports {sorted(others - MAY_IMPORT[package])}"
