"""`interpolate`: linear interpolation between aligned and tuned weights.

Paper: Wortsman et al., "Robust fine-tuning of zero-shot models" (WiSE-FT), CVPR 2022;
used for safety by Lee et al. 2025 ("How does vision-language adaptation impact the safety of VLMs?").
"""

from __future__ import annotations

import torch
from pydantic import Field

from realignkit.methods.registry import MethodParams, register_method


class InterpolateParams(MethodParams):
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of tuned: 0 = aligned, 1 = tuned")


@register_method("interpolate", params=InterpolateParams, elementwise=True)
def interpolate(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: InterpolateParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = (1−α)·θ_aligned + α·θ_tuned."""
    return torch.lerp(aligned, tuned[0], params.alpha)
