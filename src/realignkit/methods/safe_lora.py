"""`safe_lora`: project the fine-tuning update of dissimilar modules onto the safety-aligned subspace.

Paper: Hsu et al., "Safe LoRA: the Silver Lining of Reducing Safety Risks when Finetuning Large Language
Models", NeurIPS 2024.

Per target module: V = W_aligned − W_unaligned, C = V·Vᵀ / ‖V‖_F, ΔW the tuned update (B·A·scaling for a LoRA
adapter, W_tuned − W_aligned for a full fine-tune), s = cos(vec(C·ΔW), vec(ΔW)). Modules with s < threshold
(or the num_layers lowest s) get ΔW ← C·ΔW; for LoRA this equals the paper's B ← C·B.
`fraction` (ours, not the paper's) projects that share of the target modules, lowest s first: a threshold's
effect depends on the model (on a SmolLM2-135M LoRA every module had s < 0.45, so thresholds 0.5 and 1.0 were
the same candidate), a fraction's does not.
The choice is global, so a `prepare` pass computes s for every target module before anything is written.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from safetensors.torch import save_file

from realignkit.checkpoints import module_matches, module_of
from realignkit.methods.context import RepairContext, TensorPlan
from realignkit.methods.registry import MethodParams, register_method

DEFAULT_FULL_TARGETS = ("q_proj", "v_proj")
DEFAULT_THRESHOLD = 0.5


class SafeLoraParams(MethodParams):
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="project modules with s below this")
    num_layers: int | None = Field(None, ge=1, description="project the num_layers modules with the lowest s")
    fraction: float | None = Field(None, gt=0.0, le=1.0,
                                   description="project this share of the target modules, lowest s first")
    targets: list[str] | None = Field(None, min_length=1, description="module globs (default: see module doc)")
    output: Literal["model", "adapter"] = Field("model", description="adapter: write the projected LoRA adapter")

    @field_validator("targets", mode="before")
    @classmethod
    def _one_target_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_selection_rule(self) -> SafeLoraParams:
        given = [name for name in ("threshold", "num_layers", "fraction") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of threshold, num_layers and fraction, not both {given[0]} and {given[1]}")
        return self


def safety_projection(safety: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """C·ΔW with C = V·Vᵀ/‖V‖_F, V [out, in], ΔW [out, in]; multiplies in the cheaper order, never forms C when out > in."""
    norm = safety.norm()
    if float(norm) == 0.0:
        return torch.zeros_like(update)
    out_dim, in_dim = safety.shape
    if in_dim <= out_dim:
        return safety @ (safety.T @ update) / norm  # [out,in] @ ([in,out] @ [out,in])
    return (safety @ safety.T) @ update / norm  # ([out,in] @ [in,out]) @ [out,in]


def projection_similarity(safety: torch.Tensor, update: torch.Tensor) -> float:
    """s = cos(vec(C·ΔW), vec(ΔW)); 1.0 for a zero update (nothing to project)."""
    projected = safety_projection(safety, update).reshape(-1)
    flat = update.reshape(-1)
    denominator = projected.norm() * flat.norm()
    if float(denominator) == 0.0:
        return 1.0 if float(flat.norm()) == 0.0 else 0.0
    return float(torch.dot(projected, flat) / denominator)


def share_count(fraction: float, total: int) -> int:
    """ceil(fraction × total), immune to float noise (0.7 × 10 = 7.000000000000001 is 7 modules, not 8)."""
    return math.ceil(round(fraction * total, 9))


def _targets(ctx: RepairContext, params: SafeLoraParams) -> list[str] | str:
    if params.targets is not None:
        return params.targets
    tuned = ctx.tuned[0]
    if tuned.is_adapter and tuned.target_modules:
        return tuned.target_modules
    return list(DEFAULT_FULL_TARGETS)


def _candidates(ctx: RepairContext, targets: list[str] | str) -> list[TensorPlan]:
    tuned = ctx.tuned[0]
    adapted = set(tuned.adapted_names()) if tuned.is_adapter else None
    rows = []
    for row in ctx.plan:
        if row.passthrough or len(row.shape) != 2 or not row.out_name.endswith(".weight"):
            continue
        if adapted is not None and row.aligned_name not in adapted:
            continue
        if module_matches(module_of(row.out_name), targets):
            rows.append(row)
    return rows


def prepare_safe_lora(ctx: RepairContext, params: SafeLoraParams) -> dict[str, Any]:
    """Global pass: s for every target module, then the set of modules to project."""
    targets = _targets(ctx, params)
    rows = _candidates(ctx, targets)
    similarities: dict[str, float] = {}
    for row in ctx.progress(rows, desc="safe_lora similarities", total=len(rows)):
        bundle = ctx.tensors(row)
        assert bundle.unaligned is not None
        similarities[row.out_name] = projection_similarity(bundle.aligned - bundle.unaligned, bundle.tuned[0] - bundle.aligned)
    lowest_first = sorted(similarities, key=similarities.get)
    if params.num_layers is not None:
        projected = lowest_first[: params.num_layers]
        rule: dict[str, float] = {"num_layers": params.num_layers}
    elif params.fraction is not None:
        projected = lowest_first[: share_count(params.fraction, len(lowest_first))]
        rule = {"fraction": params.fraction}
    else:
        threshold = DEFAULT_THRESHOLD if params.threshold is None else params.threshold
        projected = [name for name, s in similarities.items() if s < threshold]
        rule = {"threshold": threshold}
    ctx.manifest_extra["safe_lora"] = {
        "targets": targets,
        "rule": rule,
        "similarities": {name: round(s, 6) for name, s in similarities.items()},
        "projected": sorted(projected),
    }
    return {"projected": frozenset(projected)}


def write_projected_adapter(ctx: RepairContext, params: SafeLoraParams, state: dict[str, Any], out_dir: Path) -> list[str]:
    """The paper's own output: the adapter with B ← C·B in projected modules (A ← A·C when ΔW = (B·A)ᵀ)."""
    adapter = ctx.tuned[0]
    tensors = dict(adapter.raw)
    for name in sorted(state["projected"]):
        factors = adapter.lora_factors(name)
        safety = ctx.aligned.get(name).float() - ctx.unaligned.get(name).float()  # V, stored layout
        if factors.transpose:  # ΔW = (B·A)ᵀ·s, so C·ΔW = (B·(A·C))ᵀ·s with C symmetric
            projected = safety_projection(safety, factors.a.float().T).T  # [r, in]
            tensors[factors.a_key] = projected.to(factors.a.dtype).contiguous()
        else:
            tensors[factors.b_key] = safety_projection(safety, factors.b.float()).to(factors.b.dtype).contiguous()
    for item in adapter.path.iterdir():
        if item.is_file() and item.name not in ("adapter_model.safetensors", "adapter_model.bin"):
            shutil.copy2(item, out_dir / item.name)
    save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    return sorted(p.name for p in out_dir.iterdir())


@register_method(
    "safe_lora",
    params=SafeLoraParams,
    needs=("aligned", "unaligned"),
    prepare=prepare_safe_lora,
    adapter_output=write_projected_adapter,
)
def safe_lora(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: SafeLoraParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: Any = None,
) -> torch.Tensor:
    """θ = θ_aligned + C·ΔW for the modules chosen in prepare, θ_tuned elsewhere."""
    if state is None or name not in state["projected"]:
        return tuned[0]
    assert unaligned is not None
    return aligned + safety_projection(aligned - unaligned, tuned[0] - aligned)
