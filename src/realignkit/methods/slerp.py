"""`slerp`: spherical linear interpolation between aligned and tuned weights, per tensor.

Paper: Shoemake, "Animating rotation with quaternion curves", SIGGRAPH 1985; applied to model merging
as in Goddard et al., "Arcee's MergeKit: A Toolkit for Merging Large Language Models", 2024.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from realignkit.methods.registry import MethodParams, register_method

PARALLEL_DOT = 0.9995  # |cos| above this: the arc is too flat for sin(Ω) to be stable, use lerp


class SlerpParams(MethodParams):
    t: float = Field(0.5, ge=0.0, le=1.0, description="0 = aligned, 1 = tuned")


@register_method("slerp", params=SlerpParams)
def slerp(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: SlerpParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = sin((1−t)Ω)/sin Ω · θ_aligned + sin(tΩ)/sin Ω · θ_tuned, Ω the angle of the flattened tensors."""
    start, end = aligned.reshape(-1), tuned[0].reshape(-1)  # [n]
    norms = start.norm() * end.norm()
    if float(norms) == 0.0 or not math.isfinite(float(norms)):
        return torch.lerp(aligned, tuned[0], params.t)
    dot = float(torch.dot(start, end) / norms)
    if not math.isfinite(dot) or abs(dot) > PARALLEL_DOT:  # NaN only with --allow-nonfinite: lerp passes it on
        return torch.lerp(aligned, tuned[0], params.t)
    omega = math.acos(max(-1.0, min(1.0, dot)))
    sin_omega = math.sin(omega)
    weight_start = math.sin((1.0 - params.t) * omega) / sin_omega
    weight_end = math.sin(params.t * omega) / sin_omega
    return weight_start * aligned + weight_end * tuned[0]
