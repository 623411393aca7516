"""`linear`: weighted average of whole models (mergekit's `linear`, a "model soup").

Paper: Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy without
increasing inference time", ICML 2022.

θ = Σ w_i·θ_tuned_i, divided by Σ w_i when `normalize` (the default, as in mergekit). Every model to average is a
--tuned (repeat one to weight it); --aligned only anchors tensor names and must match them (it can be one of them).
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from realignkit.common.errors import BadInputError
from realignkit.methods._vectors import FiniteFloat
from realignkit.methods.registry import MethodParams, register_method


class LinearParams(MethodParams):
    weights: list[FiniteFloat] | None = Field(None, min_length=1, description="w_i, one per --tuned (default 1)")
    normalize: bool = Field(True, description="divide by Σ w_i")

    @field_validator("weights", mode="before")
    @classmethod
    def _one_weight_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value

    def check_tuned_count(self, count: int) -> None:
        if self.weights is not None and len(self.weights) != count:
            raise BadInputError(f"weights has {len(self.weights)} value(s) but {count} --tuned were given")
        if self.normalize and self.weights is not None and sum(self.weights) == 0:
            raise BadInputError("linear with normalize: the weights sum to 0")


@register_method("linear", params=LinearParams, multi_tuned=True, elementwise=True)
def linear(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: LinearParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: object = None,
) -> torch.Tensor:
    """θ = Σ w_i·θ_i [/ Σ w_i]."""
    weights = [1.0] * len(tuned) if params.weights is None else params.weights
    total = torch.zeros_like(aligned)
    for theta, weight in zip(tuned, weights, strict=True):
        total.add_(theta, alpha=weight)
    return total / sum(weights) if params.normalize else total
