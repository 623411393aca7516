"""The repair engine's inputs: model references resolved to local dirs, opened sources, and the fp32 loader."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from realignkit.checkpoints import open_source
from realignkit.checkpoints.lora_merge import local_model
from realignkit.checkpoints.references import ResolvedModel
from realignkit.common.errors import BadInputError
from realignkit.methods.context import TensorBundle, TensorPlan

if TYPE_CHECKING:
    from realignkit.checkpoints.sources import TensorSource

PathLike = str | os.PathLike[str]
ModelRef = str | os.PathLike[str] | ResolvedModel  # a dir, a reference (`org/name@rev`, `A+LORA`) or a resolved one


@dataclass
class ResolvedInputs:
    """Local dirs for every role, and where each came from (hub repo + commit, `+lora`) for the manifest/card."""

    aligned: Path
    tuned: list[Path]
    unaligned: Path | None
    references: dict[str, Any] = field(default_factory=dict)


def resolve_inputs(aligned: ModelRef, tuned: Sequence[ModelRef], unaligned: ModelRef | None, *,
                   search_dirs: list[Path] | None = None, progress: bool = True) -> ResolvedInputs:
    """Resolve `org/name[@rev]` and `MODEL+LORA` references; `aligned+LORA` as --tuned stays an adapter dir."""
    aligned_dir, aligned_ref = local_model(aligned, role="--aligned", search_dirs=search_dirs, progress=progress)
    references: dict[str, Any] = {"aligned": aligned_ref.describe()}
    tuned_dirs = []
    for index, item in enumerate(tuned):
        path, ref = local_model(item, role="--tuned", adapter_base=aligned_dir, search_dirs=search_dirs,
                                progress=progress)
        tuned_dirs.append(path)
        references[f"tuned[{index}]"] = ref.describe()
    unaligned_dir = None
    if unaligned is not None:
        unaligned_dir, ref = local_model(unaligned, role="--unaligned", search_dirs=search_dirs, progress=progress)
        references["unaligned"] = ref.describe()
    return ResolvedInputs(aligned_dir, tuned_dirs, unaligned_dir, references)


def all_finite(tensor: torch.Tensor) -> bool:
    """A finite sum proves every entry finite in one fast reduction; only a non-finite sum (NaN/Inf, or a rare
    overflow of finite values) needs the ~20x slower elementwise isfinite to decide."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


class Loader:
    """Loads a plan row (or a row block of it) in fp32, reading aligned once; refuses NaN/Inf unless allowed.

    With a `compute_dtype` narrower than fp32 every input is first rounded to it (mergekit's `dtype`: the inputs
    are cast to it before merging); the arithmetic itself stays fp32.
    """

    def __init__(self, aligned: TensorSource, tuned: list[TensorSource], unaligned: TensorSource | None, allow_nonfinite: bool,
                 compute_dtype: torch.dtype | None = None, device: torch.device | None = None) -> None:
        self.aligned, self.tuned, self.unaligned = aligned, tuned, unaligned
        self.allow_nonfinite = allow_nonfinite
        self.compute_dtype = compute_dtype if compute_dtype not in (None, torch.float32) else None
        self.device = device or torch.device("cpu")  # where the bundle goes once read and checked on the CPU

    def _checked(self, tensor: torch.Tensor, role: str, name: str) -> torch.Tensor:
        if self.compute_dtype is not None:
            tensor = tensor.to(self.compute_dtype)
        tensor = tensor.float()
        if not self.allow_nonfinite and not all_finite(tensor):
            raise BadInputError(f"--{role} tensor {name!r} contains NaN or Inf; pass --allow-nonfinite to proceed")
        return tensor

    @staticmethod
    def _read(source: TensorSource, name: str, rows: tuple[int, int] | None) -> torch.Tensor:
        return source.get(name) if rows is None else source.get_rows(name, *rows)

    def __call__(self, row: TensorPlan, rows: tuple[int, int] | None = None, *, check: bool = True) -> TensorBundle:
        if not check:
            return Loader(self.aligned, self.tuned, self.unaligned, True, self.compute_dtype, self.device)(row, rows)
        assert row.aligned_name is not None
        aligned = self._checked(self._read(self.aligned, row.aligned_name, rows), "aligned", row.aligned_name)
        tuned = []
        for source, name in zip(self.tuned, row.tuned_names, strict=True):
            if name is None:  # --allow-missing: this tuned model leaves the tensor unchanged
                tuned.append(aligned)
            elif source.is_adapter:
                tuned.append(self._checked(source.tuned_from_aligned(name, aligned, rows), "tuned", name))
            else:
                tuned.append(self._checked(self._read(source, name, rows), "tuned", name))
        unaligned = None
        if self.unaligned is not None:
            name = row.unaligned_name
            unaligned = aligned if name is None else self._checked(self._read(self.unaligned, name, rows), "unaligned", name)
        return to_device(TensorBundle(aligned=aligned, tuned=tuned, unaligned=unaligned), self.device)


def to_device(bundle: TensorBundle, device: torch.device) -> TensorBundle:
    """One plan row's tensors on the device the method runs on (`--device`; a no-op on the CPU)."""
    if device.type == "cpu":
        return bundle
    return TensorBundle(
        aligned=bundle.aligned.to(device, non_blocking=True),
        tuned=[t.to(device, non_blocking=True) for t in bundle.tuned],
        unaligned=None if bundle.unaligned is None else bundle.unaligned.to(device, non_blocking=True),
    )


def resolve_device(device: str | None) -> torch.device:
    """`--device` as a torch.device; BadInputError for a name torch does not know or a GPU that is not there."""
    name = "cpu" if device is None else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(name)
    except (RuntimeError, ValueError):
        raise BadInputError(f"--device {name!r} is not a device name (cpu, cuda, cuda:N, auto)") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"--device {name}: no CUDA GPU is visible to torch (this torch build or machine "
                                "has none); use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise BadInputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif resolved.type != "cpu":
        raise BadInputError(f"--device {name}: only cpu and cuda are supported")
    return resolved


@dataclass
class Sources:
    """The opened inputs; closed whatever happens."""

    aligned: Any = None
    tuned: list[Any] = field(default_factory=list)
    unaligned: Any = None

    def open(self, aligned: PathLike, tuned: Sequence[PathLike], unaligned: PathLike | None, *, allow_pickle: bool):
        self.aligned = open_source(aligned, role="aligned", allow_pickle=allow_pickle)
        if self.aligned.is_adapter:
            raise BadInputError(f"--aligned {str(aligned)!r} is an adapter; give the full aligned model")
        for path in tuned:
            self.tuned.append(open_source(path, role="tuned", aligned=self.aligned, allow_pickle=allow_pickle))
        if unaligned is not None:
            self.unaligned = open_source(unaligned, role="unaligned", allow_pickle=allow_pickle)

    def close(self) -> None:
        for source in [self.aligned, *self.tuned, self.unaligned]:
            if source is not None:
                source.close()
