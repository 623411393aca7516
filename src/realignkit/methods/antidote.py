"""Antidote: one-shot pruning of the weights that matter most for harmful text.

Huang, Bhattacharya, Joshi, Kimball, Liu, "Antidote: Post-fine-tuning safety alignment for large language models
against harmful fine-tuning" (arXiv:2408.09600, 2024/2025).

Run the fine-tuned model over a re-alignment set (harmful prompt + harmful answer), record the L2 norm ‖X_j‖₂ of
every input feature of each target linear layer (Wanda statistics, calibration/wanda.py), score every weight by
S_ij = |W_ij| · ‖X_j‖₂ and, in each output row, zero the top-α fraction (⌊α·in_features⌋ entries) by score.

- Full fine-tunes: W is the tuned weight of each target (default: the attention projections q/k/v, as in the
  reference code). ``full_mode="delta"`` instead prunes the fine-tuning update τ = W_tuned − W_aligned with the
  same norms (S_ij = |τ_ij|·‖X_j‖₂; a pruned entry returns to its aligned value): the full-fine-tune analogue of
  pruning the LoRA adapter, which can only move the model back toward `aligned`.
- LoRA fine-tunes, ``lora_mode="adapter"`` (the reference code): prune the adapter's A (inputs = the layer input)
  and B (inputs = A·x, one norm per rank), then θ = θ_aligned + s·B'A'.
  ``lora_mode="delta"``: prune the merged ΔW = s·B·A with the layer-input norms, θ = θ_aligned + ΔW'.

``--calibration`` is the JSONL re-alignment set, or a ``calibration_stats.safetensors`` saved by an earlier run
(same tuned model): its norms are reused and no forward pass runs, which makes an alpha sweep cheap.

Massive activations (``protect_outliers``, an addition to the paper): in real LLMs a handful of hidden features
carry activations orders of magnitude above the rest (at the first token and at delimiters, where they act as
fixed biases that every input relies on; Sun, Chen, Kolter, Liu, "Massive activations in large language models",
2024). Their ‖X_j‖₂ dwarfs every other feature's, so S_ij ranks the weights that read them as the most important
for *any* text, harmful or not, and the plain formula zeroes them first: in SmolLM2-135M one feature of layer 9's
q_proj has norm 307 against a median of 8.3 and was pruned in 413 of 576 rows at α = 0.01, which destroyed the
model. With ``protect_outliers=k`` the input features whose norm exceeds k × the module's median feature norm are
never pruned; each row still loses ⌊α·in⌋ entries, taken from the other features by the same score.
``protect_outliers=0`` is the paper's formula exactly. The protected features of every module are listed in the
manifest (``antidote.protected_features``). The default k = 3 comes from SmolLM2-135M (q/k/v, α = 0.01): k = 10
protects only the ~3 massive features per layer and left the model broken (reference perplexity ×5, capitals
0/20), k = 3 protects ~12 per layer (2 %) and kept it usable (×1.4, capitals 15/20 vs 19/20); at α = 0.05 even
k = 3 broke it. The engine's self-check flags such outputs.

Benign set difference (``benign_calibration``, optional): also score every weight on benign text and prune only
the entries in the harmful top-α that are not in the benign top-``benign_keep`` of their row (Wei et al.,
"Assessing the brittleness of safety alignment via pruning and low-rank modifications", ICML 2024). Weights that
matter for all text, massive-activation ones included, then fall out of the pruned set by construction.

Measured on SmolLM2-135M (a harmful full fine-tune of the lab's aligned model that refuses 0/30 held-out AdvBench
prompts, aligned 30/30): no variant restored refusal. Pruning the weights broke the model or left it complying;
``full_mode="delta"`` kept utility (α up to 0.25) but changed nothing; the set difference at α = 0.05,
benign_keep = 0.02 made the model answer nothing at all (empty output) to harmful and to XSTest safe prompts alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from realignkit.calibration.calibration_files import PROMPT_RESPONSE_FORMAT
from realignkit.calibration.wanda import outlier_features
from realignkit.common.errors import BadInputError
from realignkit.methods.registry import MethodParams, register_method

if TYPE_CHECKING:
    from realignkit.methods.context import RepairContext

DEFAULT_PROTECT_OUTLIERS = 3.0
BENIGN_STATS_FILENAME = "calibration_stats_benign.safetensors"
CALIBRATION_FORMAT = PROMPT_RESPONSE_FORMAT  # shown by `realignkit repair antidote --help`


class AntidoteParams(MethodParams):
    alpha: float = Field(0.1, gt=0, lt=1, description="fraction of each output row to zero, in (0, 1)")
    targets: str | list[str] | None = Field(
        None, description="module-name globs; default q/k/v_proj (full) or the adapter's modules (LoRA)"
    )
    protect_outliers: float = Field(
        DEFAULT_PROTECT_OUTLIERS, ge=0, allow_inf_nan=False,
        description="never prune input features whose calibration norm exceeds this many times the module's "
        "median feature norm (massive activations, Sun et al. 2024); 0 = the paper's plain formula",
    )  # fmt: skip
    benign_calibration: str | None = Field(
        None,
        description="JSONL of BENIGN prompt/response pairs (or the benign statistics file of an earlier run): "
        "then a weight is pruned only if it is not also in its row's top benign_keep by the score on this "
        "benign text (set difference, Wei et al. 2024)",
    )
    benign_keep: float | None = Field(
        None, gt=0, lt=1, description="with benign_calibration: the fraction of each row kept for benign text "
        "(never pruned); default alpha/2",
    )  # fmt: skip
    full_mode: Literal["weights", "delta"] = Field(
        "weights",
        description="full fine-tunes: weights = prune W_tuned (reference code); delta = prune the update "
        "W_tuned - W_aligned, so pruned entries return to aligned",
    )
    lora_mode: Literal["adapter", "delta"] = Field(
        "adapter", description="LoRA only: adapter = prune A and B (reference code); delta = prune s·B·A"
    )
    batch_size: int = Field(8, ge=1, description="calibration batch size")
    max_length: int = Field(512, ge=8, description="calibration examples are cut to this many tokens")
    device: str = Field("auto", description="calibration device: auto (cuda if available), cpu, cuda:N")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="calibration forward dtype"
    )
    stream_layers: Literal["auto", "yes", "no"] = Field(
        "auto",
        description="calibrate one decoder layer at a time on the device (auto: when the model is big)",
    )


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


def top_alpha_row_mask(
    scores: torch.Tensor, alpha: float, protected: torch.Tensor | None = None
) -> torch.Tensor:
    """Bool mask [out, in], True at the ⌊α·in⌋ highest scores of every row.

    Columns listed in `protected` (input-feature indices) are never selected; the ⌊α·in⌋ entries come from the
    other columns (all of them when fewer remain).
    """
    k = pruned_per_row(scores.shape[1], alpha)
    if protected is not None and protected.numel():
        scores = scores.clone()
        scores[:, protected.to(scores.device)] = float("-inf")
        k = min(k, scores.shape[1] - int(protected.numel()))
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        mask.scatter_(1, torch.topk(scores, k, dim=1).indices, True)
    return mask


def prune_mask(
    weight: torch.Tensor,
    input_norm: torch.Tensor,
    alpha: float,
    protected: torch.Tensor | None = None,
    benign_norm: torch.Tensor | None = None,
    benign_keep: float = 0.0,
) -> torch.Tensor:
    """Bool mask [out, in] of the entries Antidote zeroes.

    The top-α of each row by S = |W|·‖X_harmful‖ (never a `protected` input feature); with `benign_norm`, minus
    the top-`benign_keep` of the row by |W|·‖X_benign‖: the set difference of Wei et al., "Assessing the
    brittleness of safety alignment via pruning and low-rank modifications" (ICML 2024), which keeps the weights
    that matter for ordinary text out of the pruned set.
    """
    mask = top_alpha_row_mask(wanda_scores(weight, input_norm), alpha, protected)
    if benign_norm is not None:
        mask &= ~top_alpha_row_mask(wanda_scores(weight, benign_norm), benign_keep)
    return mask


def antidote_prune(
    weight: torch.Tensor,
    input_norm: torch.Tensor,
    alpha: float,
    protect_outliers: float = 0.0,
    benign_norm: torch.Tensor | None = None,
    benign_keep: float = 0.0,
) -> torch.Tensor:
    """A copy of `weight` with the top-α entries of every row (by Wanda score) set to zero.

    With `protect_outliers` k > 0, input features whose norm exceeds k × the median norm (massive activations)
    are left alone; k = 0 is the paper's formula. With `benign_norm`, see `prune_mask`.
    """
    protected = outlier_features(input_norm, protect_outliers)
    return weight.masked_fill(prune_mask(weight, input_norm, alpha, protected, benign_norm, benign_keep), 0.0)


def lora_delta(
    a: torch.Tensor, b: torch.Tensor, scaling: float, fan_in_fan_out: bool = False
) -> torch.Tensor:
    """ΔW = s · B @ A.  a [r, in], b [out, r] -> [out, in] (transposed for fan_in_fan_out layers)."""
    delta = (b.float() @ a.float()) * scaling
    return delta.T if fan_in_fan_out else delta


# ---------------------------------------------------------------- per-tensor plan built by prepare


@dataclass
class _TensorAction:
    kind: Literal["full", "full_delta", "lora_delta", "lora_adapter"]
    norm: torch.Tensor | None = None  # [in] for full and lora_delta
    protected: torch.Tensor | None = None  # input features never pruned (full and lora_delta)
    benign: torch.Tensor | None = None  # benign-text input norms (set-difference variant)
    delta: torch.Tensor | None = None  # lora_delta: unpruned ΔW; lora_adapter: ΔW from pruned factors

    def on(self, device: torch.device) -> _TensorAction:
        """This action with its tensors on `device` (the engine's --device), for one tensor's pruning."""
        moved = {key: None if value is None else value.to(device)
                 for key, value in (("norm", self.norm), ("protected", self.protected), ("benign", self.benign),
                                    ("delta", self.delta))}
        return _TensorAction(self.kind, **moved)


@dataclass
class AntidoteState:
    actions: dict[str, _TensorAction] = field(default_factory=dict)
    norms: dict[str, torch.Tensor] = field(default_factory=dict)


# ---------------------------------------------------------------- whole-model hook


def _device(params: AntidoteParams) -> str:
    if params.device != "auto":
        return params.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _should_stream(model: torch.nn.Module, params: AntidoteParams, device: str) -> bool:
    if params.stream_layers != "auto":
        return params.stream_layers == "yes"
    if not device.startswith("cuda"):
        return False
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    free_bytes, _ = torch.cuda.mem_get_info()
    return model_bytes > 0.6 * free_bytes  # leave room for activations


def _select_modules(model: torch.nn.Module, params: AntidoteParams, is_lora: bool) -> list[str]:
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


def _plan_rows_by_weight(ctx: RepairContext, is_lora: bool) -> dict[str, Any]:
    """checkpoint weight name (in the model the calibration ran on) -> plan row."""
    rows = {}
    for row in ctx.plan:
        source_name = row.aligned_name if is_lora else row.tuned_names[0]
        if source_name is not None and not row.passthrough:
            rows[source_name] = row
    return rows


def _summary_entry(rows: int, cols: int, alpha: float, protected: torch.Tensor) -> dict[str, int]:
    per_row = min(pruned_per_row(cols, alpha), cols - int(protected.numel()))
    return {"pruned": rows * per_row, "total": rows * cols}


class _Calibrator:
    """Runs calibration texts through the tuned model (loaded once, on first use)."""

    def __init__(self, ctx: RepairContext, params: AntidoteParams, is_lora: bool) -> None:
        self.ctx, self.params, self.is_lora = ctx, params, is_lora
        self.model: Any = None
        self.tokenizer: Any = None
        self.stream = False

    def load(self) -> Any:
        from realignkit.calibration.models import load_calibration_model, load_tokenizer

        if self.model is None:
            tuned_path, aligned_path = self.ctx.paths["tuned"][0], self.ctx.paths.get("aligned")
            self.model, _ = load_calibration_model(
                tuned_path, aligned_path if self.is_lora else None, dtype=getattr(torch, self.params.dtype),
                device="cpu",
            )  # fmt: skip
            self.tokenizer = load_tokenizer(tuned_path, aligned_path)
            self.stream = _should_stream(self.model, self.params, _device(self.params))
            if not self.stream:
                self.model.to(_device(self.params))
        return self.model

    def norms(self, path: Path, names: list[str]) -> tuple[dict[str, torch.Tensor], int]:
        """(input norms of `names`, number of examples) over the prompt/response JSONL at `path`."""
        from realignkit.calibration import collect_input_norms, load_prompt_response_jsonl
        from realignkit.calibration.wanda import ForwardPasses

        examples = load_prompt_response_jsonl(path)
        model, params = self.load(), self.params
        passes = ForwardPasses(batch_size=params.batch_size, max_length=params.max_length, device=_device(params),
                               stream_layers=self.stream)
        norms = collect_input_norms(model, self.tokenizer, examples, names, passes, progress=self.ctx.show_progress)
        return norms, len(examples)


@dataclass
class _Statistics:
    modules: list[str]
    norms: dict[str, torch.Tensor]
    examples: int
    stream: bool
    benign: dict[str, torch.Tensor] | None = None
    benign_examples: int = 0


def _calibrate(ctx: RepairContext, params: AntidoteParams, is_lora: bool) -> _Statistics:
    """Input norms of every target over the harmful calibration set (and the benign one, when given)."""
    calibrator = _Calibrator(ctx, params, is_lora)
    if Path(ctx.calibration).suffix == ".safetensors":
        modules, norms = _reuse_statistics(ctx, params, is_lora, ctx.calibration)
        stats = _Statistics(modules, norms, 0, False)
    else:
        modules = _select_modules(calibrator.load(), params, is_lora)
        norms, n_examples = calibrator.norms(ctx.calibration, _stat_names(modules, is_lora, params))
        stats = _Statistics(modules, norms, n_examples, calibrator.stream)
    if params.benign_calibration is not None:
        benign_path = Path(params.benign_calibration)
        if not benign_path.is_file():
            raise BadInputError(f"benign_calibration {str(benign_path)!r} is not a file")
        if benign_path.suffix == ".safetensors":
            _, stats.benign = _reuse_statistics(ctx, params, is_lora, benign_path, modules=modules)
        else:
            stats.benign, stats.benign_examples = calibrator.norms(
                benign_path, _stat_names(modules, is_lora, params)
            )
    return stats


def _reuse_statistics(
    ctx: RepairContext, params: AntidoteParams, is_lora: bool, path: Path, modules: list[str] | None = None
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """A saved `calibration_stats.safetensors`: reuse the norms of an earlier run instead of recomputing."""
    from realignkit.calibration import DEFAULT_ATTENTION_TARGETS, load_input_norms, select_targets

    norms = load_input_norms(path)
    if modules is None and is_lora:
        source = ctx.tuned[0]
        adapted = [n for n in source.adapted_names() if source.lora_factors(n) is not None]
        candidates = sorted(n.removesuffix(".weight") for n in adapted)
        modules = select_targets(candidates, params.targets) if params.targets else candidates
    elif modules is None:
        weights = [row.tuned_names[0] for row in ctx.plan if not row.passthrough and len(row.shape) == 2]
        candidates = [n.removesuffix(".weight") for n in weights if n and n.endswith(".weight")]
        modules = select_targets(candidates, params.targets or list(DEFAULT_ATTENTION_TARGETS))
    needed = _stat_names(modules, is_lora, params)
    missing = [name for name in needed if name not in norms]
    if missing:
        raise BadInputError(
            f"statistics file {str(path)!r} has no entry for {missing[0]!r}; "
            "recompute it with a JSONL calibration file"
        )
    return modules, {name: norms[name] for name in needed}


def _benign_keep(params: AntidoteParams) -> float:
    return params.benign_keep if params.benign_keep is not None else params.alpha / 2


def _mask(action: _TensorAction, weight: torch.Tensor, params: AntidoteParams) -> torch.Tensor:
    action = action.on(weight.device)
    return prune_mask(
        weight, action.norm, params.alpha, action.protected, action.benign, _benign_keep(params)
    )


def _weight_of(action: _TensorAction, aligned: torch.Tensor, tuned: torch.Tensor) -> torch.Tensor:
    """The matrix a full/full_delta/lora_delta action scores and prunes."""
    if action.kind == "full":
        return tuned
    return tuned - aligned if action.kind == "full_delta" else action.delta


def _lora_adapter_action(
    factors: Any, module: str, stats: _Statistics, params: AntidoteParams, protected: dict[str, torch.Tensor],
    summary: dict[str, Any],
) -> _TensorAction:  # fmt: skip
    """Prune A (inputs: the layer input) and B (inputs: A·x, one norm per rank) now; the pass adds s·B'A'."""
    pieces = {}
    for piece, factor in (("lora_A", factors.a), ("lora_B", factors.b)):  # A [r, in], B [out, r]
        stat = f"{module}.{piece}"
        benign = stats.benign[stat] if stats.benign is not None else None
        mask = prune_mask(factor.float(), stats.norms[stat], params.alpha, protected[stat], benign,
                          _benign_keep(params))  # fmt: skip
        pieces[piece] = factor.float().masked_fill(mask, 0.0)
        summary[stat] = {"pruned": int(mask.sum()), "total": factor.numel()}
    return _TensorAction("lora_adapter", delta=lora_delta(pieces["lora_A"], pieces["lora_B"], factors.scaling,
                                                          factors.transpose))  # fmt: skip


def _plan_actions(
    ctx: RepairContext, params: AntidoteParams, stats: _Statistics, is_lora: bool
) -> tuple[AntidoteState, dict[str, Any], dict[str, torch.Tensor]]:
    """What the per-tensor pass does with each target, the pruned-count summary for the manifest, and the
    protected input features of every statistic (massive activations, see the module doc)."""
    state = AntidoteState(norms=stats.norms)
    protected = {name: outlier_features(norm, params.protect_outliers) for name, norm in stats.norms.items()}
    rows = _plan_rows_by_weight(ctx, is_lora)
    summary: dict[str, Any] = {}
    for module in stats.modules:
        row = rows.get(f"{module}.weight")
        if row is None:
            raise BadInputError(f"cannot find the checkpoint tensor of calibration target {module!r}")
        if is_lora and params.lora_mode == "adapter":
            factors = ctx.tuned[0].lora_factors(row.aligned_name)
            state.actions[row.out_name] = _lora_adapter_action(
                factors, module, stats, params, protected, summary
            )
            continue
        benign = stats.benign[module] if stats.benign is not None else None
        if is_lora:
            factors = ctx.tuned[0].lora_factors(row.aligned_name)
            delta = lora_delta(factors.a, factors.b, factors.scaling, factors.transpose)
            action = _TensorAction("lora_delta", stats.norms[module], protected[module], benign, delta=delta)
        else:
            kind = "full_delta" if params.full_mode == "delta" else "full"
            action = _TensorAction(kind, stats.norms[module], protected[module], benign)
        state.actions[row.out_name] = action
        if benign is None:  # the count follows from the shape
            summary[module] = _summary_entry(*row.shape[:2], params.alpha, protected[module])
        else:  # the set difference depends on the weights: score them once here to count
            bundle = ctx.tensors(row)
            mask = _mask(action, _weight_of(action, bundle.aligned, bundle.tuned[0]), params)
            summary[module] = {"pruned": int(mask.sum()), "total": mask.numel()}
    return state, summary, protected


def prepare_antidote(ctx: RepairContext, params: AntidoteParams) -> AntidoteState:
    """Collect Wanda statistics on the tuned model and plan which tensors are pruned how."""
    from realignkit.calibration import STATS_FILENAME, save_input_norms

    started = time.time()
    is_lora = bool(getattr(ctx.tuned[0], "is_adapter", False))
    stats = _calibrate(ctx, params, is_lora)
    state, summary, protected = _plan_actions(ctx, params, stats, is_lora)
    # Saved beside the repaired model so a run can be inspected, and reused as --calibration for cheap alpha sweeps.
    ctx.add_output_file(STATS_FILENAME, lambda out_dir: save_input_norms(stats.norms, out_dir))
    benign: dict[str, Any] | None = None
    if stats.benign is not None:
        benign_norms = stats.benign
        ctx.add_output_file(
            BENIGN_STATS_FILENAME,
            lambda out_dir: save_input_norms(benign_norms, out_dir, BENIGN_STATS_FILENAME),
        )
        benign = {"file": str(params.benign_calibration), "examples": stats.benign_examples or None,
                  "keep": _benign_keep(params), "stats_file": BENIGN_STATS_FILENAME}  # fmt: skip
    mode = (
        ("lora_" + params.lora_mode) if is_lora else ("full_delta" if params.full_mode == "delta" else "full")
    )
    ctx.manifest_extra["antidote"] = {
        "alpha": params.alpha,
        "protect_outliers": params.protect_outliers,
        # input-feature indices never pruned, per module (only modules that have any)
        "protected_features": {name: idx.tolist() for name, idx in protected.items() if idx.numel()},
        "benign": benign,
        "mode": mode,
        "calibration_examples": stats.examples or None,
        "statistics_reused": Path(ctx.calibration).suffix == ".safetensors",
        "stream_layers": stats.stream,
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
    action = action.on(aligned.device)
    if action.kind == "lora_adapter":
        return aligned + action.delta
    weight = _weight_of(action, aligned, tuned[0])
    mask = _mask(action, weight, params)
    if action.kind == "full":
        return weight.masked_fill(mask, 0.0)
    if action.kind == "full_delta":
        return torch.where(mask, aligned, tuned[0])  # = aligned + τ with the pruned entries of τ zeroed
    return aligned + weight.masked_fill(mask, 0.0)
