"""Where did fine-tuning move the weights? Per layer and module type: ‖τ‖, ‖τ‖/‖θ_aligned‖, cos(τ, δ).

τ = θ_tuned − θ_aligned (task vector), δ = θ_aligned − θ_base (safety vector, when a base is given).
Group values are exact aggregates over the group's tensors: ‖τ‖ = sqrt(Σ‖τ_t‖²), cos = Σ⟨τ_t,δ_t⟩ / (‖τ‖·‖δ‖).
Reads one tensor at a time, like the repair engine.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from realignkit.checkpoints import canonical_index, canonical_name, layer_index, open_source
from realignkit.common.errors import BadInputError

if TYPE_CHECKING:
    from realignkit.checkpoints.sources import TensorSource

ALL_MODULES = "(all)"
_LAYER_PREFIX = re.compile(r"^.*?(?:layers|h|blocks)\.\d+\.")


@dataclass
class DriftRow:
    """One (layer, module type) group. layer is None for tensors outside the layer stack (embeddings, head)."""

    layer: int | None
    module: str
    tensors: int
    params: int
    tau_norm: float
    aligned_norm: float
    relative_change: float
    cos_safety: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Sums:
    tensors: int = 0
    params: int = 0
    tau_sq: float = 0.0
    aligned_sq: float = 0.0
    safety_sq: float = 0.0
    dot: float = 0.0
    has_safety: bool = False

    def add(self, tau: torch.Tensor, aligned: torch.Tensor, safety: torch.Tensor | None) -> None:
        self.tensors += 1
        self.params += tau.numel()
        self.tau_sq += float(torch.dot(tau.reshape(-1), tau.reshape(-1)))
        self.aligned_sq += float(torch.dot(aligned.reshape(-1), aligned.reshape(-1)))
        if safety is not None:
            self.has_safety = True
            self.safety_sq += float(torch.dot(safety.reshape(-1), safety.reshape(-1)))
            self.dot += float(torch.dot(tau.reshape(-1), safety.reshape(-1)))

    def merge(self, other: _Sums) -> None:
        for name in ("tensors", "params", "tau_sq", "aligned_sq", "safety_sq", "dot"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.has_safety = self.has_safety or other.has_safety

    def row(self, layer: int | None, module: str) -> DriftRow:
        tau_norm, aligned_norm = math.sqrt(self.tau_sq), math.sqrt(self.aligned_sq)
        cos = None
        if self.has_safety:
            denominator = tau_norm * math.sqrt(self.safety_sq)
            cos = self.dot / denominator if denominator > 0 else 0.0
        return DriftRow(
            layer=layer,
            module=module,
            tensors=self.tensors,
            params=self.params,
            tau_norm=tau_norm,
            aligned_norm=aligned_norm,
            relative_change=tau_norm / aligned_norm if aligned_norm > 0 else 0.0,
            cos_safety=cos,
        )


def module_type(name: str) -> str:
    """`model.layers.3.self_attn.q_proj.weight` -> `self_attn.q_proj`; `model.embed_tokens.weight` -> `embed_tokens`."""
    stem = canonical_name(name)
    for suffix in (".weight", ".bias"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stripped = _LAYER_PREFIX.sub("", stem)
    if stripped == stem and stem.startswith("model."):
        stripped = stem[len("model.") :]
    return stripped


@dataclass
class _Pairing:
    aligned: TensorSource
    tuned: TensorSource
    base: TensorSource | None
    names: list[tuple[str, str, str | None]] = field(default_factory=list)  # (aligned, tuned, base)


def _pair(aligned: TensorSource, tuned: TensorSource, base: TensorSource | None) -> _Pairing:
    pairing = _Pairing(aligned, tuned, base)
    tuned_index = canonical_index(tuned.names(), source="--tuned")
    base_index = canonical_index(base.names(), source="--base") if base is not None else {}
    for name in aligned.names():
        if not aligned.dtype(name).is_floating_point:
            continue
        key = canonical_name(name)
        tuned_name = tuned_index.get(key)
        if tuned_name is None:
            continue
        for role, source, other in (("tuned", tuned, tuned_name), ("base", base, base_index.get(key))):
            if source is not None and other is not None and tuple(source.shape(other)) != tuple(aligned.shape(name)):
                raise BadInputError(
                    f"shape mismatch for tensor {name!r}: {list(aligned.shape(name))} in --aligned, "
                    f"{list(source.shape(other))} in --{role}"
                )
        pairing.names.append((name, tuned_name, base_index.get(key)))
    if not pairing.names:
        raise BadInputError("--aligned and --tuned have no tensor names in common; are they the same architecture?")
    return pairing


def _tensors(pairing: _Pairing, progress: bool) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    for aligned_name, tuned_name, base_name in tqdm(
        pairing.names, desc="diagnose", unit="tensor", disable=None if progress else True, leave=False
    ):
        aligned = pairing.aligned.get(aligned_name).float()
        if pairing.tuned.is_adapter:
            tuned = pairing.tuned.tuned_from_aligned(tuned_name, aligned)
        else:
            tuned = pairing.tuned.get(tuned_name).float()
        base = pairing.base.get(base_name).float() if base_name is not None else None
        yield aligned_name, aligned, tuned, base


def weight_drift(
    aligned: str | os.PathLike[str],
    tuned: str | os.PathLike[str],
    base: str | os.PathLike[str] | None = None,
    *,
    allow_pickle: bool = False,
    progress: bool = True,
) -> list[DriftRow]:
    """Rows per (layer, module type), then one `(all)` row per layer, sorted by layer (None last)."""
    aligned_src = open_source(aligned, role="aligned", allow_pickle=allow_pickle)
    sources = [aligned_src]
    try:
        tuned_src = open_source(tuned, role="tuned", aligned=aligned_src, allow_pickle=allow_pickle)
        sources.append(tuned_src)
        base_src = open_source(base, role="base", allow_pickle=allow_pickle) if base is not None else None
        if base_src is not None:
            sources.append(base_src)
        groups: dict[tuple[int | None, str], _Sums] = {}
        for name, aligned_t, tuned_t, base_t in _tensors(_pair(aligned_src, tuned_src, base_src), progress):
            safety = aligned_t - base_t if base_t is not None else None
            key = (layer_index(name), module_type(name))
            groups.setdefault(key, _Sums()).add(tuned_t - aligned_t, aligned_t, safety)
    finally:
        for source in sources:
            source.close()
    return _rows(groups)


def _rows(groups: dict[tuple[int | None, str], _Sums]) -> list[DriftRow]:
    per_layer: dict[int | None, _Sums] = {}
    for (layer, _), sums in groups.items():
        per_layer.setdefault(layer, _Sums()).merge(sums)
    rows = [sums.row(layer, module) for (layer, module), sums in groups.items()]
    rows += [sums.row(layer, ALL_MODULES) for layer, sums in per_layer.items()]

    def order(row: DriftRow) -> tuple[int, int, int, str]:
        layer_key = row.layer if row.layer is not None else 10**9
        return (0 if row.layer is not None else 1, layer_key, 1 if row.module == ALL_MODULES else 0, row.module)

    return sorted(rows, key=order)
