"""`ties`: TIES-Merging of one or more task vectors into the aligned weights.

Paper: Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pydantic import Field, field_validator

from realignkit.methods._topk import TopK, keep_mask, top_k_blocks
from realignkit.methods._vectors import WeightedMergeParams, resolve_weights
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


class TiesBlockStats:
    """Per-tensor top-k selection of every τ_i, handed to each engine row block as (TopK, block index)."""

    def __init__(self, tops: list[TopK], block_starts: list[int]) -> None:
        self.tops = tops
        self.index = {start: i for i, start in enumerate(block_starts)}

    def __call__(self, rows: tuple[int, int]) -> tuple[list[TopK], int]:
        return self.tops, self.index[rows[0]]


def top_k_stats(
    blocks: Callable[[], Iterator[Any]], params: TiesParams, *, name: str = "", shape: tuple[int, ...] = (),
    block_starts: list[int] | None = None,
) -> TiesBlockStats | None:
    """tensor_stats hook: exact top-k of every |τ_i| of one tensor, two passes over its row blocks."""
    if params.density >= 1.0:
        return None
    keep = max(1, int(params.density * math.prod(shape)))
    tops = top_k_blocks(lambda: ([(t - b.aligned).abs_() for t in b.tuned] for b in blocks()), keep)
    return TiesBlockStats(tops, block_starts or [])


@register_method("ties", params=TiesParams, multi_tuned=True, elementwise=True, tensor_stats=top_k_stats)
def ties(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: TiesParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
    stats: tuple[list[TopK], int] | None = None,
) -> torch.Tensor:
    """Trim each τ_i to its top-k entries by magnitude (k = max(1, ⌊density·n⌋), ties broken by position);
    elect γ = sign(Σ w_i·τ̂_i); disjoint weighted mean of the agreeing entries:
    merged = Σ_i [sign(τ̂_i) = γ]·w_i·τ̂_i / Σ_i [sign(τ̂_i) = γ]·w_i; θ = θ_aligned + λ·merged."""
    weights = resolve_weights(params.weights, len(tuned))
    flat_aligned = aligned.reshape(-1)  # [n]
    flat_tuned = [theta.reshape(-1) for theta in tuned]  # each [n]
    if stats is not None:  # one row block of a big tensor; the engine ran top_k_stats on the whole tensor
        tops, index = stats
        merged = _merge_block(flat_aligned, flat_tuned, [(top, index) for top in tops], weights, params.scale)
        return merged.reshape(aligned.shape)
    # A whole tensor: the same two-pass selection over its own blocks, then the entry-wise merge per block.
    starts = list(range(0, flat_aligned.numel(), BLOCK))
    pieces = [(s, min(s + BLOCK, flat_aligned.numel())) for s in starts]
    tops = None
    if params.density < 1.0:
        keep = max(1, int(params.density * flat_aligned.numel()))
        with torch.no_grad():  # the selection is piecewise constant: no gradient flows through it
            tops = top_k_blocks(
                lambda: ([(t[a:b] - flat_aligned[a:b]).abs_() for t in flat_tuned] for a, b in pieces), keep
            )
    merged = torch.empty_like(flat_aligned)
    for index, (start, stop) in enumerate(pieces):
        selections = [(top, index) for top in tops] if tops is not None else [None] * len(tuned)
        merged[start:stop] = _merge_block(
            flat_aligned[start:stop], [t[start:stop] for t in flat_tuned], selections, weights, params.scale
        )
    return merged.reshape(aligned.shape)


BLOCK = 1 << 20


def _merge_block(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    selections: list[tuple[TopK, int] | None],
    weights: list[float],
    scale: float,
) -> torch.Tensor:
    """TIES on one block of entries (all [b]): trim, elect the sign of Σ w_i·τ̂_i, disjoint weighted mean.

    Written for few passes over memory: float 0/1 masks from in-place compares with Python floats (bool masks
    and 0-dim tensor operands are slow paths in torch), fused addcmul, one addcdiv for θ + λ·num/den.
    The masks and the elected sign are piecewise constant, so they are computed without autograd; when the
    inputs require gradients (SOMF trains a mask through this merge) the kept values are combined out of place.
    """
    differentiable = torch.is_grad_enabled() and (aligned.requires_grad or any(t.requires_grad for t in tuned))
    vectors = []
    for theta, selection in zip(tuned, selections, strict=True):
        tau = theta - aligned
        if selection is not None:
            top, index = selection
            keep = keep_mask(tau.detach().abs(), top, index)
            tau = tau * keep if differentiable else tau.mul_(keep)
        vectors.append(tau)
    with torch.no_grad():
        elected = torch.mul(vectors[0], weights[0])
        for vector, weight in zip(vectors[1:], weights[1:], strict=True):
            elected.add_(vector, alpha=weight)
        elected.sign_()
        agreements = [torch.mul(vector, elected).gt_(0) for vector in vectors]  # 1.0 where sign(τ̂_i) = γ, τ̂_i ≠ 0
        denominator = torch.zeros_like(aligned)
        for agrees, weight in zip(agreements, weights, strict=True):
            denominator.add_(agrees, alpha=weight)
        # Where no model agrees the numerator is 0: any positive denominator leaves the aligned value there.
        denominator.clamp_min_(torch.finfo(torch.float32).tiny)
    if differentiable:
        numerator = sum(vector * agrees * weight for vector, agrees, weight in zip(vectors, agreements, weights, strict=True))
    else:
        numerator = torch.zeros_like(aligned)
        for vector, agrees, weight in zip(vectors, agreements, weights, strict=True):
            numerator.addcmul_(vector, agrees, value=weight)
    return torch.addcdiv(aligned, numerator, denominator, value=scale)
