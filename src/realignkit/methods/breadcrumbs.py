"""`breadcrumbs`: Model Breadcrumbs, drop both the smallest and the largest (outlier) entries of each task vector.

Paper: Davari and Belilovsky, "Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks", ECCV 2024.

Per τ_i with n entries: drop the ⌊γ_i·n⌋ largest |τ_i| and keep the next ⌊d_i·n⌋ (fewer outliers are dropped when
both would not fit); θ = θ_aligned + λ·Σ w_i·τ̂_i [/ Σ w_i with `normalize`], as mergekit's `breadcrumbs`.
See methods/gta.py.
"""

from __future__ import annotations

import torch

from realignkit.methods.gta import GammaParams, run_preset
from realignkit.methods.registry import register_method


class BreadcrumbsParams(GammaParams):
    pass


@register_method("breadcrumbs", params=BreadcrumbsParams, multi_tuned=True)
def breadcrumbs(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: BreadcrumbsParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = θ_aligned + λ·Σ w_i·breadcrumb(τ_i) [/ Σ w_i]."""
    return run_preset(aligned, tuned, params, name=name, sparsify="magnitude_outliers", consensus="none")
