"""Antidote: one-shot pruning of the weights that matter most for harmful text.

Huang, Bhattacharya, Joshi, Kimball, Liu, "Antidote: Post-fine-tuning safety alignment for large language models
against harmful fine-tuning" (arXiv:2408.09600, 2024/2025).

Run the fine-tuned model over a re-alignment set (harmful prompt + harmful answer), record the L2 norm ‖X_j‖₂ of
every input feature of each target linear layer (Wanda statistics, calibration/wanda.py), score every weight by
S_ij = |W_ij| · ‖X_j‖₂ and, in each output row, zero the top-α fraction (⌊α·in_features⌋ entries) by score.

- Full fine-tunes: W is the tuned weight of each target (default: the attention projections q/k/v, as in the
  reference code).
- LoRA fine-tunes, ``lora_mode="adapter"`` (the reference code): prune the adapter's A (inputs = the layer input)
  and B (inputs = A·x, one norm per rank), then θ = θ_aligned + s·B'A'.
  ``lora_mode="delta"``: prune the merged ΔW = s·B·A with the layer-input norms, θ = θ_aligned + ΔW'.

``--calibration`` is the JSONL re-alignment set, or a ``calibration_stats.safetensors`` saved by an earlier run
(same tuned model): its norms are reused and no forward pass runs, which makes an alpha sweep cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from realignkit.common.errors import BadInputError
from realignkit.methods.registry import MethodParams, register_method


class AntidoteParams(MethodParams):
    alpha: float = Field(0.1, gt=0, lt=1, description="fraction of each output row to zero, in (0, 1)")
    targets: str | list[str] | None = Field(
        None, description="module-name globs; default q/k/v_proj (full) or the adapter's modules (LoRA)"
    )
    lora_mode: Literal["adapter", "delta"] = "adapter"
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(512, ge=8)
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="calibration forward dtype"
    )
    stream_layers: Literal["auto", "yes", "no"] = "auto"


# ---------------------------------------------------------------- pure tensor functions


def wanda_scores(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """S_ij = |W_ij| · ‖X_j‖₂.  weight [out, in], input_norm [in] -> [out, in]."""
    if input_norm.dim() != 1 or input_norm.shape[0] != weight.shape[1]:
        raise BadInputError(
            f"calibration statistics have {tuple(input_norm.shape)} entries for a weight of shape "
            f"{tuple(weight.shape)}; they come from another model"
        )
    return weight.abs().float() * input_norm.float().unsqueeze(0)


def pruned_per_row(in_features: int, alpha: float) -> int:
    """How many entries each output row loses: ⌊α · in_features⌋, as in Wanda/Antidote."""
    return int(in_features * alpha)


def top_alpha_row_mask(scores: torch.Tensor, alpha: float) -> torch.Tensor:
    """Bool mask [out, in], True at the ⌊α·in⌋ highest scores of every row."""
    k = pruned_per_row(scores.shape[1], alpha)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        mask.scatter_(1, torch.topk(scores, k, dim=1).indices, True)
    return mask


def antidote_prune(weight: torch.Tensor, input_norm: torch.Tensor, alpha: float) -> torch.Tensor:
    """A copy of `weight` with the top-α entries of every row (by Wanda score) set to zero."""
    return weight.masked_fill(top_alpha_row_mask(wanda_scores(weight, input_norm), alpha), 0.0)


def lora_delta(
    a: torch.Tensor, b: torch.Tensor, scaling: float, fan_in_fan_out: bool = False
) -> torch.Tensor:
    """ΔW = s · B @ A.  a [r, in], b [out, r] -> [out, in] (transposed for fan_in_fan_out layers)."""
    delta = (b.float() @ a.float()) * scaling
    return delta.T if fan_in_fan_out else delta


# ---------------------------------------------------------------- per-tensor plan built by prepare


@dataclass
class _TensorAction:
    kind: Literal["full", "lora_delta", "lora_adapter"]
    norm: torch.Tensor | None = None  # [in] for full and lora_delta
    delta: torch.Tensor | None = None  # lora_delta: unpruned ΔW; lora_adapter: ΔW from pruned factors


@dataclass
class AntidoteState:
    actions: dict[str, _TensorAction] = field(default_factory=dict)
    norms: dict[str, torch.Tensor] = field(default_factory=dict)


# ---------------------------------------------------------------- whole-model hook


def _device(params: AntidoteParams) -> str:
    if params.device != "auto":
        return params.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _should_stream(model: Any, params: AntidoteParams, device: str) -> bool:
    if params.stream_layers != "auto":
        return params.stream_layers == "yes"
    if not device.startswith("cuda"):
        return False
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    free_bytes, _ = torch.cuda.mem_get_info()
    return model_bytes > 0.6 * free_bytes  # leave room for activations


def _select_modules(model: Any, params: AntidoteParams, is_lora: bool) -> list[str]:
    from realignkit.calibration import DEFAULT_ATTENTION_TARGETS, linear_modules, select_targets

    names = [n for n in linear_modules(model) if not n.endswith((".lora_A", ".lora_B"))]
    if is_lora:
        adapted = {n.rsplit(".", 1)[0] for n in linear_modules(model) if n.endswith(".lora_A")}
        names = [n for n in names if n in adapted]
        return select_targets(names, params.targets) if params.targets else names
    return select_targets(names, params.targets or list(DEFAULT_ATTENTION_TARGETS))


def _stat_names(modules: list[str], is_lora: bool, params: AntidoteParams) -> list[str]:
    if is_lora and params.lora_mode == "adapter":
        return [f"{m}.{piece}" for m in modules for piece in ("lora_A", "lora_B")]
    return list(modules)


def _plan_rows_by_weight(ctx: Any, is_lora: bool) -> dict[str, Any]:
    """checkpoint weight name (in the model the calibration ran on) -> plan row."""
    rows = {}
    for row in ctx.plan:
        source_name = row.aligned_name if is_lora else row.tuned_names[0]
        if source_name is not None and not row.passthrough:
            rows[source_name] = row
    return rows


def _summary_entry(rows: int, cols: int, alpha: float) -> dict[str, int]:
    return {"pruned": rows * pruned_per_row(cols, alpha), "total": rows * cols}


def _calibrate(
    ctx: Any, params: AntidoteParams, is_lora: bool
) -> tuple[list[str], dict[str, torch.Tensor], int, bool]:
    """Run the calibration set through the tuned model: (target modules, input norms, examples, streamed)."""
    from realignkit.calibration import collect_input_norms, load_prompt_response_jsonl
    from realignkit.calibration.models import load_calibration_model, load_tokenizer

    if Path(ctx.calibration).suffix == ".safetensors":
        return _reuse_statistics(ctx, params, is_lora)
    examples = load_prompt_response_jsonl(ctx.calibration)
    tuned_path, aligned_path = ctx.paths["tuned"][0], ctx.paths.get("aligned")
    dtype = getattr(torch, params.dtype)
    model, _ = load_calibration_model(
        tuned_path, aligned_path if is_lora else None, dtype=dtype, device="cpu"
    )
    tokenizer = load_tokenizer(tuned_path, aligned_path)
    modules = _select_modules(model, params, is_lora)
    device = _device(params)
    stream = _should_stream(model, params, device)
    if not stream:
        model.to(device)
    norms = collect_input_norms(
        model, tokenizer, examples, _stat_names(modules, is_lora, params), batch_size=params.batch_size,
        max_length=params.max_length, stream_layers=stream, device=device, progress=ctx.show_progress,
    )  # fmt: skip
    return modules, norms, len(examples), stream


def _reuse_statistics(ctx: Any, params: AntidoteParams, is_lora: bool) -> tuple[list[str], dict, int, bool]:
    """`--calibration calibration_stats.safetensors`: reuse the norms of an earlier run instead of recomputing."""
    from realignkit.calibration import DEFAULT_ATTENTION_TARGETS, load_input_norms, select_targets

    norms = load_input_norms(ctx.calibration)
    if is_lora:
        source = ctx.tuned[0]
        adapted = [n for n in source.adapted_names() if source.lora_factors(n) is not None]
        candidates = sorted(n.removesuffix(".weight") for n in adapted)
        modules = select_targets(candidates, params.targets) if params.targets else candidates
    else:
        weights = [row.tuned_names[0] for row in ctx.plan if not row.passthrough and len(row.shape) == 2]
        candidates = [n.removesuffix(".weight") for n in weights if n and n.endswith(".weight")]
        modules = select_targets(candidates, params.targets or list(DEFAULT_ATTENTION_TARGETS))
    needed = _stat_names(modules, is_lora, params)
    missing = [name for name in needed if name not in norms]
    if missing:
        raise BadInputError(
            f"statistics file {str(ctx.calibration)!r} has no entry for {missing[0]!r}; "
            "recompute it with a JSONL calibration file"
        )
    return modules, {name: norms[name] for name in needed}, 0, False


def _lora_action(
    factors: Any, module: str, norms: dict[str, torch.Tensor], params: AntidoteParams
) -> _TensorAction:
    if params.lora_mode == "delta":
        delta = lora_delta(factors.a, factors.b, factors.scaling, factors.transpose)
        return _TensorAction("lora_delta", norm=norms[module], delta=delta)
    a = antidote_prune(factors.a.float(), norms[f"{module}.lora_A"], params.alpha)  # [r, in]
    b = antidote_prune(factors.b.float(), norms[f"{module}.lora_B"], params.alpha)  # [out, r]
    return _TensorAction("lora_adapter", delta=lora_delta(a, b, factors.scaling, factors.transpose))


def _plan_actions(ctx: Any, params: AntidoteParams, modules: list[str], norms: dict[str, torch.Tensor],
                  is_lora: bool) -> tuple[AntidoteState, dict[str, Any]]:  # fmt: skip
    """What the per-tensor pass does with each target, and the pruned-count summary for the manifest."""
    state = AntidoteState(norms=norms)
    rows = _plan_rows_by_weight(ctx, is_lora)
    summary: dict[str, Any] = {}
    for module in modules:
        row = rows.get(f"{module}.weight")
        if row is None:
            raise BadInputError(f"cannot find the checkpoint tensor of calibration target {module!r}")
        if not is_lora:
            state.actions[row.out_name] = _TensorAction("full", norm=norms[module])
            summary[module] = _summary_entry(*row.shape[:2], params.alpha)
            continue
        factors = ctx.tuned[0].lora_factors(row.aligned_name)
        state.actions[row.out_name] = _lora_action(factors, module, norms, params)
        if params.lora_mode == "delta":
            summary[module] = _summary_entry(*row.shape[:2], params.alpha)
        else:
            summary[f"{module}.lora_A"] = _summary_entry(*factors.a.shape, params.alpha)
            summary[f"{module}.lora_B"] = _summary_entry(*factors.b.shape, params.alpha)
    return state, summary


def prepare_antidote(ctx: Any, params: AntidoteParams) -> AntidoteState:
    """Collect Wanda statistics on the tuned model and plan which tensors are pruned how."""
    from realignkit.calibration import STATS_FILENAME, save_input_norms

    started = time.time()
    is_lora = bool(getattr(ctx.tuned[0], "is_adapter", False))
    modules, norms, n_examples, stream = _calibrate(ctx, params, is_lora)
    state, summary = _plan_actions(ctx, params, modules, norms, is_lora)
    # Saved beside the repaired model so a run can be inspected, and reused as --calibration for cheap alpha sweeps.
    ctx.add_output_file(STATS_FILENAME, lambda out_dir: save_input_norms(norms, out_dir))
    ctx.manifest_extra["antidote"] = {
        "alpha": params.alpha,
        "mode": ("lora_" + params.lora_mode) if is_lora else "full",
        "calibration_examples": n_examples or None,
        "statistics_reused": Path(ctx.calibration).suffix == ".safetensors",
        "stream_layers": stream,
        "stats_file": STATS_FILENAME,
        "pruned_total": sum(entry["pruned"] for entry in summary.values()),
        "targeted_total": sum(entry["total"] for entry in summary.values()),
        "modules": summary,
        "calibration_seconds": round(time.time() - started, 3),
    }
    return state


# ---------------------------------------------------------------- the registered per-tensor function


@register_method("antidote", params=AntidoteParams, needs=("calibration",), prepare=prepare_antidote)
def antidote(
    aligned: torch.Tensor,
    tuned: list[torch.Tensor],
    params: AntidoteParams,
    *,
    unaligned: torch.Tensor | None = None,
    name: str = "",
    state: AntidoteState | None = None,
) -> torch.Tensor:
    """Antidote (Huang et al.): zero the top-alpha Wanda-scored weights of each row of the target layers."""
    action = state.actions.get(name) if state is not None else None
    if action is None:
        return tuned[0]
    if action.kind == "full":
        return antidote_prune(tuned[0], action.norm, params.alpha)
    if action.kind == "lora_delta":
        return aligned + antidote_prune(action.delta, action.norm, params.alpha)
    return aligned + action.delta
