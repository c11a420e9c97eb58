"""The library's modules import only from their own layer or the layers below, with no circle.

Layers, bottom to top: the batch convention, errors, checks, lazy imports and the compiled kernels; the
projection functions; the polytopes; the solvers; autodiff; experiments; the command line.
Only module-level imports count (an import inside a function runs when called, and one under
``if TYPE_CHECKING:`` never runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "spigot"

#: Module-name prefixes and their layer (longest prefix wins).
LAYERS = {
    "spigot._batch": 0,
    "spigot._batch_kernel": 0,
    "spigot.errors": 0,
    "spigot.checks": 0,
    "spigot._lazy": 0,
    "spigot._simplex_kernel": 0,
    "spigot._word_graphs": 0,
    "spigot.projections": 1,
    "spigot.polytopes": 2,
    "spigot.solvers": 3,
    "spigot.autodiff": 4,
    "spigot.experiments": 5,
    "spigot.cli": 6,
    "spigot.__main__": 6,
    "spigot": 6,  # the package's __init__: the public API, on top of everything
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> int:
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def _runs_at_import(node: ast.stmt) -> list[ast.stmt]:
    """The statements of ``node`` that run when the module is imported (not TYPE_CHECKING)."""
    if isinstance(node, ast.If):
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            return list(node.orelse)
        return list(node.body) + list(node.orelse)
    if isinstance(node, ast.Try):
        return list(node.body) + [s for h in node.handlers for s in h.body] + list(node.orelse) + list(node.finalbody)
    return [node]


def imports_of(name: str) -> set[str]:
    """The spigot modules that ``name`` imports at module level (``from pkg import sub`` -> ``pkg.sub``)."""
    tree = ast.parse(MODULES[name].read_text())
    statements, found = list(tree.body), set()
    while statements:
        node = statements.pop()
        expanded = _runs_at_import(node)
        if expanded != [node]:
            statements.extend(expanded)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m == "spigot" or m.startswith("spigot.")}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_has_a_layer():
    assert {name: layer(name) for name in MODULES}  # layer() raises on an unknown prefix


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_to_the_same_or_lower_layers(name):
    upward = sorted(t for t in GRAPH[name] if layer(t) > layer(name))
    assert not upward, f"{name} (layer {layer(name)}) imports {upward} from higher layers"


def test_no_import_circle():
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH.get(name, ())):
            if target not in GRAPH:
                continue
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
