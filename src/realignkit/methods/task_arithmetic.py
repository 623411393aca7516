"""`task_arithmetic`: add a scaled, weighted sum of task vectors to the aligned weights.

Paper: Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023.
"""

from __future__ import annotations

from typing import Any

import torch

from realignkit.methods._vectors import WeightedMergeParams, resolve_weights
from realignkit.methods.registry import register_method


class TaskArithmeticParams(WeightedMergeParams):
    pass


@register_method("task_arithmetic", params=TaskArithmeticParams, multi_tuned=True, elementwise=True)
def task_arithmetic(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: TaskArithmeticParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: Any = None,
) -> torch.Tensor:
    """θ = θ_aligned + λ·Σ w_i·(θ_tuned_i − θ_aligned)."""
    weights = resolve_weights(params.weights, len(tuned))
    total = torch.zeros_like(aligned)
    difference = torch.empty_like(aligned)  # reused for every τ_i: two buffers whatever the number of models
    for theta, weight in zip(tuned, weights, strict=True):
        torch.sub(theta, aligned, out=difference)
        total.add_(difference, alpha=weight)
    return total.mul_(params.scale).add_(aligned)
