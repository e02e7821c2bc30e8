"""The package's import graph follows DESIGN.md's layers and has no circles.

Every module of ``torchspex`` is parsed with :mod:`ast` (nothing is imported), and each
``import`` / ``from ... import`` of a torchspex module becomes an edge of one of three kinds:

* ``module``: runs when the importing module is imported (top level, class bodies);
* ``function``: runs when a function is called (an import inside a ``def``);
* ``type``: never runs (under ``if TYPE_CHECKING:``; annotations are strings here).

The direction rule holds for every kind: a module imports only modules of its own layer or
below (:data:`LAYERS`). Circles are refused among the edges that run (``module`` and
``function``): a function-level import that closes a circle works only because of when it
runs, and is the kind of coupling the layers exist to prevent. Type-only edges may close a
circle (``viz`` annotates with ``Interactions``, which ``Interactions.plot`` calls back).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "torchspex"

#: Layer of each top-level unit of the package, bottom up. A module may import only from its
#: own layer or below: fourier <- sampling <- decoders <- results <- attr/llm, with grouping and
#: viz at the results' level, so the math side (fourier, sampling, decoders) never sees them.
LAYERS = {
    # 0 - leaves: import nothing from torchspex
    "torchspex.errors": 0,
    "torchspex.cache": 0,
    "torchspex.distributed": 0,
    # 1..3 - the math side: tensors and value functions only
    "torchspex.fourier": 1,
    "torchspex.sampling": 2,
    "torchspex.decoders": 3,
    # 4 - the result, its views and exports, the functional entry point, what a feature is
    "torchspex.interactions": 4,
    "torchspex._formats": 4,
    "torchspex.interop": 4,
    "torchspex.optimize": 4,
    "torchspex.explain": 4,
    "torchspex._pipeline": 4,  # the steps every entry point runs (explain's and attr's)
    "torchspex.viz": 4,
    "torchspex.grouping": 4,
    # 5 - the model side: the only code that calls a model
    "torchspex.attr": 5,
    "torchspex.llm": 5,
    # 6 - the package root and the command line
    "torchspex": 6,
    "torchspex._demo": 6,
    "torchspex.__main__": 6,
}

#: Units the math side must never import, whatever their layer number says.
NEVER_FROM_MATH = ("torchspex.grouping", "torchspex.viz", "torchspex.attr", "torchspex.llm")
MATH = ("torchspex.fourier", "torchspex.sampling", "torchspex.decoders")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "module", "function" or "type"
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.kind}, line {self.line})"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module ``name`` refers to (a name inside a module resolves to the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [t for t in map(_resolve, names) if t and t.startswith("torchspex")]
    base = node.module or ""
    if node.level:  # relative import
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    if base != "torchspex" and not base.startswith("torchspex."):
        return []
    out = []
    for alias in node.names:  # `from torchspex import viz` imports the submodule
        full = f"{base}.{alias.name}"
        target = full if full in MODULES else _resolve(base)
        if target:
            out.append(target)
    return out


def _edges(module: str) -> list[Edge]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    edges: list[Edge] = []

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit_one(stmt, "type")
                for stmt in child.orelse:
                    visit_one(stmt, kind)
                continue
            visit_one(child, kind)

    def visit_one(node: ast.AST, kind: str) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            edges.extend(Edge(module, t, kind, node.lineno) for t in _targets(node, module))
        inner = kind
        if kind == "module" and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.Lambda)):  # fmt: skip
            inner = "function"
        visit(node, inner)

    visit(tree, "module")
    return [e for e in edges if e.target != module]


EDGES = [edge for module in MODULES for edge in _edges(module)]


def _unit(module: str) -> str | None:
    """The :data:`LAYERS` key a module belongs to (its longest matching prefix)."""
    best = None
    for unit in LAYERS:
        if (module == unit or module.startswith(unit + ".")) and (
            best is None or len(unit) > len(best)
        ):
            best = unit
    return best


def _cycles(kinds: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected components (more than one module) among edges of ``kinds``."""
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in EDGES:
        if edge.kind in kinds:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _describe(component: list[str], kinds: tuple[str, ...]) -> str:
    members = set(component)
    inside = dict.fromkeys(str(e) for e in EDGES
                           if e.kind in kinds and e.source in members and e.target in members)
    return "circle among " + ", ".join(component) + ":\n    " + "\n    ".join(inside)


def test_the_graph_is_read():
    assert len(MODULES) > 40
    assert "torchspex.fourier.spectrum" in MODULES
    seen = {(e.source, e.target, e.kind) for e in EDGES}
    assert ("torchspex.decoders.base", "torchspex.errors", "module") in seen
    assert ("torchspex.interactions", "torchspex.viz", "module") in seen  # from torchspex import
    assert ("torchspex.viz._common", "torchspex.interactions", "type") in seen
    assert ("torchspex.decoders.sampled", "torchspex.decoders.spex", "function") in seen


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if _unit(m) is None)
    assert not missing, f"give these modules a layer in tests/test_layering.py LAYERS: {missing}"


def test_imports_point_down_the_layers():
    wrong = [
        f"{edge}: layer {LAYERS[_unit(edge.source)]} imports layer {LAYERS[_unit(edge.target)]}"
        for edge in EDGES
        if LAYERS[_unit(edge.source)] < LAYERS[_unit(edge.target)]
    ]
    assert not wrong, "imports against DESIGN.md's direction:\n" + "\n".join(wrong)


@pytest.mark.parametrize("side", MATH)
def test_the_math_side_sees_no_model_grouping_or_plot(side):
    wrong = [str(e) for e in EDGES
             if _unit(e.source) == side and _unit(e.target) in NEVER_FROM_MATH]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_the_package_root():
    # `from torchspex import X` inside the package runs torchspex/__init__.py, which imports
    # everything: a hidden circle. Import the defining module (submodules are fine).
    wrong = [str(e) for e in EDGES if e.target == "torchspex" and e.kind != "type"]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles_at_module_level():
    kinds = ("module",)
    circles = [_describe(c, kinds) for c in _cycles(kinds)]
    assert not circles, "\n".join(circles)


def test_no_import_circles_through_function_level_imports():
    # A lazy import that closes a circle is refused too: move the shared piece down a layer.
    kinds = ("module", "function")
    circles = [_describe(c, kinds) for c in _cycles(kinds)]
    assert not circles, "\n".join(circles)


def test_moved_names_keep_their_public_paths():
    import torchspex
    import torchspex.decoders
    import torchspex.decoders.base
    import torchspex.errors
    import torchspex.fourier
    import torchspex.fourier.transforms
    import torchspex.interop

    error = torchspex.errors.BudgetTooSmallError
    assert torchspex.BudgetTooSmallError is error
    assert torchspex.decoders.BudgetTooSmallError is error
    assert torchspex.decoders.base.BudgetTooSmallError is error
    for name in torchspex.interop.__all__:
        assert hasattr(torchspex.interop, name)
    assert torchspex.fourier.evaluate is torchspex.fourier.transforms.evaluate
