"""No import circle in src/: every module can be read, and moved, without dragging its importers.

The graph counts every import a module makes, at module level, inside functions and under
`if TYPE_CHECKING:`, because each of them is a dependency a reader (and mypy) has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

PACKAGE = "utopia_handler"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def module_files(root: Path = SOURCE) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its `__init__.py`)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, path: Path, modules: Collection[str]) -> Iterator[str]:
    """The package's modules that a module imports anywhere in its text."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # `from pkg import name` imports the module pkg.name when there is one, else pkg.
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            yield from submodules
            if len(submodules) < len(node.names) and base in modules:
                yield base


def import_graph(root: Path = SOURCE) -> dict[str, set[str]]:
    """Module -> the package's own modules it imports."""
    modules = module_files(root)
    return {
        name: set(imported_modules(name, path, modules)) - {name} for name, path in modules.items()
    }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        # Iterative, so a long chain of imports cannot hit the recursion limit.
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(cycles)


def test_no_module_imports_itself_through_others() -> None:
    cycles = import_cycles(import_graph())

    assert not cycles, "import circles in src/:\n" + "\n".join(
        f"  {len(cycle)} modules: {', '.join(cycle)}" for cycle in cycles
    )


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..top import Thing\n"
    )
    (package / "top.py").write_text("def late():\n    import utopia_handler.other\n")
    (package / "other.py").write_text("from utopia_handler.sub import leaf\n")

    graph = import_graph(package)

    assert graph["utopia_handler.sub"] == {"utopia_handler.sub.leaf"}
    assert graph["utopia_handler.sub.leaf"] == {"utopia_handler.top"}
    assert graph["utopia_handler.top"] == {"utopia_handler.other"}
    assert graph["utopia_handler.other"] == {"utopia_handler.sub.leaf"}
    assert import_cycles(graph) == [
        ["utopia_handler.other", "utopia_handler.sub.leaf", "utopia_handler.top"]
    ]
