"""`ties`: TIES-Merging of one or more task vectors into the aligned weights.

Paper: Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pydantic import Field

from realignkit.methods._vectors import (
    WeightedMergeParams,
    kth_largest_blocks,
    resolve_weights,
    trim_threshold,
)
from realignkit.methods.registry import register_method


class TiesParams(WeightedMergeParams):
    density: float = Field(0.2, gt=0.0, le=1.0, description="fraction of each τ_i kept (by magnitude)")


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
    thresholds = stats if stats is not None else [None] * len(tuned)
    merged = torch.empty_like(flat_aligned)
    for start in range(0, flat_aligned.numel(), BLOCK):
        stop = min(start + BLOCK, flat_aligned.numel())
        merged[start:stop] = _merge_block(
            flat_aligned[start:stop], [theta[start:stop] for theta in flat_tuned], thresholds, weights
        )
    return merged.mul_(params.scale).add_(flat_aligned).reshape(aligned.shape)


BLOCK = 1 << 18


def _merge_block(
    aligned: torch.Tensor, tuned: list[torch.Tensor], thresholds: list[torch.Tensor | None], weights: list[float]
) -> torch.Tensor:
    """TIES on one block of entries (all [b]): trimmed weighted vectors, elected sign, disjoint weighted mean."""
    vectors = []
    for theta, threshold, weight in zip(tuned, thresholds, weights, strict=True):
        tau = theta - aligned
        if threshold is not None:
            tau.mul_(tau.abs() >= threshold)
        vectors.append(tau.mul_(weight))
    elected = torch.stack(vectors).sum(dim=0).sign_() if len(vectors) > 1 else vectors[0].sign()
    numerator = torch.zeros_like(aligned)
    denominator = torch.zeros_like(aligned)
    for vector, weight in zip(vectors, weights, strict=True):
        agrees = (vector * elected) > 0  # same sign as elected and non-zero
        numerator.add_(vector * agrees)
        denominator.add_(agrees * weight)
    # Entries where no model agrees (or all were trimmed) get no update: numerator is 0, divide by 1 there.
    return numerator.div_(denominator.masked_fill_(denominator == 0, 1.0))
