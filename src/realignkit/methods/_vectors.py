"""Tensor helpers shared by the merge methods: task vectors, magnitude trimming, DARE drop, weights."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import Field, field_validator

from realignkit.methods.registry import MethodParams

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class WeightedMergeParams(MethodParams):
    """Parameters shared by methods that add up several task vectors."""

    scale: float = Field(1.0, ge=-10, le=10, allow_inf_nan=False, description="λ, multiplies the merged vector")
    weights: list[FiniteFloat] | None = Field(None, min_length=1, description="w_i, one per --tuned (default 1)")

    @field_validator("weights", mode="before")
    @classmethod
    def _one_weight_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value


def resolve_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    return [1.0] * count if weights is None else [float(w) for w in weights]


def tensor_generator(seed: int, name: str, index: int = 0) -> torch.Generator:
    """A generator seeded from (seed, tensor name, model index): results do not depend on processing order."""
    mixed = (seed * 1_000_003 + zlib.crc32(f"{name}#{index}".encode())) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def dare_drop(tau: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: keep each entry with probability `density`, rescale kept entries by 1/density."""
    if density >= 1.0:
        return tau
    # Drawn on the CPU whatever tau's device: the same seed keeps the same entries with --device cuda.
    keep = (torch.rand(tau.shape, generator=generator) < density).to(tau.device)  # same shape as tau
    return tau * keep / density
