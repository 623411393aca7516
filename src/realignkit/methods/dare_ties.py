"""`dare_ties`: DARE drop of each task vector, L1 rescale, then TIES sign election (mergekit's `dare_ties`).

Papers: Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch",
ICML 2024; Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023.

δ_i = w_i·rescale(m_i ⊙ τ_i), m_i ~ Bernoulli(d_i); γ = +1 where Σ δ_i ≥ 0 else −1; merged = Σ [sign(δ_i) = γ]·δ_i,
divided by Σ [sign(δ_i) = γ]·w_i when `normalize` (off by default, as in mergekit); θ = θ_aligned + λ·merged.
See methods/gta.py.
"""

from __future__ import annotations

import torch
from pydantic import Field

from realignkit.methods.gta import GtaCommonParams, run_preset
from realignkit.methods.registry import register_method


class DareTiesParams(GtaCommonParams):
    rescale: bool = Field(True, description="L1-rescale each dropped τ_i to its original L1 norm")


@register_method("dare_ties", params=DareTiesParams, multi_tuned=True)
def dare_ties(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: DareTiesParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = θ_aligned + λ·Σ [sign(δ_i) = γ]·δ_i [/ Σ [sign(δ_i) = γ]·w_i], δ_i = w_i·rescale(m_i ⊙ τ_i)."""
    return run_preset(aligned, tuned, params, name=name, sparsify="random", consensus="sum")
