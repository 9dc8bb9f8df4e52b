"""The import graph of the ``geoseg`` package: no import circles, and the layers of docs/CONVENTIONS.md (issue 23).

Every ``import`` in every module counts, function-level ones included; imports under
``if TYPE_CHECKING:`` do not (they never run). Modules named in registries as
``"module:function"`` strings (the model-file registry, ``geoseg.modelfile.MODEL_KINDS``) are imported by
name when needed, like the steps of plugins.
"""

from __future__ import annotations

import ast
from functools import lru_cache
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


@lru_cache(maxsize=1)
def import_graph() -> nx.DiGraph:
    """Module -> module it imports, within ``geoseg`` (built once; not to be modified)."""
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


#: geoseg's modules in layers, lowest first (docs/CONVENTIONS.md): a module imports from its own
#: layer or lower ones only. Units are ``geoseg.<name>`` and everything under it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("files and checks", ("errors", "atomic", "inputs", "raster", "vector", "shipped", "spacenet_csv", "scene_checks",
                          "cache", "modelfile", "configfile", "manifest", "synthetic")),
    ("algorithms on arrays and graphs", ("road", "metrics")),
    ("models, tiling and scoring", ("tiling", "classifiers", "evaluate", "nn", "sequence")),
    ("the step protocol", ("pipeline.step", "pipeline.registry")),
    ("steps", ("steps",)),
    ("pipelines and what runs them", ("pipeline", "map_update", "report")),
    ("command line", ("cli", "__main__")),
]  # fmt: skip
#: Upward imports kept on purpose, with the reason.
ALLOWED_UPWARD = {
    ("geoseg.sequence", "geoseg.pipeline.sequence"): "geoseg.sequence.run_sequence, documented API, forwards to the runner when called",
}


def _layer(module: str) -> int:
    """The index in :data:`LAYERS` of a module (the longest unit that names it)."""
    name = module.removeprefix("geoseg.")
    units = [(unit, i) for i, (_, members) in enumerate(LAYERS) for unit in members if name == unit or name.startswith(unit + ".")]
    assert units, f"{module} is in no layer of tests/test_import_graph.py LAYERS: place it"
    return max(units, key=lambda u: len(u[0]))[1]


def test_the_layering_holds() -> None:
    # the package itself (`from geoseg import __version__`) is imported by all: its own code is the
    # version and names loaded on first use, so it is no layer
    upward = sorted(
        f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
        for a, b in import_graph().edges()
        if a != "geoseg" and b != "geoseg" and (a, b) not in ALLOWED_UPWARD and _layer(b) > _layer(a)
    )
    assert upward == []


def test_the_layering_test_sees_an_upward_import() -> None:
    assert _layer("geoseg.steps.deep") > _layer("geoseg.pipeline.step") > _layer("geoseg.nn.train")
    assert _layer("geoseg.pipeline.engine") > _layer("geoseg.steps.deep")
    assert ("geoseg.sequence", "geoseg.pipeline.sequence") in import_graph().edges()  # the one kept upward import exists
