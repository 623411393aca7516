"""Repair methods. Each module registers one method with `register_method` (see registry.py for the contract)."""

from __future__ import annotations

import importlib

_BUILTIN = ("interpolate", "slerp", "task_arithmetic", "ties", "dare", "resta", "safe_lora", "antidote", "somf")

for _name in _BUILTIN:
    try:
        importlib.import_module(f"realignkit.methods.{_name}")
    except ModuleNotFoundError as _exc:
        # Data-driven methods are written in parallel; a missing module must not break the others.
        if _exc.name != f"realignkit.methods.{_name}":
            raise
