"""lib/vis4mer has no import cycle, counting imports inside functions (which hide one at import time)."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"


def import_graph(lib: Path = LIB) -> dict[str, set[str]]:
    """{module: vis4mer modules it imports anywhere in its file}."""
    files = {}
    for path in (lib / "vis4mer").rglob("*.py"):
        parts = path.relative_to(lib).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str:
        while name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {known(alias.name) for alias in node.names if alias.name.split(".")[0] == "vis4mer"}
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                if name.split(".")[0] == "vis4mer":
                    imported |= {known(f"{name}.{alias.name}") for alias in node.names}
        graph[module] = imported - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_library_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    package = tmp_path / "vis4mer"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from vis4mer.b import g\n")
    (package / "b.py").write_text("def g():\n    from vis4mer import a\n")
    assert cycles(import_graph(tmp_path)) == [["vis4mer.a", "vis4mer.b"]]


def test_distributed_does_not_import_training_or_evaluation():
    assert not import_graph()["vis4mer.distributed"] & {"vis4mer.training", "vis4mer.evaluation", "vis4mer.launch"}
