"""`ties`: TIES-Merging of one or more task vectors into the aligned weights.

Paper: Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from realignkit.methods._vectors import WeightedMergeParams, magnitude_trim, resolve_weights
from realignkit.methods.registry import register_method


class TiesParams(WeightedMergeParams):
    density: float = Field(0.2, gt=0.0, le=1.0, description="fraction of each τ_i kept (by magnitude)")


@register_method("ties", params=TiesParams, multi_tuned=True)
def ties(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: TiesParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: Any = None,
) -> torch.Tensor:
    """Trim each τ_i to its top-density entries; elect the sign of Σ w_i·τ̂_i; disjoint weighted mean of agreeing
    entries: merged = Σ_i [sign(τ̂_i) = γ]·w_i·τ̂_i / Σ_i [sign(τ̂_i) = γ]·w_i; θ = θ_aligned + λ·merged."""
    weights = resolve_weights(params.weights, len(tuned))
    weighted = [magnitude_trim(theta - aligned, params.density).mul_(w) for theta, w in zip(tuned, weights, strict=True)]
    elected = torch.stack(weighted).sum(dim=0).sign() if len(weighted) > 1 else weighted[0].sign()
    numerator = torch.zeros_like(aligned)
    denominator = torch.zeros_like(aligned)
    for vector, weight in zip(weighted, weights, strict=True):
        agrees = (vector.sign() == elected) & (vector != 0)  # same shape as aligned
        numerator += vector * agrees
        denominator += agrees * weight
    # Entries where no model agrees (or all were trimmed) get no update: divide by 1 there, numerator is 0.
    merged = numerator / torch.where(denominator == 0, torch.ones_like(denominator), denominator)
    return merged.mul_(params.scale).add_(aligned)
