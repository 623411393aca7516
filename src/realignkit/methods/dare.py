"""`dare`: Drop And REscale task vectors, then add them (weighted, scaled) to the aligned weights.

Paper: Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch",
ICML 2024.
"""

from __future__ import annotations

import torch
from pydantic import Field

from realignkit.methods._vectors import WeightedMergeParams, dare_drop, resolve_weights, tensor_generator
from realignkit.methods.registry import register_method


class DareParams(WeightedMergeParams):
    density: float = Field(0.5, gt=0.0, le=1.0, description="keep probability of each τ entry")
    seed: int = Field(0, ge=0, description="random seed (per tensor and model, order-independent)")


@register_method("dare", params=DareParams, multi_tuned=True)
def dare(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: DareParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = θ_aligned + λ·Σ w_i·(m_i ⊙ τ_i)/density, m_i ~ Bernoulli(density) per entry."""
    weights = resolve_weights(params.weights, len(tuned))
    total = torch.zeros_like(aligned)
    for index, (theta, weight) in enumerate(zip(tuned, weights, strict=True)):
        generator = tensor_generator(params.seed, name, index)
        total.add_(dare_drop(theta - aligned, params.density, generator), alpha=weight)
    return total.mul_(params.scale).add_(aligned)
