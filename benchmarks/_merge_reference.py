"""Independent fp32 reference for bench_merge.py: judges each tool's merged tensors on a sample of names.

Written from the papers' formulas, not from either tool, so that a disagreement between realignkit and mergekit
can be attributed: to a bug, or to a tie-breaking choice that both readings of the paper allow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from _common import BF16_ATOL, BF16_RTOL, LlamaSpec, load_tensor, safetensors_locations


def reference_names(spec: LlamaSpec) -> list[str]:
    """A sample covering every kind of tensor: embedding, norm gains, attention and MLP, first and last layer."""
    last = spec.layers - 1
    return [
        "model.embed_tokens.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.q_proj.weight",
        f"model.layers.{last}.mlp.down_proj.weight",
        "model.norm.weight",
    ]


def reference_task_arithmetic(aligned: torch.Tensor, tuned: list[torch.Tensor], recipe: dict) -> torch.Tensor:
    # θ = θ_aligned + λ·Σ w_i·τ_i, all fp32
    merged = sum(w * (t - aligned) for w, t in zip(recipe["weights"], tuned, strict=True))
    return aligned + recipe["scale"] * merged


def reference_ties(
    aligned: torch.Tensor, tuned: list[torch.Tensor], recipe: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    """TIES (Yadav et al. 2023) in fp32, plus a mask of entries whose result depends on tie-breaking.

    Ambiguous entries: top-k ties at the cut (below) and zero weighted sums at the sign election.

    Trim each τ_i to its k = int(density·n) largest |τ_i| entries; elect the sign of Σ w_i·trimmed τ_i (>= 0 ->
    +); average the agreeing weighted entries over the weights that agree (disjoint mean). bf16 task vectors
    take few distinct values, so many entries tie with the k-th magnitude: which of those a top-k keeps is
    arbitrary, and those entries are reported as ambiguous rather than wrong.
    """
    weighted, ambiguous = [], torch.zeros(aligned.shape, dtype=torch.bool)
    weights = torch.tensor(recipe["weights"], dtype=torch.float32)
    for weight, tensor in zip(recipe["weights"], tuned, strict=True):
        tau = (tensor - aligned).flatten()  # (n,)
        k = max(1, int(recipe["density"] * tau.numel()))
        magnitude = tau.abs()
        kept = torch.topk(magnitude, k, sorted=False).indices
        kth = magnitude[kept].min()
        trimmed = torch.zeros_like(tau)
        trimmed[kept] = tau[kept]
        weighted.append((weight * trimmed).view_as(aligned))
        # Only a tie that crosses the cut (more entries >= kth than k) leaves a choice to the implementation.
        if kth > 0 and int((magnitude >= kth).sum()) > k:
            ambiguous |= (magnitude == kth).view_as(aligned)
    stacked = torch.stack(weighted)  # (n_tuned, *shape)
    total = stacked.sum(dim=0)
    # Σ = 0 with non-zero entries (w1·τ1 = −w2·τ2): mergekit elects +, sign(0) = 0 elects nobody. Both are
    # readings of the paper's γ = sgn(Σ τ̂), so such entries count as ambiguous too.
    ambiguous |= (total == 0) & (stacked != 0).any(dim=0)
    elected = torch.where(total >= 0, 1.0, -1.0)
    agree = stacked.sign() == elected  # trimmed (zero) entries never agree
    weight_shape = (-1,) + (1,) * aligned.dim()
    divisor = (weights.view(weight_shape) * agree).sum(dim=0)
    divisor[divisor == 0] = 1.0
    merged = (stacked * agree).sum(dim=0) / divisor
    return aligned + recipe["scale"] * merged, ambiguous


def reference_check(
    method: str, recipe: dict[str, Any], spec: LlamaSpec, models: dict[str, Path], out_dirs: dict[str, Path]
) -> dict:
    """Each tool's output vs the fp32 reference on `reference_names`, counting entries beyond one bf16 step."""
    inputs = {role: safetensors_locations(path) for role, path in models.items()}
    outputs = {tool: safetensors_locations(path) for tool, path in out_dirs.items()}
    report: dict[str, dict[str, Any]] = {
        tool: {"entries": 0, "wrong": 0, "ambiguous": 0} for tool in out_dirs
    }
    for name in reference_names(spec):
        aligned = load_tensor(inputs["aligned"], name).float()
        tuned = [load_tensor(inputs[role], name).float() for role in ("tuned1", "tuned2")]
        if method == "ties":
            expected, ambiguous = reference_ties(aligned, tuned, recipe)
        else:
            expected, ambiguous = (
                reference_task_arithmetic(aligned, tuned, recipe),
                torch.zeros_like(aligned, dtype=torch.bool),
            )
        expected = expected.to(torch.bfloat16).float()  # what an exact computation writes to a bf16 file
        for tool, locations in outputs.items():
            got = load_tensor(locations, name).float()
            off = (got - expected).abs() > BF16_ATOL + BF16_RTOL * got.abs().maximum(expected.abs())
            stats = report[tool]
            stats["entries"] += got.numel()
            stats["wrong"] += int((off & ~ambiguous).sum())
            stats["ambiguous"] += int(ambiguous.sum())
            stats.setdefault("ambiguous_and_different", 0)
            stats["ambiguous_and_different"] += int((off & ambiguous).sum())
    for tool, stats in report.items():
        stats["tensors"] = reference_names(spec)
        stats["summary"] = (
            f"{tool} vs fp32 reference on {len(stats['tensors'])} tensors: {stats['wrong']} of {stats['entries']} "
            f"entries beyond one bf16 step"
            + (
                f" (+{stats['ambiguous_and_different']} differing only at top-k or sign-election ties, "
                f"of {stats['ambiguous']} such entries)"
                if method == "ties"
                else ""
            )
        )
    return report
