"""`dare_linear`: DARE drop of each task vector, L1 rescale, weighted sum (mergekit's `dare_linear`).

Paper: Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch",
ICML 2024.

θ = θ_aligned + λ·Σ w_i·rescale(m_i ⊙ τ_i), m_i ~ Bernoulli(d_i) per entry; rescale (default on) multiplies the
kept entries by ‖τ_i‖₁ / ‖m_i ⊙ τ_i‖₁, as mergekit does (realignkit's own `dare` rescales by 1/d instead, the
paper's expectation-preserving form). With `normalize` the sum is divided by Σ w_i. See methods/gta.py.
"""

from __future__ import annotations

import torch
from pydantic import Field

from realignkit.methods.gta import GtaCommonParams, run_preset
from realignkit.methods.registry import register_method


class DareLinearParams(GtaCommonParams):
    rescale: bool = Field(True, description="L1-rescale each dropped τ_i to its original L1 norm")


@register_method("dare_linear", params=DareLinearParams, multi_tuned=True)
def dare_linear(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: DareLinearParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = θ_aligned + λ·Σ w_i·rescale(m_i ⊙ τ_i) [/ Σ w_i]."""
    return run_preset(aligned, tuned, params, name=name, sparsify="random", consensus="none")
