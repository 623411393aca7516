"""SOMF mask training: a Concrete (relaxed Bernoulli) mask on task vectors, trained with DPO on a frozen model.

Yi et al., "A safety realignment framework via subspace-oriented model fusion for large language models" (2024).
One logit per task-vector entry (fp32, initialised to 0). In training a mask is sampled with the Concrete
relaxation (Maddison et al. 2017) at temperature T; the model weight used in the forward pass is

    θ = θ_aligned + merge_i(τ_i ⊙ m / mean(m))

computed functionally (`torch.func.functional_call`), so the model itself stays frozen and only the logits learn.
The loss is DPO (Rafailov et al. 2023) against the unchanged `aligned` model as reference. At the end a
deterministic mask is taken: the expectation sigmoid(logits), or its threshold at 0.5.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from realignkit.calibration.chat import TokenBatch, collate, encode_examples
from realignkit.calibration.data import PreferencePair, PromptResponse

# (masked task vectors, one per tuned; weight name) -> merged delta
MergeFn = Callable[[list[torch.Tensor], str], torch.Tensor]


def masked_task_vector(tau: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SOMF's rescaled mask: τ ⊙ m / mean(m); an all-zero mask removes τ entirely."""
    mean = mask.mean()
    if float(mean.detach()) == 0.0:
        return torch.zeros_like(tau)
    return tau * mask / mean


def sample_concrete(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Relaxed Bernoulli sample: sigmoid((logits + log u − log(1−u)) / T), differentiable in logits."""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    uniform = uniform.clamp(1e-6, 1 - 1e-6)
    noise = torch.log(uniform) - torch.log1p(-uniform)  # logistic noise
    return torch.sigmoid((logits + noise) / temperature)


def deterministic_mask(logits: torch.Tensor, mode: Literal["expectation", "threshold"]) -> torch.Tensor:
    """The final mask: sigmoid(logits) (the Bernoulli mean) or its 0/1 threshold at 0.5."""
    probs = torch.sigmoid(logits.detach().float())
    return probs if mode == "expectation" else (probs > 0.5).float()


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
    """

    param_name: str
    kind: Literal["full", "lora"]
    pieces: list[dict[str, torch.Tensor]]
    mask_keys: dict[str, str]
    scalings: list[float] = field(default_factory=list)
    transpose: list[bool] = field(default_factory=list)

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
        return {key: self.pieces[0][piece].shape for piece, key in self.mask_keys.items()}


@dataclass(frozen=True)
class MaskTrainingConfig:
    steps: int = 100
    lr: float = 1e-3
    temperature: float = 0.5
    beta: float = 0.1
    batch_size: int = 4
    max_length: int = 256
    seed: int = 0


@dataclass
class MaskTrainingResult:
    logits: dict[str, torch.Tensor]
    losses: list[float]
    seconds: float


def init_mask_logits(
    targets: Sequence[MaskedWeight], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """One fp32 logit per masked entry, all 0 (probability 0.5)."""
    logits: dict[str, torch.Tensor] = {}
    for target in targets:
        for key, shape in target.mask_shapes().items():
            logits[key] = torch.zeros(shape, dtype=torch.float32, device=device, requires_grad=True)
    return logits


def fused_parameters(
    model: nn.Module, targets: Sequence[MaskedWeight], masks: dict[str, torch.Tensor], merge: MergeFn
) -> dict[str, torch.Tensor]:
    """Override dict for functional_call: θ_aligned + merged masked deltas, for every target weight."""
    params = dict(model.named_parameters())
    return {
        t.param_name: params[t.param_name] + t.delta(masks, merge).to(params[t.param_name].dtype)
        for t in targets
    }


def _pair_batch(
    encoded_chosen: list[Any], encoded_rejected: list[Any], rows: Sequence[int], pad_id: int
) -> TokenBatch:
    """Chosen rows first, then rejected rows, in one right-padded batch."""
    return collate([encoded_chosen[i] for i in rows] + [encoded_rejected[i] for i in rows], pad_id)


def sequence_logprobs(
    model: nn.Module, batch: TokenBatch, overrides: dict[str, torch.Tensor] | None
) -> torch.Tensor:
    """Sum of log p(answer tokens) per row [batch], with `overrides` swapped in functionally."""
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

    def __init__(self, tokenizer: Any, pairs: Sequence[PreferencePair], max_length: int) -> None:
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


def _split(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    half = logp.shape[0] // 2
    return logp[:half], logp[half:]


@torch.no_grad()
def reference_logprobs(
    model: nn.Module, data: PreferenceData, batch_size: int, device: torch.device
) -> torch.Tensor:
    """[n, 2] log-probs (chosen, rejected) of every pair under the unmodified model."""
    rows = []
    for start in range(0, len(data), batch_size):
        chosen, rejected = _split(
            sequence_logprobs(
                model, data.batch(range(start, min(start + batch_size, len(data))), device), None
            )
        )
        rows.append(torch.stack([chosen, rejected], dim=1))
    return torch.cat(rows)


@torch.no_grad()
def evaluate_dpo_loss(
    model: nn.Module,
    data: PreferenceData,
    targets: Sequence[MaskedWeight],
    masks: dict[str, torch.Tensor],
    merge: MergeFn,
    *,
    beta: float,
    batch_size: int = 8,
    reference: torch.Tensor | None = None,
) -> float:
    """DPO loss over all pairs for a fixed (deterministic) mask."""
    device = next(model.parameters()).device
    reference = reference if reference is not None else reference_logprobs(model, data, batch_size, device)
    overrides = fused_parameters(model, targets, masks, merge)
    total = 0.0
    for start in range(0, len(data), batch_size):
        rows = range(start, min(start + batch_size, len(data)))
        chosen, rejected = _split(sequence_logprobs(model, data.batch(rows, device), overrides))
        ref = reference[start : start + len(rows)]
        total += float(dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], beta)) * len(rows)
    return total / len(data)


def train_concrete_mask(
    model: nn.Module,
    data: PreferenceData,
    targets: Sequence[MaskedWeight],
    merge: MergeFn,
    config: MaskTrainingConfig,
    *,
    reference: torch.Tensor | None = None,
    progress: bool = True,
) -> MaskTrainingResult:
    """Train the mask logits with Adam on the DPO loss; the model's own parameters are never updated."""
    started = time.time()
    device = next(model.parameters()).device
    model.eval()  # no dropout: the only randomness is the Concrete sample
    model.requires_grad_(False)
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    reference = (
        reference if reference is not None else reference_logprobs(model, data, config.batch_size, device)
    )
    logits = init_mask_logits(targets, device)
    optimizer = torch.optim.Adam(list(logits.values()), lr=config.lr)
    order = _epoch_order(len(data), config.seed)
    losses: list[float] = []
    for step in tqdm(range(config.steps), desc="somf mask", leave=False, disable=not progress):
        rows = _rows_for_step(order, step, config.batch_size, len(data))
        masks = {key: sample_concrete(value, config.temperature, generator) for key, value in logits.items()}
        chosen, rejected = _split(
            sequence_logprobs(model, data.batch(rows, device), fused_parameters(model, targets, masks, merge))
        )
        ref = reference[rows]
        loss = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], config.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"SOMF loss became {float(loss.detach())} at step {step}; lower lr")
        losses.append(float(loss.detach()))
    return MaskTrainingResult({k: v.detach() for k, v in logits.items()}, losses, time.time() - started)


def _epoch_order(n: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def _rows_for_step(order: list[int], step: int, batch_size: int, n: int) -> list[int]:
    """Cycle through a fixed shuffled order, batch_size rows per step (wrapping around)."""
    size = min(batch_size, n)
    start = (step * size) % n
    return [order[(start + k) % n] for k in range(size)]
