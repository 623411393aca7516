"""The architecture keeps itself: read the import graph of src/realignkit (with `ast`, importing nothing) and fail
when a module imports a package from a floor above its own, or from another package on its own floor, or when
modules import each other in a circle (deferred imports inside functions count too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "realignkit"

# Floors, lowest first. A package may import its own modules and any package on a LOWER floor, nothing else.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("common", "data"),  # errors, atomic writes, fingerprints, JSONL, paths; bundled data files
    ("checkpoints", "report", "drift"),  # read/write and load weights; render results JSON; degradation tables
    ("calibration", "evaluation"),  # activation statistics, mask training; suites, backends, judges, the audit
    ("methods", "diagnose", "lab"),  # repair methods and engine; per-layer drift; the model organism
    ("pipeline",),  # sweep, Pareto, pick, demo
    ("api",),  # the Python API (`realignkit/api.py`, re-exported lazily by `realignkit/__init__.py`)
    ("cli",),  # parse, validate, call the library
)
FLOOR_OF = {package: floor for floor, packages in enumerate(FLOORS) for package in packages}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py")) if "__pycache__" not in p.parts}


def _package(module: str) -> str:
    """First component below `realignkit`; the root `realignkit/__init__.py` counts as the API floor."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "api"


def _imported_modules(module: str, path: Path) -> set[str]:
    """Our modules that `module` imports, anywhere in the file (top level or inside functions)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in MODULES else base)
    return {t for t in targets if t == "realignkit" or t.startswith("realignkit.")}


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


GRAPH = {module: _imported_modules(module, path) for module, path in MODULES.items()}


def _allowed(importer: str, target: str) -> bool:
    if target == "realignkit" and importer != "realignkit":
        return True  # `from realignkit import __version__`: the package's own metadata, at no floor
    source, dest = _package(importer), _package(target)
    return source == dest or FLOOR_OF[dest] < FLOOR_OF[source]


def test_every_package_has_a_floor():
    packages = {_package(m) for m in MODULES}
    assert packages - set(FLOOR_OF) == set(), "add the new package to FLOORS in tests/test_layers.py"
    assert set(FLOOR_OF) - packages == set(), "a package in FLOORS no longer exists"


def test_no_module_imports_a_floor_above_or_beside_its_own():
    wrong = sorted(
        f"{importer} (floor {FLOOR_OF[_package(importer)]}) imports {target} (floor {FLOOR_OF[_package(target)]})"
        for importer, targets in GRAPH.items()
        for target in targets
        if not _allowed(importer, target)
    )
    assert wrong == []


def test_no_import_circles():
    # Edges into the root package are `from realignkit import __version__`; its lazy `__getattr__` re-export of
    # the API runs only on attribute access, so it closes no circle at import time.
    graph = {module: targets - {"realignkit"} for module, targets in GRAPH.items()}
    circles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert circles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively (the graph is small, but recursion depth is not ours to spend)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [{"a", "b"}]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}, [{"a", "b", "c"}]),
    ],
)
def test_circle_finder_finds_circles(graph, expected):
    assert [c for c in _strongly_connected(graph) if len(c) > 1] == expected


def test_floor_rule_catches_an_upward_import():
    assert not _allowed("realignkit.evaluation.audit", "realignkit.pipeline.sweep")
    assert not _allowed("realignkit.methods.engine", "realignkit.lab.world")  # same floor, other package
    assert _allowed("realignkit.pipeline.sweep", "realignkit.evaluation.audit")
    assert _allowed("realignkit.common.manifest", "realignkit")


def test_readme_layout_lists_every_package_on_its_floor():
    readme = (PACKAGE_DIR.parents[1] / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `([a-z_]+)(?:/|\.py)` \|", layout, flags=re.MULTILINE)
    documented = {name: int(floor) for floor, name in rows}
    expected = {name: floor for name, floor in FLOOR_OF.items() if name != "data"}  # data/ holds only files
    assert documented == expected
