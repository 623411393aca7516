"""SOMF mask training: a Concrete (relaxed Bernoulli) mask on task vectors, trained with DPO on a frozen model.

Yi et al., "A safety realignment framework via subspace-oriented model fusion for large language models" (2024).
One fp32 logit per mask unit, initialised to `init_logit` (0 in the paper: probability 0.5). A unit is one entry of
the task vector (the paper), or one output row / input column of it (`granularity`, a cheaper structured mask whose
value is broadcast over its row or column). In training a mask is sampled with the Concrete relaxation
(Maddison et al. 2017) at temperature T; the weight used in the forward pass is

    θ = θ_aligned + merge_i(τ_i ⊙ m / mean(m))

computed without touching the model: the model stays frozen and only the logits learn. For one task vector merged
by task arithmetic, row/column masks and LoRA factors are applied in forward hooks that add (τ ⊙ m / mean(m))·x to
the layer's output without ever building τ ⊙ m (a row mask scales the output features of τ·x, a column mask the
input features, LoRA factors run as two thin matmuls B'(A'x)); per-entry masks and non-linear merges swap the
fused weight in functionally (`torch.func.functional_call`). The loss is DPO (Rafailov et al. 2023) against the
unchanged `aligned` model as reference. At the end a deterministic mask is taken: the threshold of sigmoid(logits)
at 0.5 (the mode of the Bernoulli mask, the deterministic counterpart of the reference code's binary mask, which
thresholds one Concrete draw), or the expectation sigmoid(logits).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from realignkit.calibration.calibration_files import PreferencePair, PromptResponse
from realignkit.calibration.chat import TokenBatch, collate, encode_examples

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# (masked task vectors, one per tuned; weight name) -> merged delta
MergeFn = Callable[[list[torch.Tensor], str], torch.Tensor]
Granularity = Literal["entry", "row", "column"]
FinalMask = Literal["expectation", "threshold"]


class ScaledMerge:
    """merge([τ]) = λ·τ: task arithmetic of ONE task vector. Being linear, the hooks can apply it to τ·x directly."""

    def __init__(self, scale: float) -> None:
        self.scale = float(scale)

    def __call__(self, deltas: list[torch.Tensor], name: str) -> torch.Tensor:
        if len(deltas) != 1:
            raise ValueError("ScaledMerge merges exactly one task vector")
        return deltas[0] * self.scale


def rescaled_mask(mask: torch.Tensor) -> torch.Tensor:
    """m / mean(m), the paper's rescaling (a broadcast row/column mask has the mean of its expansion); 0 if m ≡ 0."""
    mean = mask.mean()
    if float(mean.detach()) == 0.0:
        return torch.zeros_like(mask)
    return mask / mean


def masked_task_vector(tau: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SOMF's rescaled mask: τ ⊙ m / mean(m); an all-zero mask removes τ entirely. `mask` may be a row [out, 1]
    or column [1, in] mask, broadcast over τ."""
    return tau * rescaled_mask(mask)


def mask_shape(shape: Sequence[int], granularity: Granularity) -> torch.Size:
    """One logit per entry ([out, in]), per output row ([out, 1]) or per input column ([1, in]) of a matrix."""
    if granularity == "entry" or len(shape) != 2:
        return torch.Size(shape)
    return torch.Size((shape[0], 1) if granularity == "row" else (1, shape[1]))


def sample_concrete(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Relaxed Bernoulli sample: sigmoid((logits + log u − log(1−u)) / T), differentiable in logits."""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    uniform = uniform.clamp(1e-6, 1 - 1e-6)
    noise = torch.log(uniform) - torch.log1p(-uniform)  # logistic noise
    return torch.sigmoid((logits + noise) / temperature)


def deterministic_mask(logits: torch.Tensor, mode: FinalMask) -> torch.Tensor:
    """The final mask: sigmoid(logits) (the Bernoulli mean), or the 0/1 mode: 1 where sigmoid(logits) >= 0.5.

    An undecided unit (logit exactly 0, e.g. after zero steps) keeps its τ, so an untrained threshold mask is the
    plain merge, like the untrained expectation mask (uniform 0.5, rescaled to 1).
    """
    probs = torch.sigmoid(logits.detach().float())
    return probs if mode == "expectation" else (probs >= 0.5).float()


def temperature_at(step: int, steps: int, start: float, final: float | None) -> float:
    """Geometric annealing from `start` to `final` over the run (constant when final is None)."""
    if final is None or steps <= 1:
        return start
    return start * (final / start) ** (step / (steps - 1))


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Mean of −log σ(β·[(π_c − π_r) − (ref_c − ref_r)]) over the batch; inputs are sequence log-probs [batch]."""
    margin = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    return -F.logsigmoid(beta * margin).mean()


@dataclass
class MaskedWeight:
    """How one model weight is rebuilt from masked task-vector pieces.

    kind "full": pieces[i] = {"tau": τ_i} with τ_i shaped like the weight, masked by masks[mask_keys["tau"]].
    kind "lora": pieces[i] = {"A": A_i [r, in], "B": B_i [out, r]}, masked per factor; the delta is s_i·B'A'.
    granularity: the mask has one value per entry, per row or per column of each masked matrix (mask_shapes()).
    """

    param_name: str
    kind: Literal["full", "lora"]
    pieces: list[dict[str, torch.Tensor]]
    mask_keys: dict[str, str]
    scalings: list[float] = field(default_factory=list)
    transpose: list[bool] = field(default_factory=list)
    granularity: Granularity = "entry"

    @property
    def module_name(self) -> str:
        return self.param_name.rsplit(".", 1)[0]

    def delta(self, masks: dict[str, torch.Tensor], merge: MergeFn) -> torch.Tensor:
        per_tuned = []
        for index, piece in enumerate(self.pieces):
            if self.kind == "full":
                per_tuned.append(masked_task_vector(piece["tau"], masks[self.mask_keys["tau"]]))
                continue
            a = masked_task_vector(piece["A"], masks[self.mask_keys["A"]])  # [r, in]
            b = masked_task_vector(piece["B"], masks[self.mask_keys["B"]])  # [out, r]
            delta = (b @ a) * self.scalings[index]  # [out, in]
            per_tuned.append(delta.T if self.transpose[index] else delta)
        return merge(per_tuned, self.param_name)

    def mask_shapes(self) -> dict[str, torch.Size]:
        return {
            key: mask_shape(self.pieces[0][piece].shape, self.granularity)
            for piece, key in self.mask_keys.items()
        }

    def entries_per_unit(self) -> dict[str, int]:
        """How many task-vector entries one mask value governs, per mask key."""
        return {
            key: self.pieces[0][piece].numel()
            // max(mask_shape(self.pieces[0][piece].shape, self.granularity).numel(), 1)
            for piece, key in self.mask_keys.items()
        }

    def hooked(self, merge: MergeFn) -> bool:
        """Is this target applied by a forward hook that never builds τ ⊙ m? Yes for a row/column mask on a full τ
        and for LoRA factors, with one task vector and a linear merge. Otherwise (a per-entry mask, TIES/DARE,
        several tuned) the fused weight θ_aligned + delta is swapped in: building it is unavoidable there, and one
        matmul with the fused weight is cheaper than a second one with the delta."""
        if not (isinstance(merge, ScaledMerge) and len(self.pieces) == 1 and not any(self.transpose)):
            return False
        return self.kind == "lora" or self.granularity != "entry"

    def output_delta(self, x: torch.Tensor, masks: dict[str, torch.Tensor], merge: MergeFn) -> torch.Tensor:
        """A hooked target's extra output, λ·(τ ⊙ m / mean(m))·x (x: [..., in] -> [..., out])."""
        scale = merge.scale  # type: ignore[attr-defined]
        piece = self.pieces[0]
        if self.kind == "lora":  # s·B'(A'x): two thin matmuls
            a = masked_task_vector(piece["A"], masks[self.mask_keys["A"]])
            b = masked_task_vector(piece["B"], masks[self.mask_keys["B"]])
            return F.linear(F.linear(x.to(a.dtype), a), b) * (self.scalings[0] * scale)
        tau, mask = piece["tau"], rescaled_mask(masks[self.mask_keys["tau"]])
        x = x.to(tau.dtype)
        if self.granularity == "row":  # (τ ⊙ m_row) x = m_row ⊙ (τ x)
            return F.linear(x, tau) * (mask.reshape(-1) * scale)
        return F.linear(x * mask.reshape(-1), tau) * scale  # column: (τ ⊙ m_col) x = τ (m_col ⊙ x)


@contextlib.contextmanager
def masked_forward(
    model: nn.Module, targets: Sequence[MaskedWeight], masks: dict[str, torch.Tensor], merge: MergeFn
) -> Iterator[dict[str, torch.Tensor]]:
    """Make every target layer compute (θ_aligned + merge_i(τ_i ⊙ m / mean(m)))·x + b while active.

    Hooked targets (MaskedWeight.hooked) add their delta's output in a forward hook; the others are yielded as
    fused weights (parameter name -> tensor) that the caller swaps in: sequence_logprobs(model, batch, weights).
    """
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    weights = {
        t.param_name: params[t.param_name] + t.delta(masks, merge).to(params[t.param_name].dtype)
        for t in targets
        if not t.hooked(merge)
    }

    def hook_for(target: MaskedWeight) -> Callable[..., torch.Tensor]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            return output + target.output_delta(args[0], masks, merge).to(output.dtype)

        return hook

    handles = []
    try:
        for target in targets:
            if target.hooked(merge):
                handles.append(modules[target.module_name].register_forward_hook(hook_for(target)))
        yield weights
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class MaskTrainingConfig:
    steps: int = 100
    lr: float = 1e-3
    temperature: float = 0.5
    beta: float = 0.1
    batch_size: int = 4
    max_length: int = 256
    seed: int = 0
    init_logit: float = 0.0
    temperature_final: float | None = None
    sft_weight: float = 0.0  # + sft_weight × mean per-token NLL of the chosen answers (0 = pure DPO)


@dataclass
class MaskTrainingResult:
    logits: dict[str, torch.Tensor]
    losses: list[float]
    seconds: float


def init_mask_logits(
    targets: Sequence[MaskedWeight], device: torch.device | str = "cpu", value: float = 0.0
) -> dict[str, torch.Tensor]:
    """One fp32 logit per mask unit, all `value` (0 = probability 0.5, the paper's start)."""
    logits: dict[str, torch.Tensor] = {}
    for target in targets:
        for key, shape in target.mask_shapes().items():
            logits[key] = torch.full(
                shape, float(value), dtype=torch.float32, device=device, requires_grad=True
            )
    return logits


def _pair_batch(
    encoded_chosen: list[Any], encoded_rejected: list[Any], rows: Sequence[int], pad_id: int
) -> TokenBatch:
    """Chosen rows first, then rejected rows, in one right-padded batch."""
    return collate([encoded_chosen[i] for i in rows] + [encoded_rejected[i] for i in rows], pad_id)


def sequence_logprobs(
    model: nn.Module, batch: TokenBatch, overrides: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """Sum of log p(answer tokens) per row [batch], with `overrides` (parameter name -> tensor) swapped in
    functionally; wrap in masked_forward to score a masked model."""
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "use_cache": False}
    if overrides:
        output = torch.func.functional_call(model, overrides, args=(), kwargs=inputs, strict=False)
    else:
        output = model(**inputs)
    logits = output.logits[:, :-1].float()  # [batch, seq-1, vocab]: position t predicts token t+1
    targets = batch.input_ids[:, 1:]  # [batch, seq-1]
    token_logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    answer = (batch.response_mask[:, 1:] * batch.attention_mask[:, 1:]).to(token_logp.dtype)
    return (token_logp * answer).sum(dim=-1)


class PreferenceData:
    """Preference pairs tokenized once (chosen and rejected share the prompt)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[PreferencePair], max_length: int) -> None:
        self.chosen = encode_examples(
            tokenizer, [PromptResponse(p.prompt, p.chosen) for p in pairs], max_length=max_length
        )
        self.rejected = encode_examples(
            tokenizer, [PromptResponse(p.prompt, p.rejected) for p in pairs], max_length=max_length
        )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad or 0)

    def __len__(self) -> int:
        return len(self.chosen)

    def batch(self, rows: Sequence[int], device: torch.device) -> TokenBatch:
        return _pair_batch(self.chosen, self.rejected, rows, self.pad_id).to(device)


def answer_token_counts(batch: TokenBatch) -> torch.Tensor:
    """Scored answer tokens per row [batch] (the positions sequence_logprobs sums over)."""
    return (batch.response_mask[:, 1:] * batch.attention_mask[:, 1:]).sum(dim=-1)


def _split(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    half = logp.shape[0] // 2
    return logp[:half], logp[half:]


class ReferenceLogprobs:
    """(chosen, rejected) log-probs of pairs under the unmodified model, computed on first use and kept.

    Lazy, so a short run pays one no-grad forward per pair it actually trains or measures on, not per pair in
    the file.
    """

    def __init__(self, model: nn.Module, data: PreferenceData, batch_size: int, device: torch.device) -> None:
        self.model, self.data, self.batch_size, self.device = model, data, batch_size, device
        self.values: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, rows: Sequence[int]) -> torch.Tensor:
        missing = [row for row in dict.fromkeys(rows) if row not in self.values]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            chosen, rejected = _split(sequence_logprobs(self.model, self.data.batch(chunk, self.device)))
            for index, row in enumerate(chunk):
                self.values[row] = torch.stack([chosen[index], rejected[index]])
        return torch.stack([self.values[row] for row in rows])  # [len(rows), 2]


@torch.no_grad()
def reference_logprobs(
    model: nn.Module, data: PreferenceData, batch_size: int, device: torch.device
) -> torch.Tensor:
    """[n, 2] log-probs (chosen, rejected) of every pair under the unmodified model."""
    return ReferenceLogprobs(model, data, batch_size, device)(range(len(data)))


Reference = torch.Tensor | Callable[[Sequence[int]], torch.Tensor] | None


@dataclass(frozen=True)
class PreferenceScope:
    """Which pairs a mask is trained or evaluated on, and against what.

    rows: the pairs (default: all); reference: the unmodified model's log-probs, a precomputed [n, 2] tensor or a
    `ReferenceLogprobs` (None: computed lazily); base_overrides: parameters outside the mask's targets that the
    fused model changes too (their plain merge), so that the model trained is the model written."""

    rows: Sequence[int] | None = None
    reference: Reference = None
    base_overrides: dict[str, torch.Tensor] | None = None


def _as_reference(reference: Reference, model: nn.Module, data: PreferenceData, batch_size: int,
                  device: torch.device) -> Callable[[Sequence[int]], torch.Tensor]:  # fmt: skip
    """Accept a precomputed [n, 2] tensor, a ReferenceLogprobs, or None (computed lazily)."""
    if reference is None:
        return ReferenceLogprobs(model, data, batch_size, device)
    if isinstance(reference, torch.Tensor):
        return lambda rows: reference[list(rows)]
    return reference


@torch.no_grad()
def evaluate_preferences(
    model: nn.Module,
    data: PreferenceData,
    targets: Sequence[MaskedWeight],
    masks: dict[str, torch.Tensor],
    merge: MergeFn,
    *,
    beta: float,
    batch_size: int = 8,
    scope: PreferenceScope | None = None,
) -> dict[str, float]:
    """For a fixed (deterministic) mask, over `rows` (default: all pairs): the DPO loss, and the mean per-token
    log-probability of the chosen and of the rejected answers (a DPO loss near 0 with a chosen log-prob that did
    not rise means the mask only suppressed the rejected answers).

    `scope`: the pairs, the reference log-probs and the base overrides (see PreferenceScope).
    """
    scope = scope or PreferenceScope()
    base_overrides = scope.base_overrides
    device = next(model.parameters()).device
    reference_of = _as_reference(scope.reference, model, data, batch_size, device)
    rows = list(range(len(data))) if scope.rows is None else list(scope.rows)
    reference_all = reference_of(rows)  # before the hooks go in: the reference is the unmasked model
    loss = chosen_total = rejected_total = 0.0
    with masked_forward(model, targets, masks, merge) as weights:
        overrides = {**(base_overrides or {}), **weights}
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = data.batch(chunk, device)
            chosen, rejected = _split(sequence_logprobs(model, batch, overrides))
            ref = reference_all[start : start + len(chunk)]
            loss += float(dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], beta)) * len(chunk)
            tokens_chosen, tokens_rejected = _split(answer_token_counts(batch).clamp(min=1).to(chosen.dtype))
            chosen_total += float((chosen / tokens_chosen).sum())
            rejected_total += float((rejected / tokens_rejected).sum())
    n = max(len(rows), 1)
    return {"dpo_loss": loss / n, "chosen_logp_per_token": chosen_total / n,
            "rejected_logp_per_token": rejected_total / n}  # fmt: skip


def evaluate_dpo_loss(
    model: nn.Module,
    data: PreferenceData,
    targets: Sequence[MaskedWeight],
    masks: dict[str, torch.Tensor],
    merge: MergeFn,
    *,
    beta: float,
    batch_size: int = 8,
    scope: PreferenceScope | None = None,
) -> float:
    """DPO loss over `scope.rows` (default: all pairs) for a fixed (deterministic) mask (see evaluate_preferences)."""
    return evaluate_preferences(model, data, targets, masks, merge, beta=beta, batch_size=batch_size,
                                scope=scope)["dpo_loss"]


def train_concrete_mask(
    model: nn.Module,
    data: PreferenceData,
    targets: Sequence[MaskedWeight],
    merge: MergeFn,
    config: MaskTrainingConfig,
    *,
    scope: PreferenceScope | None = None,
    progress: bool = True,
) -> MaskTrainingResult:
    """Train the mask logits with Adam on the DPO loss; the model's own parameters are never updated.

    `scope.rows`: the pairs to train on (default all), visited in a seeded shuffled order, batch_size pairs per
    step. `scope.base_overrides`: parameters outside the targets set to their plain merge, so that the model
    trained is the model written (only the targets are masked); the reference stays the unmodified model.
    """
    started = time.time()
    scope = scope or PreferenceScope()
    rows, base_overrides = scope.rows, scope.base_overrides
    device = next(model.parameters()).device
    model.eval()  # no dropout: the only randomness is the Concrete sample
    model.requires_grad_(False)
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    reference_of = _as_reference(scope.reference, model, data, config.batch_size, device)
    logits = init_mask_logits(targets, device, config.init_logit)
    optimizer = torch.optim.Adam(list(logits.values()), lr=config.lr)
    order = _epoch_order(len(data) if rows is None else list(rows), config.seed)
    losses: list[float] = []
    for step in tqdm(range(config.steps), desc="somf mask", leave=False, disable=not progress):
        batch_rows = _rows_for_step(order, step, config.batch_size, len(order))
        temperature = temperature_at(step, config.steps, config.temperature, config.temperature_final)
        masks = {key: sample_concrete(value, temperature, generator) for key, value in logits.items()}
        ref = reference_of(batch_rows)  # outside the hooks: the unmasked model
        batch = data.batch(batch_rows, device)
        with masked_forward(model, targets, masks, merge) as weights:
            chosen, rejected = _split(sequence_logprobs(model, batch, {**(base_overrides or {}), **weights}))
        loss = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], config.beta)
        # RPO-style NLL on the chosen answers: DPO alone can be won by only suppressing the rejected answers.
        if config.sft_weight:
            tokens = _split(answer_token_counts(batch))[0].clamp(min=1).to(chosen.dtype)
            loss = loss + config.sft_weight * (-chosen / tokens).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"SOMF loss became {float(loss.detach())} at step {step}; lower lr")
        losses.append(float(loss.detach()))
    return MaskTrainingResult({k: v.detach() for k, v in logits.items()}, losses, time.time() - started)


def _epoch_order(rows: int | Sequence[int], seed: int) -> list[int]:
    order = list(range(rows)) if isinstance(rows, int) else list(rows)
    random.Random(seed).shuffle(order)
    return order


def _rows_for_step(order: list[int], step: int, batch_size: int, n: int) -> list[int]:
    """Cycle through a fixed shuffled order, batch_size rows per step (wrapping around)."""
    size = min(batch_size, n)
    start = (step * size) % n
    return [order[(start + k) % n] for k in range(size)]


# ---------------------------------------------------------------- what the mask decided

PROBABILITY_BINS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def mask_statistics(
    targets: Sequence[MaskedWeight], logits: dict[str, torch.Tensor], final: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """How far the mask moved and what it kept, so a user can see whether it decided anything.

    Shares are of task-vector entries (a row/column mask value counts once per entry it governs):
    - decided_share: sigmoid(logit) < 0.1 or > 0.9; kept_share: the final mask's weight (mean of its entries,
      = the share of entries kept for a threshold mask); dropped_tensors: masked matrices whose final mask is 0
      everywhere (their τ is removed, the layer returns to aligned);
    - probability_histogram: share of entries per sigmoid(logit) bin; logit_quantiles over mask units.
    """
    per_unit: dict[str, int] = {}
    for target in targets:
        per_unit.update(target.entries_per_unit())
    total = sum(logits[k].numel() * per_unit[k] for k in logits) or 1
    hist = torch.zeros(len(PROBABILITY_BINS) - 1, dtype=torch.float64)
    edges = torch.tensor(PROBABILITY_BINS[1:-1], dtype=torch.float32)
    low = high = kept = 0.0
    dropped = 0
    for key, value in logits.items():
        probs = torch.sigmoid(value.detach().float().cpu()).reshape(-1)
        weight = per_unit[key]
        hist += (
            torch.bincount(torch.bucketize(probs, edges, right=True), minlength=len(hist)).double() * weight
        )
        low += float((probs < 0.1).sum()) * weight
        high += float((probs > 0.9).sum()) * weight
        kept += float(final[key].detach().double().sum()) * weight
        dropped += int(float(final[key].detach().abs().sum()) == 0.0)
    decided = low + high
    units = sum(v.numel() for v in logits.values())
    # torch.quantile's input limit: an even stride through all units
    stride = max(1, math.ceil(units / (1 << 22)))
    flat = [v.detach().float().cpu().reshape(-1)[::stride] for v in logits.values()]
    quantiles = torch.quantile(torch.cat(flat) if flat else torch.zeros(1), torch.tensor(QUANTILES)).tolist()
    return {
        "mask_units": units,
        "decided_share": decided / total,
        "below_0.1_share": low / total,
        "above_0.9_share": high / total,
        "kept_share": kept / total,
        "dropped_tensors": dropped,
        "probability_histogram": {
            f"[{lo:g},{hi:g})": round(float(c) / total, 6)
            for lo, hi, c in zip(PROBABILITY_BINS[:-1], PROBABILITY_BINS[1:], hist.tolist(), strict=True)
        },
        "logit_quantiles": {f"q{q:g}": round(v, 4) for q, v in zip(QUANTILES, quantiles, strict=True)},
    }
