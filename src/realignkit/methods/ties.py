"""`ties`: TIES-Merging of one or more task vectors into the aligned weights.

Paper: Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pydantic import Field, field_validator

from realignkit.methods._vectors import (
    WeightedMergeParams,
    kth_largest_blocks,
    resolve_weights,
    trim_threshold,
)
from realignkit.methods.registry import register_method


class TiesParams(WeightedMergeParams):
    density: float = Field(0.2, gt=0.0, le=1.0, description="fraction of each τ_i kept (by magnitude)")

    @field_validator("weights")
    @classmethod
    def _positive_weights(cls, weights: list[float] | None) -> list[float] | None:
        # The elected sign and the disjoint mean are only meaningful for positive weights.
        if weights is not None and any(w <= 0 for w in weights):
            raise ValueError("TIES weights must all be > 0")
        return weights


def trim_thresholds(
    blocks: Callable[[], Iterator[Any]], params: TiesParams, *, name: str = "", shape: tuple[int, ...] = ()
) -> list[torch.Tensor | None] | None:
    """Per-tensor statistic for the blockwise pass: every τ_i's trim threshold, in two passes over the blocks."""
    if params.density >= 1.0:
        return None
    keep = max(1, int(params.density * math.prod(shape)))
    return kth_largest_blocks(lambda: ([(t - b.aligned).abs_() for t in b.tuned] for b in blocks()), keep)


@register_method("ties", params=TiesParams, multi_tuned=True, elementwise=True, tensor_stats=trim_thresholds)
def ties(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: TiesParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: Any = None,
    stats: list[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Trim each τ_i to its top-density entries; elect the sign of Σ w_i·τ̂_i; disjoint weighted mean of agreeing
    entries: merged = Σ_i [sign(τ̂_i) = γ]·w_i·τ̂_i / Σ_i [sign(τ̂_i) = γ]·w_i; θ = θ_aligned + λ·merged."""
    weights = resolve_weights(params.weights, len(tuned))
    flat_aligned = aligned.reshape(-1)  # [n]
    flat_tuned = [theta.reshape(-1) for theta in tuned]  # each [n]
    # The trim threshold needs the whole of each τ_i; everything after it is entry-wise, so it runs in blocks
    # that stay in cache and keep the temporaries small.
    if stats is None and params.density < 1.0:  # whole tensor; for row blocks the engine ran trim_thresholds
        stats = [trim_threshold(theta - flat_aligned, params.density) for theta in flat_tuned]
    thresholds = [None if t is None else float(t) for t in stats] if stats is not None else [None] * len(tuned)
    merged = torch.empty_like(flat_aligned)
    for start in range(0, flat_aligned.numel(), BLOCK):
        stop = min(start + BLOCK, flat_aligned.numel())
        merged[start:stop] = _merge_block(
            flat_aligned[start:stop], [theta[start:stop] for theta in flat_tuned], thresholds, weights, params.scale
        )
    return merged.reshape(aligned.shape)


BLOCK = 1 << 18


def _merge_block(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    thresholds: list[float | None],
    weights: list[float],
    scale: float,
) -> torch.Tensor:
    """TIES on one block of entries (all [b]): trim, elect the sign of Σ w_i·τ̂_i, disjoint weighted mean.

    Written for few passes over memory: agreement as a float 0/1 mask from (τ̂_i·γ > 0), the weighted sums
    with fused addcmul/add, and θ_aligned + λ·num/den with one addcdiv.
    """
    vectors = []
    for theta, threshold in zip(tuned, thresholds, strict=True):
        tau = theta - aligned
        if threshold is not None:
            # A float 0/1 mask from an in-place compare with a Python float: bool masks and 0-dim tensor
            # operands take slow non-vectorised paths in torch (5-10x slower per entry, measured).
            tau.mul_(tau.abs().ge_(threshold))
        vectors.append(tau)
    elected = torch.mul(vectors[0], weights[0])
    for vector, weight in zip(vectors[1:], weights[1:], strict=True):
        elected.add_(vector, alpha=weight)
    elected.sign_()
    numerator = torch.zeros_like(aligned)
    denominator = torch.zeros_like(aligned)
    for vector, weight in zip(vectors, weights, strict=True):
        agrees = torch.mul(vector, elected).gt_(0)  # 1.0 where τ̂_i is non-zero with the elected sign, else 0.0
        numerator.addcmul_(vector, agrees, value=weight)
        denominator.add_(agrees, alpha=weight)
    # Where no model agrees the numerator is 0: any positive denominator leaves the aligned value there.
    return torch.addcdiv(aligned, numerator, denominator.clamp_min_(torch.finfo(torch.float32).tiny), value=scale)
