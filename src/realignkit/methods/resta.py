"""`resta`: add the safety vector δ = θ_aligned − θ_unaligned back to the fine-tuned model.

Paper: Bhardwaj, Anh and Poria, "Language Models are Homer Simpson! Safety Re-Alignment of Fine-tuned
Language Models through Task Arithmetic", ACL 2024.
"""

from __future__ import annotations

import torch
from pydantic import Field

from realignkit.methods._vectors import dare_drop, tensor_generator
from realignkit.methods.registry import MethodParams, register_method


class RestaParams(MethodParams):
    beta: float = Field(0.5, ge=0.0, le=10.0, allow_inf_nan=False, description="β, scale of the safety vector")
    dare_density: float | None = Field(None, gt=0.0, le=1.0, description="if set, DARE is applied to τ first")
    seed: int = Field(0, ge=0, description="seed for the DARE drop")


@register_method(
    "resta",
    params=RestaParams,
    needs=("aligned", "unaligned"),
    elementwise=lambda params: params.dare_density is None,  # the DARE mask is drawn per whole tensor
)
def resta(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: RestaParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = θ_tuned + β·(θ_aligned − θ_unaligned); with dare_density, θ = θ_aligned + DARE(τ) + β·δ."""
    assert unaligned is not None, "the engine supplies unaligned for methods that need it"
    safety = aligned - unaligned
    if params.dare_density is None:
        return safety.mul_(params.beta).add_(tuned[0])
    task = dare_drop(tuned[0] - aligned, params.dare_density, tensor_generator(params.seed, name))
    return safety.mul_(params.beta).add_(task).add_(aligned)
