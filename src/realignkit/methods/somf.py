"""SOMF: safety realignment by subspace-oriented model fusion.

Yi, Zheng, Wang, Xu, Zhang, Wang, He, Li, Wang, "A safety realignment framework via subspace-oriented model fusion
for large language models" (Knowledge-Based Systems, 2024; arXiv:2405.09055).

For each targeted tensor the task vector τ_i = θ_tuned_i − θ_aligned (a full weight, or each LoRA factor A and B)
gets one shared mask. The mask is trained with a Concrete relaxation on safety preference data (DPO against
`aligned`) while the model stays frozen (calibration/mask_training.py). The repaired weight is

    θ = θ_aligned + merge_i(τ_i ⊙ m / mean(m))

with merge = task arithmetic (λ = `scale`), TIES or DARE from this package's own merge methods. Tensors outside
the targets get merge_i(τ_i) unmasked.

Choices that make a short CPU run decide something (the paper trains ~1000 steps on GPUs):
- lr: Adam moves every logit by about lr per step whatever the gradient's scale, so lr × steps bounds how far a
  logit can travel from its start. The paper's lr 1e-3 gives ±0.02 in 20 steps: sigmoid stays 0.495..0.505 and
  the fused model is the plain merge ±1 %. The default lr is 5 / steps (0.125 at 40 steps): a unit whose gradient
  keeps its sign for half the steps still reaches |logit| ≈ 2.5 (probability < 0.1 or > 0.9).
- final_mask = threshold by default: the mode of the Bernoulli mask (1 where sigmoid(logit) >= 0.5). The
  reference code exports a binary mask too (the 0.5 threshold of one Concrete draw); the expectation
  sigmoid(logit) keeps units near 0.5 after a short run, and m / mean(m) then undoes much of what it learned.
  A threshold mask can also drop a whole tensor's τ (all zeros), which the rescaled expectation never can.
  The logits still start at 0 (the paper), and a logit of exactly 0 keeps its entry, so an untrained mask is the
  plain merge in both modes.
- granularity: one logit per τ entry is the paper's (and the default for LoRA factors, which are small). For full
  fine-tunes the default is one logit per output row of each matrix (~1/in of the logits), applied in the
  forward hooks as m_row ⊙ (τ·x) without ever building τ ⊙ m; per-entry masks on full fine-tunes remain
  available (granularity=entry) at about twice the peak memory and time per step (33M-parameter Llama, CPU).
  LoRA factors run as two thin matmuls B'(A'x), never as the full B·A.
- sft_weight = 1 by default: the loss is DPO + the per-token NLL of the chosen answers (RPO, Pang et al. 2024).
  With pure DPO (sft_weight=0, the paper) a mask on SmolLM2-135M's harmful LoRA drove the held-out DPO loss from
  11.7 to 1e-8 by making the content-free compliance answers unlikely (log p per token −0.50 -> −11.7) while the
  refusals got less likely (−0.60 -> −0.93); it refused 3/30 held-out harmful prompts. With the NLL term the
  refusals became likely (−0.28; aligned −0.11) and it refused 21/30 (aligned 29/30, tuned 0/30).
- The model trained is the model written: tensors outside the targets (e.g. a full fine-tune's embeddings and
  norms) take part in training at their plain merge; the reference stays `aligned`.
- Only the pairs a run touches are scored by the reference model (lazily), and the DPO losses reported in the
  manifest are measured on `eval_pairs` pairs held out of training. The manifest's `somf.mask_stats` says what
  the mask decided: the share of entries kept, the share with sigmoid(logit) < 0.1 or > 0.9, a histogram of
  sigmoid(logit) and logit quantiles; `delta_change_vs_plain_merge` is ‖δ_somf − δ_plain‖ / ‖δ_plain‖.

Memory: the frozen model, the task vectors of the targets in fp32 (LoRA: the factors only), and 4 fp32 numbers
per mask unit while training (logit, gradient, two Adam moments).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from realignkit.calibration.mask_training import ScaledMerge, masked_task_vector
from realignkit.common.errors import BadInputError
from realignkit.methods.registry import MethodParams, get_method, register_method

if TYPE_CHECKING:
    from realignkit.calibration.mask_training import (
        MaskedWeight,
        MaskTrainingResult,
        MergeFn,
        PreferenceData,
        ReferenceLogprobs,
    )
    from realignkit.methods.context import RepairContext, TensorPlan

MASK_FILENAME = "somf_mask.safetensors"
LR_DISPLACEMENT = 5.0  # default lr = LR_DISPLACEMENT / steps: how far a logit with a steady gradient sign can go


class SomfParams(MethodParams):
    steps: int = Field(40, ge=0, description="Adam steps on the mask logits (batch_size pairs each)")
    lr: float | None = Field(
        None, gt=0,
        description="Adam learning rate of the logits; default 5/steps (Adam moves a logit ~lr per step, so "
        "lr x steps is how far it can go; the paper's 1e-3 suits ~1000 steps)",
    )  # fmt: skip
    temperature: float = Field(0.5, gt=0, description="Concrete (relaxed Bernoulli) temperature (paper 0.5)")
    temperature_final: float | None = Field(
        None, gt=0, description="anneal the temperature geometrically to this value by the last step; none = constant"
    )
    init_logit: float = Field(0.0, description="starting logit of every mask unit (paper 0 = probability 0.5)")
    beta: float = Field(0.1, gt=0, description="DPO beta (paper 0.1)")
    sft_weight: float = Field(
        1.0, ge=0,
        description="add this times the per-token NLL of the chosen answers (refusals) to the DPO loss, as RPO "
        "(Pang et al. 2024); 0 = the paper's pure DPO, which a mask can win by suppressing the rejected answers alone",
    )  # fmt: skip
    batch_size: int = Field(4, ge=1, description="preference pairs per step")
    max_length: int = Field(256, ge=8, description="tokens per prompt + answer (longer ones are cut)")
    eval_pairs: int = Field(
        32, ge=0,
        description="pairs held out of training to measure the DPO loss of the plain merge and of the final mask "
        "(0 = skip; with fewer than 2x this many pairs, all are trained on and measured)",
    )  # fmt: skip
    final_mask: Literal["threshold", "expectation"] = Field(
        "threshold",
        description="threshold: 1 where sigmoid(logit) >= 0.5 (the Bernoulli mode, like the paper's binary mask); "
        "expectation: sigmoid(logit)",
    )
    granularity: Literal["auto", "entry", "row", "column"] = Field(
        "auto",
        description="one mask logit per task-vector entry (paper), per output row or per input column of each "
        "matrix; auto = entry for LoRA factors, row for full task vectors",
    )
    targets: str | list[str] | None = Field(
        None,
        description="module-name globs; default every adapted module (LoRA) or every decoder linear (full)",
    )
    lora_mask: Literal["factors", "delta"] = Field(
        "factors", description="LoRA adapters: mask the factors A and B (paper), or the product delta B·A"
    )
    merge: Literal["task_arithmetic", "ties", "dare"] = Field(
        "task_arithmetic", description="how the masked task vectors of several --tuned are merged"
    )
    scale: float | None = Field(None, description="merge λ; default 1.0 for one --tuned, 0.3 for several")
    density: float | None = Field(None, gt=0, le=1, description="ties/dare density (default: theirs)")
    seed: int = Field(0, description="seed of the Concrete draws, the pair order and the held-out split")
    device: str = Field("auto", description="torch device for training; auto = cuda when available, else cpu")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="frozen model dtype")

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else LR_DISPLACEMENT / max(self.steps, 1)


# ---------------------------------------------------------------- pure tensor functions


def somf_fuse(
    aligned: torch.Tensor, taus: list[torch.Tensor], mask: torch.Tensor, merge: MergeFn
) -> torch.Tensor:
    """θ = θ_aligned + merge([τ_i ⊙ m / mean(m)]); `merge(list, name)` returns the merged delta."""
    return aligned + merge([masked_task_vector(tau, mask) for tau in taus], "")


def build_merge(params: SomfParams, n_tuned: int) -> MergeFn:
    """A merge(deltas, name) -> delta built on the registered task_arithmetic / ties / dare functions."""
    scale = params.scale if params.scale is not None else (1.0 if n_tuned == 1 else 0.3)
    if params.merge == "task_arithmetic" and n_tuned == 1:
        return ScaledMerge(scale)  # λ·τ, the one-vector case of task arithmetic (linear: hooks skip τ ⊙ m)
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


def _candidate_modules(model: torch.nn.Module, ctx: RepairContext, use_factors: bool) -> list[str]:
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


def _masked_weight(ctx: RepairContext, row: TensorPlan, module: str, use_factors: bool, device: str, granularity: str) -> MaskedWeight:
    from realignkit.calibration.mask_training import MaskedWeight

    if not use_factors:
        bundle = ctx.tensors(row)
        taus = [{"tau": (t - bundle.aligned).to(device)} for t in bundle.tuned]
        return MaskedWeight(row.aligned_name, "full", taus, {"tau": f"{module}.weight"}, granularity=granularity)
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
        granularity=granularity,
    )


def _build_targets(
    ctx: RepairContext, params: SomfParams, model: torch.nn.Module, device: str
) -> tuple[list[MaskedWeight], dict[str, str], bool, str]:
    """(MaskedWeight per target, aligned name -> output name, LoRA-factor mode?, granularity)."""
    from realignkit.calibration import select_targets

    use_factors = params.lora_mask == "factors" and all(getattr(s, "is_adapter", False) for s in ctx.tuned)
    granularity = params.granularity if params.granularity != "auto" else ("entry" if use_factors else "row")
    candidates = _candidate_modules(model, ctx, use_factors)
    modules = select_targets(candidates, params.targets) if params.targets else candidates
    rows = {row.aligned_name: row for row in ctx.plan if row.aligned_name and not row.passthrough}
    missing = [m for m in modules if f"{m}.weight" not in rows]
    if missing:
        raise BadInputError(f"cannot find the checkpoint tensor of SOMF target {missing[0]!r}")
    targets = [_masked_weight(ctx, rows[f"{m}.weight"], m, use_factors, device, granularity) for m in modules]
    return targets, {name: row.out_name for name, row in rows.items()}, use_factors, granularity


def _plain_merge_overrides(ctx: RepairContext, params: SomfParams, model: torch.nn.Module, targets: list[MaskedWeight]) -> dict[str, torch.Tensor]:
    """Parameters outside the targets that the output changes (to their plain merge): the model trained with the
    mask must be the model written, e.g. a full fine-tune's embeddings, norms and lm_head. Empty for LoRA."""
    own = dict(model.named_parameters())
    targeted = {t.param_name for t in targets}
    adapted: set[str] | None = None
    if all(getattr(src, "is_adapter", False) for src in ctx.tuned):  # only what an adapter touches can differ
        adapted = {n for src in ctx.tuned for n in src.adapted_names()}
    overrides = {}
    for row in ctx.plan:
        name = row.aligned_name
        if row.passthrough or name is None or name in targeted or name not in own:
            continue
        if adapted is not None and name not in adapted:
            continue
        bundle = ctx.tensors(row)
        merged = somf(bundle.aligned, bundle.tuned, params, name=row.out_name)
        if not torch.equal(merged, bundle.aligned):
            overrides[name] = merged.to(device=own[name].device, dtype=own[name].dtype)
    return overrides


def _split_rows(n: int, eval_pairs: int, seed: int) -> tuple[list[int], list[int], bool]:
    """(training rows, measured rows, held out?): eval_pairs pairs set aside when the file has 2x as many."""
    order = list(range(n))
    random.Random(f"somf-eval:{seed}").shuffle(order)
    if eval_pairs == 0:
        return order, [], False
    if n >= 2 * eval_pairs:
        return order[eval_pairs:], order[:eval_pairs], True
    return order, order, False


def prepare_somf(ctx: RepairContext, params: SomfParams) -> SomfState:
    """Train the shared Concrete mask with DPO and fuse every targeted tensor."""
    from realignkit.calibration import load_preference_jsonl
    from realignkit.calibration.mask_training import (
        MaskTrainingConfig,
        PreferenceData,
        PreferenceScope,
        ReferenceLogprobs,
        deterministic_mask,
        train_concrete_mask,
    )
    from realignkit.calibration.models import load_causal_lm, load_tokenizer

    started = time.time()
    pairs = load_preference_jsonl(ctx.calibration)
    device = _device(params)
    model = load_causal_lm(ctx.paths["aligned"], dtype=getattr(torch, params.dtype), device=device)
    tokenizer = load_tokenizer(ctx.paths["aligned"], *ctx.paths["tuned"])
    targets, out_names, use_factors, granularity = _build_targets(ctx, params, model, device)
    merge = build_merge(params, len(ctx.tuned))
    fixed = _plain_merge_overrides(ctx, params, model, targets)
    data = PreferenceData(tokenizer, pairs, params.max_length)
    reference = ReferenceLogprobs(model, data, params.batch_size, torch.device(device))
    train_rows, eval_rows, held_out = _split_rows(len(data), params.eval_pairs, params.seed)
    _check_forward(reference, (eval_rows or train_rows)[:1])
    config = MaskTrainingConfig(params.steps, params.learning_rate(), params.temperature, params.beta,
                                params.batch_size, params.max_length, params.seed, params.init_logit,
                                params.temperature_final, params.sft_weight)  # fmt: skip
    ones = {key: torch.ones(shape, device=device) for t in targets for key, shape in t.mask_shapes().items()}
    eval_plain = _evaluate(model, data, targets, ones, merge, params, reference, eval_rows, fixed)
    setup_seconds = time.time() - started
    scope = PreferenceScope(rows=train_rows, reference=reference, base_overrides=fixed)
    result = train_concrete_mask(model, data, targets, merge, config, scope=scope, progress=ctx.show_progress)
    final = {k: deterministic_mask(v, params.final_mask) for k, v in result.logits.items()}
    eval_final = _evaluate(model, data, targets, final, merge, params, reference, eval_rows, fixed)
    state = SomfState(merge=merge)
    change = [0.0, 0.0]  # Σ‖δ_final − δ_plain‖², Σ‖δ_plain‖²
    with torch.no_grad():
        for target in targets:
            delta = target.delta(final, merge)
            plain = target.delta({k: torch.ones_like(final[k]) for k in target.mask_keys.values()}, merge)
            change[0] += float((delta - plain).double().pow(2).sum())
            change[1] += float(plain.double().pow(2).sum())
            state.deltas[out_names[target.param_name]] = delta.cpu()
    summary = {
        "mode": "lora_factors" if use_factors else "full",
        "granularity": granularity,
        "lr": config.lr,
        "init_logit": params.init_logit,
        "temperature": [params.temperature, params.temperature_final or params.temperature],
        "final_mask": params.final_mask,
        "sft_weight": params.sft_weight,
        "preference_pairs": len(pairs),
        "train_pairs": len(train_rows),
        "eval_pairs": len(eval_rows),
        "eval_held_out": held_out,
        "reference_pairs_scored": len(reference.values),
        "unmasked_tensors_in_training": len(fixed),  # outside the targets, at their plain merge
        "dpo_loss_unmasked": eval_plain["dpo_loss"] if eval_plain else None,
        "dpo_loss_final_mask": eval_final["dpo_loss"] if eval_final else None,
        "eval_plain_merge": eval_plain,  # + mean per-token log p of the chosen / rejected answers
        "eval_final_mask": eval_final,
        "delta_change_vs_plain_merge": (change[0] / change[1]) ** 0.5 if change[1] > 0 else 0.0,
        "setup_seconds": round(setup_seconds, 3),
    }
    _record(ctx, params, targets, result, final, summary, started)
    return state


def _check_forward(reference: ReferenceLogprobs, rows: list[int]) -> None:
    """Score one pair under the aligned model first, so an unusable model fails as bad input."""
    try:
        reference(rows)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise BadInputError(f"the SOMF forward pass failed on this model: {exc}") from exc


def _evaluate(model: torch.nn.Module, data: PreferenceData, targets: list[MaskedWeight], masks: dict[str, torch.Tensor], merge: MergeFn,
              params: SomfParams, reference: ReferenceLogprobs, rows: list[int], fixed: dict[str, torch.Tensor]) -> dict | None:  # fmt: skip
    from realignkit.calibration.mask_training import PreferenceScope, evaluate_preferences

    if not rows:
        return None
    scope = PreferenceScope(rows=rows, reference=reference, base_overrides=fixed)
    return evaluate_preferences(model, data, targets, masks, merge, beta=params.beta, batch_size=params.batch_size,
                                scope=scope)  # fmt: skip


def _record(ctx: RepairContext, params: SomfParams, targets: list[MaskedWeight], result: MaskTrainingResult, final: dict[str, torch.Tensor],
            summary: dict[str, Any], started: float) -> None:  # fmt: skip
    from safetensors.torch import save_file

    from realignkit.calibration.mask_training import mask_statistics

    mask = {k: v.contiguous().cpu() for k, v in final.items()}
    ctx.add_output_file(MASK_FILENAME, lambda out_dir: save_file(mask, str(Path(out_dir) / MASK_FILENAME)))
    stats = mask_statistics(targets, result.logits, final)
    masked = sum(t.pieces[0][piece].numel() for t in targets for piece in t.mask_keys)
    head, tail = result.losses[:10], result.losses[-10:]
    ctx.manifest_extra["somf"] = {
        "mask_file": MASK_FILENAME,
        **{k: summary[k] for k in ("mode", "granularity")},
        "targets": len(targets),
        "masked_entries": masked,  # task-vector entries under the mask
        "mask_units": stats["mask_units"],  # logits (= masked_entries for granularity entry)
        "mask_fp32_bytes": 4 * stats["mask_units"],
        "mask_mean": stats["kept_share"],
        "mask_kept_share": stats["kept_share"],
        "mask_decided_share": stats["decided_share"],
        "mask_stats": stats,
        "steps": params.steps,
        **{k: v for k, v in summary.items() if k not in ("mode", "granularity", "setup_seconds")},
        "train_loss_first10": sum(head) / len(head) if head else None,
        "train_loss_last10": sum(tail) / len(tail) if tail else None,
        "train_seconds": round(result.seconds, 3),
        "seconds_per_step": round(result.seconds / params.steps, 3) if params.steps else None,
        "setup_seconds": summary["setup_seconds"],
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
        return aligned + state.deltas[name].to(device=aligned.device, dtype=aligned.dtype)
    if len(tuned) == 1 and params.merge == "task_arithmetic" and params.scale in (None, 1.0):
        return tuned[0]  # θ_aligned + 1·τ: the tuned tensor itself, without a rounding round trip
    merge = state.merge if state is not None else build_merge(params, len(tuned))
    return aligned + merge([t - aligned for t in tuned], name)
