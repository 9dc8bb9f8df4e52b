"""The import graph of the ``geoseg`` package: no import circles (issue 23).

Every ``import`` in every module counts, function-level ones included; imports under
``if TYPE_CHECKING:`` do not (they never run). Modules named in registries as
``"module:function"`` strings (the model-file registry, ``geoseg.modelfile.MODEL_KINDS``) are imported by
name when needed, like the steps of plugins.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "geoseg"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _runtime_imports(path: Path, package: str) -> list[str]:
    """Names imported by a module at run time (all levels; not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for stmt in node.body for n in ast.walk(stmt)}
    names = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def import_graph() -> nx.DiGraph:
    """Module -> module it imports, within ``geoseg``."""
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in _runtime_imports(path, package):
            while target and target not in modules:  # geoseg.x.func -> geoseg.x
                target = target.rpartition(".")[0]
            if target.startswith("geoseg") and target != name:
                graph.add_edge(name, target)
    return graph


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert graph.has_edge("geoseg.pipeline.batch", "geoseg.pipeline.scene")  # imported inside a function
    assert not graph.has_edge("geoseg.pipeline.scene", "geoseg.pipeline.pipeline")  # for type hints only
    assert graph.has_edge("geoseg.nn.train", "geoseg.nn.uda") and graph.has_edge("geoseg.nn.uda", "geoseg.nn.fitting")


def test_no_import_circles() -> None:
    circles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert circles == []
