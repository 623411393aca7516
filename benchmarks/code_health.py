"""Code-health figures for src/realignkit, read with `ast` (nothing is imported or run).

Prints: the count of `Any` in function signatures (argument and return annotations), the public functions that
take more than 8 parameters, the longest functions, module basenames that occur more than once, and the
import-time of `realignkit --help` (best of N runs of `python -m realignkit.cli --help`).

    PYTHONPATH=src python benchmarks/code_health.py [--runs 5] [--no-timing]
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "realignkit"
MAX_PARAMS = 8


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _count_any(annotation: ast.expr | None) -> int:
    if annotation is None:
        return 0
    return sum(
        1
        for node in ast.walk(annotation)
        if (isinstance(node, ast.Name) and node.id == "Any")
        or (isinstance(node, ast.Attribute) and node.attr == "Any")
        or (isinstance(node, ast.Constant) and isinstance(node.value, str) and "Any" in node.value)
    )


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    a = fn.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    params += [x for x in (a.vararg, a.kwarg) if x is not None]
    return [p for p in params if p.arg not in ("self", "cls")]


def _is_public(qualname: str) -> bool:
    return not any(part.startswith("_") for part in qualname.split("."))


def _qualified(tree: ast.Module):
    """(qualified name, function node) for module-level functions and methods of module-level classes."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{item.name}", item


def measure() -> dict:
    any_count = 0
    many_params: list[tuple[str, int]] = []
    lengths: list[tuple[int, str]] = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in _functions(tree):
            any_count += _count_any(fn.returns)
            any_count += sum(_count_any(p.annotation) for p in _params(fn))
            lengths.append((fn.end_lineno - fn.lineno + 1, f"{rel}:{fn.name}"))
        for qualname, fn in _qualified(tree):
            n = len(_params(fn))
            if n > MAX_PARAMS and _is_public(qualname) and not path.name.startswith("_"):
                many_params.append((f"{rel}:{qualname}", n))
    names = Counter(p.name for p in _modules() if p.name != "__init__.py")
    return {
        "any_in_signatures": any_count,
        "public_functions_over_8_params": sorted(many_params),
        "longest_functions": sorted(lengths, reverse=True)[:10],
        "duplicate_basenames": sorted(n for n, c in names.items() if c > 1),
        "lines": sum(len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()),
    }


def help_import_seconds(runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent), "OMP_NUM_THREADS": "1"}
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "realignkit.cli", "--help"], env=env, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    figures = measure()
    print(f"lines of code: {figures['lines']}")
    print(f"Any in function signatures: {figures['any_in_signatures']}")
    over = figures["public_functions_over_8_params"]
    print(f"public functions with > {MAX_PARAMS} parameters: {len(over)}")
    for name, n in over:
        print(f"  {n:3d}  {name}")
    print("10 longest functions (lines):")
    for n, name in figures["longest_functions"]:
        print(f"  {n:3d}  {name}")
    dups = figures["duplicate_basenames"]
    print(f"duplicate module basenames: {len(dups)} {' '.join(dups)}")
    if not args.no_timing:
        print(f"`python -m realignkit.cli --help` (= `realignkit --help`) wall time, best of {args.runs}: {help_import_seconds(args.runs):.3f} s")


if __name__ == "__main__":
    main()
