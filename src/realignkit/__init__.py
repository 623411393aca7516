"""realignkit: audit, predict and repair safety degradation after fine-tuning.

Python API (see README, "Python API"): `from realignkit import repair, audit, sweep`. They are imported on first
use, so `import realignkit` (and the command line's start-up) stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "audit", "repair", "sweep"]


def __getattr__(name: str) -> Any:
    if name in ("repair", "audit", "sweep"):
        from realignkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'realignkit' has no attribute {name!r}")
