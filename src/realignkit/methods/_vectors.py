"""Tensor helpers shared by the merge methods: task vectors, magnitude trimming, DARE drop, weights."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated

import torch
from pydantic import Field

from realignkit.methods.registry import MethodParams

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class WeightedMergeParams(MethodParams):
    """Parameters shared by methods that add up several task vectors."""

    scale: float = Field(1.0, ge=-10, le=10, allow_inf_nan=False, description="λ, multiplies the merged vector")
    weights: list[FiniteFloat] | None = Field(None, min_length=1, description="w_i, one per --tuned (default 1)")


def resolve_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    return [1.0] * count if weights is None else [float(w) for w in weights]


def kth_largest(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of a non-negative fp32 tensor (exact), as a 0-dim tensor."""
    flat = magnitudes.reshape(-1)
    return kth_largest_blocks(lambda: iter([[flat]]), k)[0]


def kth_largest_blocks(blocks: Callable[[], Iterator[list[torch.Tensor]]], k: int) -> list[torch.Tensor]:
    """Exact k-th largest value of each of several non-negative fp32 streams, in two passes over `blocks()`.

    Each item of `blocks()` holds one block per stream. Radix select instead of kthvalue/topk: for
    non-negative IEEE floats the int32 bit patterns sort like the values, so a histogram of the high 16 bits
    picks the bucket holding the k-th largest, and a histogram of the low 16 bits inside that bucket gives the
    exact value. Linear, blockwise, no full-size copies; kthvalue copies and partially sorts the whole tensor
    (~3x slower on 30M entries, and needs all of it in memory).
    """
    high: list[torch.Tensor] = []
    total = 0
    for streams in blocks():
        if not high:
            high = [torch.zeros(1 << 15, dtype=torch.int64) for _ in streams]
        for histogram, block in zip(high, streams, strict=True):
            bits = block.reshape(-1).contiguous().view(torch.int32)  # sign bit 0: values in [0, 2^31)
            histogram += torch.bincount(torch.bitwise_right_shift(bits, 16), minlength=1 << 15)
        total += streams[0].numel()
    if not 1 <= k <= total:
        raise ValueError(f"k={k} outside 1..{total}")
    chosen = [_bucket_from_top(histogram, k) for histogram in high]  # (bucket, entries above it)
    low = [torch.zeros((1 << 16) + 2, dtype=torch.int64) for _ in high]
    for streams in blocks():
        for histogram, block, (bucket, _) in zip(low, streams, chosen, strict=True):
            # Offset inside the chosen bucket, clamped so entries below/above land in two spill bins (0 and
            # 65537): one bincount over the block, no boolean mask and gather (those are slow in torch).
            offset = block.reshape(-1).contiguous().view(torch.int32) - (bucket << 16)
            histogram += torch.bincount(offset.clamp_(-1, 1 << 16).add_(1), minlength=(1 << 16) + 2)
    results = []
    for histogram, (bucket, above) in zip(low, chosen, strict=True):
        low_bucket, _ = _bucket_from_top(histogram[1:-1], k - above)
        results.append(torch.tensor((bucket << 16) | low_bucket, dtype=torch.int32).view(torch.float32))
    return results


def _bucket_from_top(histogram: torch.Tensor, k: int) -> tuple[int, int]:
    """Bucket holding the k-th largest entry, and how many entries lie in higher buckets."""
    from_top = histogram.flip(0).cumsum(0)  # [buckets]: entries in the top j+1 buckets
    position = int(torch.searchsorted(from_top, k))
    above = int(from_top[position - 1]) if position > 0 else 0
    return histogram.numel() - 1 - position, above


def trim_threshold(tau: torch.Tensor, density: float) -> torch.Tensor | None:
    """Smallest |τ| kept when keeping the k = max(1, floor(density·n)) largest magnitudes; None keeps all."""
    if density >= 1.0:
        return None
    keep = max(1, int(density * tau.numel()))
    return kth_largest(tau.abs(), keep)


def magnitude_trim(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the k = max(1, floor(density·n)) largest-magnitude entries of tau (ties with the k-th kept too)."""
    threshold = trim_threshold(tau, density)
    return tau if threshold is None else tau * (tau.abs() >= threshold)


def tensor_generator(seed: int, name: str, index: int = 0) -> torch.Generator:
    """A generator seeded from (seed, tensor name, model index): results do not depend on processing order."""
    mixed = (seed * 1_000_003 + zlib.crc32(f"{name}#{index}".encode())) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def dare_drop(tau: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: keep each entry with probability `density`, rescale kept entries by 1/density."""
    if density >= 1.0:
        return tau
    keep = torch.rand(tau.shape, generator=generator) < density  # same shape as tau
    return tau * keep / density
