"""`TensorSource`: what the repair engine and the methods read a model through, one tensor at a time.

`ModelDirSource` (a Hugging Face model dir) and `LoraAdapterSource` (a PEFT LoRA adapter on top of its base)
both have this shape; `open_source` picks one for a path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch


class TensorSource(Protocol):
    """Tensors by stored name: the list of names, each tensor's shape and dtype, and the tensor itself."""

    path: Path
    is_adapter: bool

    def names(self) -> list[str]: ...

    def __contains__(self, name: str) -> bool: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def dtype(self, name: str) -> torch.dtype: ...

    def get(self, name: str) -> torch.Tensor: ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...
