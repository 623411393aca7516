"""What a method's `prepare` hook sees: the opened inputs, the tensor plan and a place for manifest extras."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from realignkit.checkpoints.sources import TensorSource

T = TypeVar("T")


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor and the name it has in each input (None where that input lacks it)."""

    out_name: str
    aligned_name: str | None
    tuned_names: tuple[str | None, ...]
    unaligned_name: str | None
    shape: tuple[int, ...]
    out_dtype: torch.dtype
    passthrough: bool  # copied unchanged from the first tuned input (only there, or not a float tensor)


@dataclass
class TensorBundle:
    """One plan row loaded in fp32."""

    aligned: torch.Tensor
    tuned: list[torch.Tensor]
    unaligned: torch.Tensor | None


@dataclass
class RepairContext:
    """Whole-model context handed to `prepare(ctx, params)`; see methods/registry.py for the contract."""

    method: str
    aligned: TensorSource
    tuned: list[TensorSource]  # one per --tuned (LoraAdapterSource for adapters)
    unaligned: TensorSource | None
    calibration: Path | None
    paths: dict[str, Any]
    plan: list[TensorPlan]
    loader: Callable[[TensorPlan], TensorBundle]  # supplied by the engine
    manifest_extra: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = True
    # Extra files a method publishes with its output (e.g. calibration statistics, a learned mask).
    output_files: dict[str, Callable[[Path], None]] = field(default_factory=dict)

    def add_output_file(self, name: str, write: Callable[[Path], None]) -> None:
        """Register `write(out_dir)`; the engine calls it inside the atomic output dir, before the manifest."""
        self.output_files[name] = write

    def tensors(self, row: TensorPlan) -> TensorBundle:
        """Load one plan row (aligned, each tuned, unaligned) as fp32 tensors."""
        return self.loader(row)

    def progress(self, iterable: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
        return iter(tqdm(iterable, desc=desc, total=total, disable=None if self.show_progress else True, leave=False))
