"""Repair methods. Each module registers one method with `register_method` (see registry.py for the contract).

Modules are imported on demand by `registry.get_method(name)` (a repair only pays for the method it runs);
`registry.method_names()` imports all of them.
"""

from __future__ import annotations

import importlib

BUILTIN_METHODS = ("interpolate", "slerp", "task_arithmetic", "ties", "dare", "resta", "safe_lora", "antidote", "somf",
                   "linear", "gta", "dare_linear", "dare_ties", "breadcrumbs")


def import_method_module(name: str) -> bool:
    """Import realignkit.methods.<name> if it exists; False when there is no such module."""
    try:
        importlib.import_module(f"realignkit.methods.{name}")
    except ModuleNotFoundError as exc:
        # Methods are written in parallel; a module that is not there yet must not break the others.
        if exc.name != f"realignkit.methods.{name}":
            raise
        return False
    return True


def load_all_methods() -> None:
    for name in BUILTIN_METHODS:
        import_method_module(name)
