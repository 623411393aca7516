"""Exact top-k selection by magnitude over a tensor given in blocks, with a deterministic tie-break.

TIES keeps exactly k = max(1, floor(density·n)) entries of each task vector. With bf16 checkpoints τ is
coarsely quantised, so many entries tie with the k-th largest magnitude; keeping all of them would raise
the effective density (measured: ~0.35 instead of 0.30), so ties are broken by position: the first ones in
row-major order are kept. The selection works block by block (two passes), so a tensor never has to be
materialized whole:

- pass 1: histogram of the high 16 bits of |τ| (for non-negative floats the int32 bit pattern sorts like
  the value) picks the bucket holding the k-th largest value;
- pass 2: per-block histograms of the low 16 bits inside that bucket give the exact value and, per block,
  how many entries equal it, hence how many of those each block keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

_HIGH_BINS = 1 << 15  # sign bit is 0, so the high half of the bits is < 2^15
_LOW_BINS = 1 << 16


@dataclass(frozen=True)
class TopK:
    """k-th largest magnitude and, per block, how many entries equal to it are kept (the rest are dropped)."""

    threshold: float
    equal_per_block: tuple[int, ...]
    keep_equal_per_block: tuple[int, ...]


def top_k_blocks(blocks: Callable[[], Iterator[list[torch.Tensor]]], k: int) -> list[TopK]:
    """Exact top-k of each stream of non-negative fp32 blocks; `blocks()` yields one block per stream."""
    high, total = _high_histograms(blocks)
    if not 1 <= k <= total:
        raise ValueError(f"k={k} outside 1..{total}")
    chosen = [_bucket_from_top(histogram, k) for histogram in high]  # (bucket, entries in higher buckets)
    per_block = _low_histograms(blocks, [bucket for bucket, _ in chosen])
    results = []
    for stream, (bucket, above) in enumerate(chosen):
        low_total = torch.zeros(_LOW_BINS, dtype=torch.int64, device=per_block[0][stream].device)
        for block in per_block:
            low_total += block[stream]
        low, above_in_bucket = _bucket_from_top(low_total, k - above)
        equal = tuple(int(block[stream][low]) for block in per_block)
        results.append(_with_quota(bucket, low, k - above - above_in_bucket, equal))
    return results


def _high_histograms(blocks: Callable[[], Iterator[list[torch.Tensor]]]) -> tuple[list[torch.Tensor], int]:
    high: list[torch.Tensor] = []
    total = 0
    for streams in blocks():
        if not high:
            high = [torch.zeros(_HIGH_BINS, dtype=torch.int64, device=block.device) for block in streams]
        for histogram, block in zip(high, streams, strict=True):
            bits = block.reshape(-1).contiguous().view(torch.int32)  # [b]
            histogram += torch.bincount(torch.bitwise_right_shift(bits, 16), minlength=_HIGH_BINS)
        total += streams[0].numel()
    return high, total


def _low_histograms(blocks: Callable[[], Iterator[list[torch.Tensor]]], buckets: list[int]) -> list[list[torch.Tensor]]:
    """Per block and stream: counts of the low 16 bits of the entries inside the chosen bucket."""
    per_block = []
    for streams in blocks():
        row = []
        for block, bucket in zip(streams, buckets, strict=True):
            # Offset inside the bucket, clamped so entries outside land in two spill bins (dropped after):
            # one bincount, no boolean mask + gather (slow paths in torch).
            offset = block.reshape(-1).contiguous().view(torch.int32) - (bucket << 16)
            counts = torch.bincount(offset.clamp_(-1, _LOW_BINS).add_(1), minlength=_LOW_BINS + 2)
            row.append(counts[1:-1].to(torch.int32))  # kept per block until the exact value is known
        per_block.append(row)
    return per_block


def _with_quota(bucket: int, low: int, keep_equal: int, equal: tuple[int, ...]) -> TopK:
    """Distribute the tied entries to keep over the blocks, first blocks first."""
    threshold = float(torch.tensor((bucket << 16) | low, dtype=torch.int32).view(torch.float32))
    keep, remaining = [], keep_equal
    for count in equal:
        keep.append(min(count, remaining))
        remaining -= keep[-1]
    return TopK(threshold, equal, tuple(keep))


def _bucket_from_top(histogram: torch.Tensor, k: int) -> tuple[int, int]:
    """Bucket holding the k-th largest entry, and how many entries lie in higher buckets."""
    from_top = histogram.flip(0).cumsum(0)  # [buckets]: entries in the top j+1 buckets
    position = int(torch.searchsorted(from_top, k))
    above = int(from_top[position - 1]) if position > 0 else 0
    return histogram.numel() - 1 - position, above


def keep_mask(magnitude: torch.Tensor, top: TopK, block: int) -> torch.Tensor:
    """Float 0/1 mask of the kept entries of one block (flat [b]); consumes `magnitude` (in place)."""
    equal, keep = top.equal_per_block[block], top.keep_equal_per_block[block]
    if keep == equal:  # all ties of this block are kept (also when it has none)
        return magnitude.ge_(top.threshold)
    if keep == 0:
        return magnitude.gt_(top.threshold)
    ties = magnitude.eq(top.threshold).float()  # [b]
    first_ties = ties.cumsum(0).le_(keep).mul_(ties)  # the first `keep` tied entries in row-major order
    return magnitude.gt_(top.threshold).add_(first_ties)


def kth_largest(magnitudes: torch.Tensor, k: int) -> float:
    """The k-th largest value of a non-negative fp32 tensor (exact)."""
    flat = magnitudes.reshape(-1)
    return top_k_blocks(lambda: iter([[flat]]), k)[0].threshold
