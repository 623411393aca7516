"""SOMF: safety realignment by subspace-oriented model fusion.

Yi, Zheng, Wang, Xu, Zhang, Wang, He, Li, Wang, "A safety realignment framework via subspace-oriented model fusion
for large language models" (Knowledge-Based Systems, 2024; arXiv:2405.09055).

For each targeted tensor the task vector τ_i = θ_tuned_i − θ_aligned (a full weight, or each LoRA factor A and B)
gets one shared mask logit per entry. The mask is trained with a Concrete relaxation on safety preference data
(DPO against `aligned`) while the model stays frozen (calibration/mask_training.py). The repaired weight is

    θ = θ_aligned + merge_i(τ_i ⊙ m / mean(m))

with a deterministic m (sigmoid(logits), or its 0.5 threshold) and merge = task arithmetic (λ = `scale`), TIES or
DARE from this package's own merge methods. Tensors outside the targets get merge_i(τ_i) unmasked.

Memory: the mask logits hold one fp32 number per targeted parameter (×3 more while training: gradient and the two
Adam moments), on top of the aligned model in fp32 and the task vectors. Restrict `targets` on big models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from realignkit.calibration.mask_training import masked_task_vector
from realignkit.common.errors import BadInputError
from realignkit.methods.registry import MethodParams, get_method, register_method

MASK_FILENAME = "somf_mask.safetensors"



class SomfParams(MethodParams):
    steps: int = Field(100, ge=0)
    lr: float = Field(1e-3, gt=0)
    temperature: float = Field(0.5, gt=0)
    beta: float = Field(0.1, gt=0)
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(256, ge=8)
    final_mask: Literal["expectation", "threshold"] = "expectation"
    targets: str | list[str] | None = Field(
        None,
        description="module-name globs; default every adapted module (LoRA) or every decoder linear (full)",
    )
    lora_mask: Literal["factors", "delta"] = "factors"
    merge: Literal["task_arithmetic", "ties", "dare"] = "task_arithmetic"
    scale: float | None = Field(None, description="merge λ; default 1.0 for one --tuned, 0.3 for several")
    density: float | None = Field(None, gt=0, le=1, description="ties/dare density (default: theirs)")
    seed: int = 0
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="frozen model dtype")


# ---------------------------------------------------------------- pure tensor functions


def somf_fuse(
    aligned: torch.Tensor, taus: list[torch.Tensor], mask: torch.Tensor, merge: Any
) -> torch.Tensor:
    """θ = θ_aligned + merge([τ_i ⊙ m / mean(m)]); `merge(list, name)` returns the merged delta."""
    return aligned + merge([masked_task_vector(tau, mask) for tau in taus], "")


def build_merge(params: SomfParams, n_tuned: int) -> Any:
    """A merge(deltas, name) -> delta built on the registered task_arithmetic / ties / dare functions."""
    scale = params.scale if params.scale is not None else (1.0 if n_tuned == 1 else 0.3)
    if params.merge == "task_arithmetic" and n_tuned == 1:
        return lambda deltas, name: deltas[0] * scale  # λ·τ, the one-vector case of task arithmetic
    spec = get_method(params.merge)
    offered = {"scale": scale, "seed": params.seed}
    if params.density is not None:
        offered["density"] = params.density
    merge_params = spec.parse_params({k: v for k, v in offered.items() if k in spec.params.model_fields})

    def merge(deltas: list[torch.Tensor], name: str) -> torch.Tensor:
        zero = torch.zeros_like(deltas[0])  # merging onto θ = 0 returns the merged delta itself
        return spec.fn(zero, list(deltas), merge_params, name=name)

    return merge


# ---------------------------------------------------------------- whole-model hook


@dataclass
class SomfState:
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)  # out_name -> fused delta for targets
    merge: Any = None


def _device(params: SomfParams) -> str:
    if params.device != "auto":
        return params.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _candidate_modules(model: Any, ctx: Any, use_factors: bool) -> list[str]:
    from realignkit.calibration.wanda import decoder_layers, linear_modules

    inside = {id(m) for m in decoder_layers(model).modules()}
    names = [n for n, m in linear_modules(model).items() if id(m) in inside]
    if use_factors:
        adapted = [
            {n.rsplit(".", 1)[0] for n in src.adapted_names() if src.lora_factors(n) is not None}
            for src in ctx.tuned
        ]
        names = [n for n in names if all(n in a for a in adapted)]
    return names


def _masked_weight(ctx: Any, row: Any, module: str, use_factors: bool, device: str) -> Any:
    from realignkit.calibration.mask_training import MaskedWeight

    if not use_factors:
        bundle = ctx.tensors(row)
        taus = [{"tau": (t - bundle.aligned).to(device)} for t in bundle.tuned]
        return MaskedWeight(row.aligned_name, "full", taus, {"tau": f"{module}.weight"})
    factors = [src.lora_factors(row.aligned_name) for src in ctx.tuned]
    shapes = {(tuple(f.a.shape), tuple(f.b.shape)) for f in factors}
    if len(shapes) > 1:
        raise BadInputError(
            f"LoRA adapters differ in rank at {module!r}; one shared mask needs lora_mask=delta"
        )
    return MaskedWeight(
        row.aligned_name,
        "lora",
        [{"A": f.a.float().to(device), "B": f.b.float().to(device)} for f in factors],
        {"A": f"{module}.lora_A.weight", "B": f"{module}.lora_B.weight"},
        scalings=[f.scaling for f in factors],
        transpose=[f.transpose for f in factors],
    )


def _build_targets(
    ctx: Any, params: SomfParams, model: Any, device: str
) -> tuple[list[Any], dict[str, str], bool]:
    """(MaskedWeight per target, aligned name -> output name, LoRA-factor mode?)."""
    from realignkit.calibration import select_targets

    use_factors = params.lora_mask == "factors" and all(getattr(s, "is_adapter", False) for s in ctx.tuned)
    candidates = _candidate_modules(model, ctx, use_factors)
    modules = select_targets(candidates, params.targets) if params.targets else candidates
    rows = {row.aligned_name: row for row in ctx.plan if row.aligned_name and not row.passthrough}
    missing = [m for m in modules if f"{m}.weight" not in rows]
    if missing:
        raise BadInputError(f"cannot find the checkpoint tensor of SOMF target {missing[0]!r}")
    targets = [_masked_weight(ctx, rows[f"{m}.weight"], m, use_factors, device) for m in modules]
    return targets, {name: row.out_name for name, row in rows.items()}, use_factors


def _reference(model: Any, data: Any, params: SomfParams, device: str) -> torch.Tensor:
    from realignkit.calibration.mask_training import reference_logprobs

    try:
        return reference_logprobs(model, data, params.batch_size, torch.device(device))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise BadInputError(f"the SOMF forward pass failed on this model: {exc}") from exc


def prepare_somf(ctx: Any, params: SomfParams) -> SomfState:
    """Train the shared Concrete mask with DPO and fuse every targeted tensor."""
    from realignkit.calibration import load_preference_jsonl
    from realignkit.calibration.mask_training import (
        MaskTrainingConfig,
        PreferenceData,
        deterministic_mask,
        evaluate_dpo_loss,
        train_concrete_mask,
    )
    from realignkit.calibration.models import load_causal_lm, load_tokenizer

    started = time.time()
    pairs = load_preference_jsonl(ctx.calibration)
    device = _device(params)
    model = load_causal_lm(ctx.paths["aligned"], dtype=getattr(torch, params.dtype), device=device)
    tokenizer = load_tokenizer(ctx.paths["aligned"], *ctx.paths["tuned"])
    targets, out_names, use_factors = _build_targets(ctx, params, model, device)
    merge = build_merge(params, len(ctx.tuned))
    data = PreferenceData(tokenizer, pairs, params.max_length)
    reference = _reference(model, data, params, device)
    config = MaskTrainingConfig(params.steps, params.lr, params.temperature, params.beta,
                                params.batch_size, params.max_length, params.seed)  # fmt: skip
    ones = {k: torch.ones_like(v) for k, v in _zero_logits(targets, device).items()}  # m = 1: plain τ
    loss_unmasked = evaluate_dpo_loss(
        model, data, targets, ones, merge, beta=params.beta, reference=reference
    )
    result = train_concrete_mask(
        model, data, targets, merge, config, reference=reference, progress=ctx.show_progress
    )
    final = {k: deterministic_mask(v, params.final_mask) for k, v in result.logits.items()}
    loss_final = evaluate_dpo_loss(model, data, targets, final, merge, beta=params.beta, reference=reference)
    state = SomfState(merge=merge)
    with torch.no_grad():
        for target in targets:
            state.deltas[out_names[target.param_name]] = target.delta(final, merge).cpu()
    _record(ctx, params, targets, result, final, loss_unmasked, loss_final, len(pairs), use_factors, started)
    return state


def _zero_logits(targets: list[Any], device: str) -> dict[str, torch.Tensor]:
    return {key: torch.zeros(shape, device=device) for t in targets for key, shape in t.mask_shapes().items()}


def _record(ctx: Any, params: SomfParams, targets: list[Any], result: Any, final: dict[str, torch.Tensor],
            loss_unmasked: float, loss_final: float, n_pairs: int, use_factors: bool, started: float) -> None:  # fmt: skip
    masked = sum(v.numel() for v in final.values())
    from safetensors.torch import save_file

    mask = {k: v.contiguous().cpu() for k, v in final.items()}
    ctx.add_output_file(MASK_FILENAME, lambda out_dir: save_file(mask, str(Path(out_dir) / MASK_FILENAME)))
    head, tail = result.losses[:10], result.losses[-10:]
    ctx.manifest_extra["somf"] = {
        "mask_file": MASK_FILENAME,
        "mode": "lora_factors" if use_factors else "full",
        "targets": len(targets),
        "masked_entries": masked,
        "mask_fp32_bytes": 4 * masked,
        "mask_mean": sum(float(v.sum()) for v in final.values()) / max(masked, 1),
        "preference_pairs": n_pairs,
        "steps": params.steps,
        "train_loss_first10": sum(head) / len(head) if head else None,
        "train_loss_last10": sum(tail) / len(tail) if tail else None,
        "dpo_loss_unmasked": loss_unmasked,
        "dpo_loss_final_mask": loss_final,
        "train_seconds": round(result.seconds, 3),
        "seconds": round(time.time() - started, 3),
    }


# ---------------------------------------------------------------- the registered per-tensor function


@register_method("somf", params=SomfParams, needs=("calibration",), multi_tuned=True, prepare=prepare_somf)
def somf(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: SomfParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: SomfState | None = None,
) -> torch.Tensor:
    """SOMF (Yi et al.): theta = aligned + merge(tau_i * m / mean(m)) with a DPO-trained Concrete mask m."""
    if state is not None and name in state.deltas:
        return aligned + state.deltas[name].to(aligned.dtype)
    if len(tuned) == 1 and params.merge == "task_arithmetic" and params.scale in (None, 1.0):
        return tuned[0]  # θ_aligned + 1·τ: the tuned tensor itself, without a rounding round trip
    merge = state.merge if state is not None else build_merge(params, len(tuned))
    return aligned + merge([t - aligned for t in tuned], name)
