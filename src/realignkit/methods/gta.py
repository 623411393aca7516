"""`gta`: generalized task arithmetic, the family mergekit runs task_arithmetic, ties, DARE and breadcrumbs with.

Per tensor, with τ_i = θ_tuned_i − θ_aligned:

1. sparsify each τ_i with its own density d_i (and L1-rescale it when `rescale`):
   - `magnitude` (TIES): keep the k_i = max(1, ⌊d_i·n⌋) largest |τ_i|, ties broken by position (first kept);
   - `random` (DARE): keep each entry with probability d_i (seeded per tensor and model);
   - `magnitude_outliers` (breadcrumbs): drop the ⌊γ_i·n⌋ largest |τ_i|, then the smallest, keeping ⌊d_i·n⌋;
   - `none`;
   rescale: τ̂_i ← τ̂_i · ‖τ_i‖₁ / ‖τ̂_i‖₁ (left as is when either norm is below 1e-7);
2. weight: δ_i = w_i·τ̂_i;
3. combine: consensus `none`: m = Σ δ_i, divisor D = Σ w_i (1 where |D| < 1e-8); consensus `sum` (TIES sign
   election): γ = +1 where Σ δ_i ≥ 0 else −1, m = Σ [sign(δ_i) = γ]·δ_i, D = Σ [sign(δ_i) = γ]·w_i (1 where 0);
4. θ = θ_aligned + λ·(m / D if `normalize` else m).

This is mergekit 0.1.5's generalized task arithmetic, written from its formulas; the only intended differences
are the tie-break of equal magnitudes at the cut and DARE's random numbers (a seeded generator here).

Papers: Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023; Yadav et al., "TIES-Merging",
NeurIPS 2023; Yu et al., "Language Models are Super Mario" (DARE), ICML 2024; Davari and Belilovsky, "Model
Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks", ECCV 2024.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from realignkit.common.errors import BadInputError
from realignkit.methods._topk import keep_mask, top_k_blocks
from realignkit.methods._vectors import FiniteFloat, WeightedMergeParams, resolve_weights, tensor_generator
from realignkit.methods.registry import register_method

Sparsify = Literal["none", "magnitude", "random", "magnitude_outliers"]
RESCALE_EPS = 1e-7


class GtaCommonParams(WeightedMergeParams):
    """What every member of the family takes (the mergekit parameters lambda -> scale, weight -> weights)."""

    density: list[FiniteFloat] = Field([1.0], min_length=1, description="d_i: share of τ_i kept (one, or one per --tuned)")
    normalize: bool = Field(False, description="divide the merged vector by the summed weights")
    rescale: bool = Field(False, description="L1-rescale each thinned τ_i to its original L1 norm")
    int8_mask: bool = Field(False, description="accepted for mergekit recipes; no effect on the result")
    seed: int = Field(0, ge=0, description="random seed of the DARE drop (per tensor and model, order-independent)")

    @field_validator("density", mode="before")
    @classmethod
    def _one_density(cls, value: object) -> object:
        return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("density")
    @classmethod
    def _density_in_unit_interval(cls, values: list[float]) -> list[float]:
        if any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError("density must be between 0 and 1")
        return values

    def check_tuned_count(self, count: int) -> None:
        """Per-model lists have one value, or one per --tuned (checked before any work)."""
        for field in ("weights", "density", "gamma"):
            values = getattr(self, field, None)
            allowed = (count,) if field == "weights" else (1, count)
            if values is not None and len(values) not in allowed:
                raise BadInputError(f"{field} has {len(values)} value(s) but {count} --tuned were given")


class GammaParams(GtaCommonParams):
    """The family members that drop outliers too (breadcrumbs)."""

    gamma: list[FiniteFloat] = Field([0.01], min_length=1, description="γ_i: share of largest |τ_i| dropped (breadcrumbs)")

    @field_validator("gamma", mode="before")
    @classmethod
    def _one_gamma(cls, value: object) -> object:
        return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("gamma")
    @classmethod
    def _gamma_in_unit_interval(cls, values: list[float]) -> list[float]:
        if any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError("gamma must be between 0 and 1")
        return values


class GtaParams(GammaParams):
    sparsify: Sparsify = Field("none", description="how each τ_i is thinned before merging")
    consensus: Literal["none", "sum"] = Field("none", description="sum: TIES sign election; none: plain sum")


def run_preset(aligned: torch.Tensor, tuned: list[torch.Tensor], params: GtaCommonParams, *, name: str,
               sparsify: Sparsify, consensus: Literal["none", "sum"]) -> torch.Tensor:
    """A named member of the family (dare_ties, breadcrumbs, ...): its fixed sparsify/consensus + its params."""
    full = GtaParams(**params.model_dump(), sparsify=sparsify, consensus=consensus)
    return gta_merge(aligned, tuned, full, name=name)


def _per_tuned(values: list[float], count: int) -> list[float]:
    return values * count if len(values) == 1 else values


def _l1_rescaled(masked: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    before, after = float(original.abs().sum()), float(masked.abs().sum())
    if before < RESCALE_EPS or after < RESCALE_EPS:
        return masked
    return masked * (before / after)


def _keep_top(tau: torch.Tensor, density: float) -> torch.Tensor:
    flat = tau.reshape(-1)  # [n]
    k = max(1, int(density * flat.numel()))
    top = top_k_blocks(lambda: iter([[flat.abs()]]), k)[0]
    return tau * keep_mask(flat.abs(), top, 0).reshape(tau.shape)


def _keep_middle(tau: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    flat = tau.reshape(-1)  # [n]
    n = flat.numel()
    target, n_top = int(density * n), int(gamma * n)
    n_bottom = max(0, n - target - n_top)
    order = torch.sort(flat.abs(), stable=True).indices  # ascending
    mask = torch.zeros_like(flat)
    mask[order[n_bottom : n_bottom + target]] = 1.0
    return tau * mask.reshape(tau.shape)


def sparsify(tau: torch.Tensor, method: str, density: float, *, gamma: float = 0.0, rescale: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Thin one task vector (see the module docstring); returns a new tensor."""
    if method == "none" or density >= 1.0:
        return tau
    if tau.numel() == 0 or (density <= 0.0 and method != "magnitude_outliers"):
        return torch.zeros_like(tau)
    if method == "magnitude":
        kept = _keep_top(tau, density)
    elif method == "random":
        # Drawn on the CPU whatever tau's device (--device cuda keeps the same entries for the same seed).
        kept = tau * (torch.rand(tau.shape, generator=generator) < density).to(tau.device)
    elif method == "magnitude_outliers":
        kept = _keep_middle(tau, density, gamma)
    else:
        raise ValueError(f"unknown sparsification {method!r}")
    return _l1_rescaled(kept, tau) if rescale else kept


def combine(aligned: torch.Tensor, deltas: list[torch.Tensor], weights: list[float], params: GtaParams) -> torch.Tensor:
    """Steps 3-4 on weighted deltas δ_i = w_i·τ̂_i."""
    total = torch.stack(deltas).sum(0)  # [*shape]
    if params.consensus == "sum":
        majority = torch.where(total >= 0, 1.0, -1.0)
        agree = [torch.sign(d) == majority for d in deltas]
        mixed = sum((d * a for d, a in zip(deltas, agree, strict=True)), torch.zeros_like(aligned))
        divisor = sum((a * w for a, w in zip(agree, weights, strict=True)), torch.zeros_like(aligned))
        divisor = torch.where(divisor == 0, 1.0, divisor)
    else:
        mixed = total
        summed = sum(weights)
        divisor = 1.0 if abs(summed) < 1e-8 else summed
    if params.normalize:
        mixed = mixed / divisor
    return aligned + params.scale * mixed


def gta_merge(aligned: torch.Tensor, tuned: list[torch.Tensor], params: GtaParams, *, name: str = "") -> torch.Tensor:
    weights = resolve_weights(params.weights, len(tuned))
    densities = _per_tuned(params.density, len(tuned))
    gammas = _per_tuned(params.gamma, len(tuned))
    deltas = []
    for index, theta in enumerate(tuned):
        generator = tensor_generator(params.seed, name, index) if params.sparsify == "random" else None
        thinned = sparsify(theta - aligned, params.sparsify, densities[index], gamma=gammas[index],
                           rescale=params.rescale, generator=generator)
        deltas.append(thinned * weights[index])
    return combine(aligned, deltas, weights, params)


@register_method("gta", params=GtaParams, multi_tuned=True, elementwise=lambda p: p.sparsify == "none")
def gta(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: GtaParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = θ_aligned + λ·combine(w_i·sparsify(τ_i)) (mergekit's generalized task arithmetic)."""
    return gta_merge(aligned, tuned, params, name=name)
